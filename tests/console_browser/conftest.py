"""The web console in a real headless Chromium against a real hall: mosquitto, the gateway
process (with [console]), and virtual evaluators running the real firmware (simulator.hall),
all on 127.0.0.1. One hall and one browser per module (the machine has 2 cores); every test
logs in afresh, so a test never depends on another's session.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.browser import (  # noqa: E402
    BrowserUnavailable,
    click_through,
    start_browser,
    stop_browser,
    wait_until,
)

from simulator.citizens import Case  # noqa: E402
from simulator.hall import Hall, HallOptions  # noqa: E402
from simulator.report import Console  # noqa: E402
from simulator.vdevice import PressResult  # noqa: E402

T = TypeVar("T")
HCP_GATEWAY = Path(sys.executable).parent / "hcp-gateway"
PASSWORD = "Hall-pass-2026"
IDLE_S = 10
CONSOLE_TOML = """[console]
title = "测试区政务服务中心"
idle_s = %d
max_failures = 3
lockout_s = 60
address_failures = 50
refresh_ms = 500
page_size = 20
""" % IDLE_S


class LiveHall:
    """simulator.hall.Hall run on its own event loop in a thread, driven from the test thread."""

    def __init__(self, workdir: Path, devices: int = 4, extra_config: str = "") -> None:
        self.workdir = workdir
        self.opts = HallOptions(devices=devices, departments=2, workdir=workdir / "hall", keep=True,
                                countdown_s=120, cooldown_s=2, boot_spread_s=0.2, push=False,
                                extra_config=CONSOLE_TOML + extra_config, keepalive_s=10)
        self.hall = Hall(self.opts, Console(out=open(workdir / "hall.log", "w"), quiet=True))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hall-loop", daemon=True)
        self.thread.start()
        self._case = 0

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.call(self.hall.setup(), 120)
        self.call(self.hall.boot_devices(timeout_s=90), 120)

    def stop(self) -> None:
        try:
            self.call(self.hall.close(), 90)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def base(self) -> str:
        return "http://127.0.0.1:%d" % self.hall.http_port

    def hcp(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(HCP_GATEWAY), "--config", str(self.hall.config_path), *args], input=stdin,
                              capture_output=True, text=True, timeout=60, cwd=str(self.hall.workdir))

    def add_user(self, name: str, role: str, *extra: str, password: str = PASSWORD) -> None:
        r = self.hcp("users", "add", name, "--role", role, *extra, stdin=password + "\n")
        assert r.returncode == 0, r.stderr

    def device(self, i: int) -> Any:
        return self.hall.devices[i]

    def window(self, i: int) -> Any:
        return self.hall.windows[i]

    def invite(self, i: int, task_name: str = "不动产登记") -> tuple[str, str]:
        """The window system invites the citizen at window i; (invitation id, case number)."""
        from simulator.citizens import WindowSystem
        self._case += 1
        w = self.window(i)
        case = Case(case_no="370303-T-%05d" % self._case, task_code="TC%03d" % self._case,
                    task_name=task_name,
                    window=w)
        assert self.hall._session is not None

        async def go() -> str:
            ws = WindowSystem(self.base, self.hall.window_token, self.hall._session)  # type: ignore[arg-type]
            inv = await ws.invite(case, timeout_s=10)
            assert await self.device(i).wait_invited(inv, timeout_s=10), "device did not show the invitation"
            return inv
        return self.call(go()), case.case_no

    def press(self, i: int, grade: str) -> PressResult:
        from protocol.grades import DEFAULT_BUTTONS
        r: PressResult = self.call(self.device(i).press(DEFAULT_BUTTONS.index(grade)))
        return r

    def journal_empty(self, i: int) -> bool:
        """Device i's journal holds nothing unacked: the gateway committed and acked it all."""
        async def depth() -> int:
            return int(self.device(i).journal_depth())
        return self.call(depth()) == 0

    def device_state(self, i: int) -> str:
        async def st() -> str:
            return str(self.device(i).state)
        return self.call(st())


@pytest.fixture(scope="module")
def live_hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHall]:
    h = LiveHall(tmp_path_factory.mktemp("hall"))
    try:
        h.start()
        h.add_user("admin", "admin", "--name", "王主任")
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        driver = start_browser(tmp_path_factory.mktemp("browser"))
    except BrowserUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield driver
    finally:
        stop_browser(driver)


def login(driver: Any, base: str, name: str, password: str = PASSWORD, expect_ok: bool = True) -> None:
    """Log out whoever is logged in (cookies cleared), then log in through the form."""
    from selenium.webdriver.common.by import By
    driver.get(base + "/login")
    driver.delete_all_cookies()
    driver.get(base + "/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    click_through(driver, driver.find_element(By.ID, "login"))
    if expect_ok:
        wait_until("logged in as %s" % name, lambda: driver.find_elements(By.ID, "logout"), timeout=15)


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By
    return str(driver.find_element(By.ID, element_id).text)


def screenshot_dir(default: Path) -> Path:
    """docs/img when HCP_CONSOLE_SCREENSHOTS=docs (to refresh the committed ones), else a tmp dir."""
    if os.environ.get("HCP_CONSOLE_SCREENSHOTS") == "docs":
        return Path(__file__).resolve().parents[2] / "docs" / "img"
    return default
