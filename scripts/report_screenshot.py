"""Screenshots of a run's report for the docs: ``python scripts/report_screenshot.py
RUN_DIR OUT.png [SECTION ...]`` writes RUN_DIR/report.html, then saves the whole page, or
each named section (summary, curves, evaluation, data...) as OUT-SECTION.png. Given a page
instead of RUN_DIR (``SWEEP_DIR/report.html``, a comparison), it shoots that page as it is.
Needs Chromium."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import load, open_chromium, screenshot
from tunelab.report import write_report


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    sections = sys.argv[3:]
    page = source if source.suffix == ".html" else write_report([source])
    driver = open_chromium()
    try:
        errors = load(driver, page)
        if errors:
            raise SystemExit(f"console errors on {page}: {errors}")
        if not sections:
            print(screenshot(driver, out))
        for name in sections:
            print(screenshot(driver, out.with_name(f"{out.stem}-{name}.png"), name))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
