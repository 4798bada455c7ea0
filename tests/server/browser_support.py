"""What the headless-Chromium tests share: where Chromium is, the skip marker, and one way to start a driver."""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason=f"headless browser test needs {CHROMIUM} and {CHROMEDRIVER} "
           "(Debian: apt-get install chromium chromium-driver)",
)


@contextlib.contextmanager
def chrome(profile: Path, window: str = "1280,1300", browser_log: bool = False) -> Iterator[Any]:
    """A headless Chromium driver with its own profile folder (removed afterwards); ``browser_log``: keep the
    page's console for ``get_log('browser')``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}", f"--window-size={window}"):
        opts.add_argument(arg)
    if browser_log:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no usage statistics
    drv = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
