"""Fixtures of the QR channel's browser tests (helpers in qrb_support.py): one live hall (broker,
platform stand-in, gateway) and one phone-sized Chromium per module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.browser import BrowserUnavailable, start_browser, stop_browser  # noqa: E402
from qrb_support import PHONE, LiveQrHall  # noqa: E402


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveQrHall]:
    hall = LiveQrHall(tmp_path_factory.mktemp("qrhall"))
    try:
        hall.start()
        yield hall
    finally:
        hall.stop()


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        driver = start_browser(tmp_path_factory.mktemp("phone"), PHONE)
    except BrowserUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        # A headless window is at least 500 px wide: the phone's viewport is emulated (a touch
        # screen, 390 x 844 CSS px at 2 device pixels each).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True},
        )
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
        yield driver
    finally:
        stop_browser(driver)
