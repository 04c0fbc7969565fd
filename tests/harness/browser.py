"""Debian's headless Chromium driven by Selenium, for the web console's tests and screenshots.

Selenium is given /usr/bin/chromedriver and /usr/bin/chromium explicitly, so Selenium
Manager (which would download a driver or a browser) is never run; SE_MANAGER_PATH points at
nothing, so any attempt to run it would fail loudly instead of reaching the network. Each
browser gets a fresh --user-data-dir and a download directory; `stop()` quits it (and its
driver) and removes nothing the caller did not ask for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = (1366, 768)
TABLET = (820, 1180)
T = TypeVar("T")

ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        "--password-store=basic", "--lang=zh-CN", "--hide-scrollbars")


class BrowserUnavailable(RuntimeError):
    pass


def check_browser() -> None:
    for p in (CHROMIUM, CHROMEDRIVER):
        if not os.access(p, os.X_OK):
            raise BrowserUnavailable("%s is missing: run scripts/setup.sh (apt: chromium chromium-driver)"
                                     % p)


def start_browser(workdir: Path, size: tuple[int, int] = DESKTOP) -> Any:
    """A headless Chromium (selenium.webdriver.Chrome) with its own profile under workdir."""
    check_browser()
    os.environ["SE_MANAGER_PATH"] = str(workdir / "no-selenium-manager")   # never used; fails if it were
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = workdir / "chromium-profile"
    downloads = workdir / "downloads"
    profile.mkdir(parents=True, exist_ok=True)
    downloads.mkdir(parents=True, exist_ok=True)
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ARGS:
        opts.add_argument(a)
    opts.add_argument("--user-data-dir=%s" % profile)
    opts.add_argument("--window-size=%d,%d" % size)
    opts.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
        "intl.accept_languages": "zh-CN,zh"})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The browser's own locale (date inputs, number formats) comes from the environment.
    env = {**os.environ, "LANG": "zh_CN.UTF-8", "LANGUAGE": "zh_CN:zh"}
    service = Service(executable_path=CHROMEDRIVER, log_output=str(workdir / "chromedriver.log"), env=env)
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    driver.downloads = downloads
    return driver


def stop_browser(driver: Any) -> None:
    try:
        driver.quit()
    except Exception:  # noqa: BLE001 - already gone
        pass


def wait_until(what: str, fn: Callable[[], T | None], timeout: float = 10.0, every: float = 0.05) -> T:
    """Poll fn until it returns something truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - the page may be mid-load: keep polling
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s"
                                 % (timeout, what, " (last error: %r)" % last if last else ""))
        time.sleep(every)


def console_errors(driver: Any) -> list[str]:
    """Severe messages of the JavaScript console since the last call (CSP violations, script
    errors, a static file that failed), less the status of pages themselves (a 403 or 409 page
    is an answer, not an error)."""
    out = []
    for e in driver.get_log("browser"):
        msg = str(e.get("message", ""))
        if e.get("level") != "SEVERE":
            continue
        page_status = "Failed to load resource: the server responded with a status of 4" in msg
        if page_status and "/static/" not in msg:
            continue
        out.append(msg)
    return out


def click_through(driver: Any, element: Any, timeout: float = 15.0) -> None:
    """Click something that loads a new page and wait until that page has loaded."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()

    def gone() -> bool:
        try:
            old.tag_name  # noqa: B018 - touching it raises once the page was replaced
        except StaleElementReferenceException:
            return True
        return False
    wait_until("the next page after the click", gone, timeout)
    wait_until("the page loaded", lambda: driver.execute_script("return document.readyState") == "complete",
               timeout)
