from __future__ import annotations
from pathlib import Path
from typing import Any
import pytest
from conftest import LiveHall, login
from harness.browser import console_errors

pytestmark = pytest.mark.slow


def test_look(live_hall: LiveHall, browser: Any, tmp_path: Path) -> None:
    login(browser, live_hall.base, "admin")
    for p in ["/", "/devices", "/org", "/pairing", "/ratings", "/audit", "/uplink"]:
        browser.get(live_hall.base + p)
        browser.save_screenshot("/tmp/cs/shot%s.png" % p.replace("/", "_"))
    print(console_errors(browser))
