"""Headless Chromium driven by selenium: the browser tests and the README screenshots (offline).

``CHROMIUM`` / ``CHROMEDRIVER`` (environment) name the binaries; by default Debian's
``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``).
:func:`start_chromium` raises :class:`BrowserUnavailable` when they or selenium are missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["BrowserUnavailable", "start_chromium", "console_errors", "FLAGS"]

#: Flags that keep Chromium offline and quick in a container: no sandbox (runs as root), no GPU,
#: no /dev/shm (small in containers), and none of the background connections (updates, sync)
#: that hang on a machine without network.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--hide-scrollbars", "--force-device-scale-factor=1")


class BrowserUnavailable(RuntimeError):
    """Chromium, chromedriver or selenium is not installed here."""


def _binary(env: str, names: tuple[str, ...]) -> str:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailable(f"{names[0]} not found (set {env} or apt-get install "
                             "chromium chromium-driver)")


def start_chromium(width: int = 1280, height: int = 1000) -> tuple[Any, Path]:
    """A selenium Chrome driver on headless Chromium and its fresh profile directory."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise BrowserUnavailable(f"selenium is not installed ({err})") from None
    chromium = _binary("CHROMIUM", ("chromium", "chromium-browser"))
    driver_path = _binary("CHROMEDRIVER", ("chromedriver",))
    profile = Path(tempfile.mkdtemp(prefix="topovae-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    return driver, profile


def console_errors(driver: Any) -> list[str]:
    """The SEVERE entries of the browser console since the last call."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry.get("level") == "SEVERE"]
