"""Headless Chromium (Debian's chromium + chromedriver) for the report tests and the README
screenshot (scripts/report_screenshot.py): open a page, read its charts, save a screenshot."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
WIDTH = 1400

# per chart div: its title, the number of traces and of points plotly drew
CHART_STATS = """
return Array.from(document.querySelectorAll('div.chart')).map(function(div){
  var data = div.data || [];
  return {title: div.dataset.title, drawn: div.hasAttribute('data-drawn'),
          traces: data.length,
          points: data.map(function(t){
            var v = t.z || t.y || []; return v.filter(function(x){return x !== null;}).length;
          }),
          svg: div.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm')
                 .length};
});
"""


def find_browser() -> tuple[str, str]:
    """Paths of a Chromium binary and its chromedriver, or an error saying what to install."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    if browser is None or driver is None:
        missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None]
        raise RuntimeError(
            f"no {' and no '.join(missing)} found on PATH: the report's browser tests need "
            "headless Chromium; install it (Debian: apt-get install chromium chromium-driver, "
            "or scripts/install.sh --test)"
        )
    return browser, driver


def open_chromium() -> Any:
    """A headless Chromium session that keeps the page's console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = find_browser()
    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},1000", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def load(driver: Any, path: Path) -> list[dict[str, Any]]:
    """Open ``path`` and wait for its charts; return the console errors of the page."""
    driver.get(Path(path).resolve().as_uri())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)
    time.sleep(0.3)  # plotly draws right after load
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def chart_stats(driver: Any) -> list[dict[str, Any]]:
    return driver.execute_script(CHART_STATS)


def screenshot(driver: Any, out: Path, section: str | None = None) -> Path:
    """Save the whole page, or one ``<section data-section=NAME>`` of it, as a PNG."""
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(full, 16000) + 90)
    time.sleep(0.5)  # the responsive charts redraw at the new size
    out.parent.mkdir(parents=True, exist_ok=True)
    if section is None:
        driver.save_screenshot(str(out))
    else:
        driver.find_element("css selector", f'section[data-section="{section}"]').screenshot(
            str(out)
        )
    driver.set_window_size(WIDTH, 1000)
    return out
