"""Screenshot of a run's report for the README: ``python scripts/report_screenshot.py
RUN_DIR docs/img/report.png [HEIGHT]`` (writes RUN_DIR/report.html first; needs Chromium)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import load, open_chromium, screenshot
from tunelab.report import write_report


def main() -> None:
    run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    height = int(sys.argv[3]) if len(sys.argv) > 3 else None
    page = write_report([run_dir])
    driver = open_chromium()
    try:
        errors = load(driver, page)
        if errors:
            raise SystemExit(f"console errors on {page}: {errors}")
        print(screenshot(driver, out, height))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
