"""A virtual evaluator: the real firmware (firmware.main.Firmware + firmware.link.Link) on the
host HAL, with its own directory as flash, inside the simulator's asyncio loop.

What is real: config.json, the boot counter, the journal on disk, the app state machine,
feedback, button debounce, the MQTT client and the link, the signed protocol. What differs
from firmware.main.run_async: instead of a 10 ms polling loop per device (1,000 devices x 100
wake-ups a second would eat the CPU), the device loop sleeps `tick_ms` and is woken at once by
a press, then runs the same Firmware.step() (scan + tick). Feedback timing is unchanged: the
press is handled in the step right after it.

Power cut: the device's tasks are cancelled wherever they are (the asyncio equivalent of the
supply going away), its sockets are aborted, and a torn half record is left at the end of the
journal segment, as if the write of a press that never got its feedback was interrupted.
Power on boots a new Firmware from the same directory: new boot number, journal re-scanned,
unacked records re-sent.

Instrumentation (the checker's ledger and the bench's latency): the press callback, the
journal's ack and the app's command handler are wrapped on the instance; they call through
to the real code unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.hal.host import HostHal, VirtualClock
from firmware.hal.hostnet import HostNet
from firmware.journal import DIR as JOURNAL_DIR
from firmware.journal import REC_SIZE
from firmware.main import Firmware
from protocol.grades import DEFAULT_BUTTONS
from protocol.ids import record_id

FEEDBACK_OK_HZ = 2000       # firmware/feedback.py: ok beep
FEEDBACK_EXTRA_HZ = 1000    # extra press click


def write_config(root: Path, device_id: str, hall: str, secret_hex: str, broker: tuple[str, int, str],
                 ca: str | None, countdown_s: int, cooldown_s: int, hb_s: int, keepalive_s: int) -> None:
    """A simulated device's config.json, as flash.py writes it (atomically)."""
    root.mkdir(parents=True, exist_ok=True)
    host, port, password = broker
    b: dict[str, Any] = {"host": host, "port": port, "password": password}
    if ca:
        b["ca"] = ca
    cfg = {
        "device_id": device_id, "hall": hall, "secret": secret_hex,
        "wifi": {"ssid": "hall-net", "password": "sim"}, "broker": b,
        "buttons": list(DEFAULT_BUTTONS), "debounce_ms": 50, "countdown_s": countdown_s,
        "cooldown_s": cooldown_s, "walkup": "accept", "hb_s": hb_s, "cfg": 1, "keepalive_s": keepalive_s,
    }
    tmp = root / "config.json.tmp"
    tmp.write_text(json.dumps(cfg))
    os.replace(tmp, root / "config.json")


@dataclass(frozen=True)
class PressResult:
    """What the citizen experienced for one press."""

    accepted: bool           # the device gave the ok/extra feedback and journaled the press
    record_id: str           # "" when nothing was journaled
    kind: str                # rated | walkup | extra | unpaired | "" (nothing journaled)
    grade: str
    invitation_id: str
    pressed_at: float        # time.monotonic() of the press


class VirtualDevice:
    def __init__(self, device_id: str, root: Path, secret_hex: str, broker_host: str, broker_port: int,
                 broker_password: str, *, hall: str = "hall-1", clock_speed: float = 1.0,
                 tick_ms: int = 200, keepalive_s: int = 30, durable: bool = False,
                 countdown_s: int = 60, cooldown_s: int = 8, hb_s: int = 60,
                 on_ack: Callable[[str, float], None] | None = None, broker_ca: str | None = None) -> None:
        """broker_ca: the hall CA (PEM): written into config.json as flash.py does, and the
        device connects to the broker with TLS, checking its certificate against it."""
        self.device_id = device_id
        self.root = Path(root)
        self.secret_hex = secret_hex
        self.broker = (broker_host, broker_port, broker_password)
        self.hall = hall
        self.clock_speed = clock_speed
        self.tick_ms = tick_ms
        self.keepalive_s = keepalive_s
        self.durable = durable
        self.countdown_s = countdown_s
        self.cooldown_s = cooldown_s
        self.hb_s = hb_s
        self.on_ack = on_ack
        self.broker_ca = broker_ca
        self.wifi_up = True
        self.powered = False
        self.boots = 0
        self.power_cuts = 0
        self.fw: Any = None
        self.hal: HostHal | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.changed = asyncio.Event()     # set on every command the app applied (citizens wait on it)
        self._press_result: tuple[Any, dict[str, int]] | None = None
        self.sent_at: dict[tuple[int, int], float] = {}   # (rb, rs) -> monotonic time of creation

    # -- provisioning ----------------------------------------------------------------------
    def provision(self) -> None:
        """Write config.json as flash.py would (docs/architecture.md section 2)."""
        write_config(self.root, self.device_id, self.hall, self.secret_hex, self.broker, self.broker_ca,
                     self.countdown_s, self.cooldown_s, self.hb_s, self.keepalive_s)

    # -- power -----------------------------------------------------------------------------
    async def power_on(self) -> None:
        if self.powered:
            return
        reset = "power-on"
        hal = HostHal(root=str(self.root), clock=VirtualClock(speed=self.clock_speed),
                      uid=self.device_id.encode()[-6:], reset_cause=reset, display=True,
                      durable=self.durable, max_events=16, net=HostNet(up=self.wifi_up))
        fw = Firmware(hal)
        link = fw.start_link()             # keepalive_s comes from config.json (provision())
        self._instrument(fw)
        self.hal = hal
        self.fw = fw
        self.powered = True
        self.boots += 1
        self._tasks = [asyncio.create_task(self._loop(), name=self.device_id + "/loop")]
        if link is not None:
            self._tasks.append(asyncio.create_task(link.run(), name=self.device_id + "/link"))

    async def power_off(self, tear: bool = True, count: bool = True) -> None:
        """The supply goes away: tasks dropped mid-flight, sockets dead, maybe a torn record."""
        if not self.powered:
            return
        self.powered = False
        if count:
            self.power_cuts += 1
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - whatever it was doing, the power is gone
                pass
        self._tasks = []
        assert self.hal is not None
        self.hal.net.cut()
        fw = self.fw
        if fw.link is not None:
            fw.link.close()
        seg_index = fw.journal.n
        fw.journal.close()
        if tear:
            self._tear(seg_index, fw.journal.gen)
        self.fw = None

    def _tear(self, slot: int, gen: int) -> None:
        """Leave a half-written record after the last complete one (a write cut by the power)."""
        path = self.root / JOURNAL_DIR / ("j%d.log" % gen)
        junk = bytes(random.getrandbits(8) for _ in range(random.randint(1, REC_SIZE - 1)))
        with open(path, "r+b") as f:
            f.seek(slot * REC_SIZE)
            f.write(junk)

    async def stop(self) -> None:
        """Clean shutdown at the end of a run (no tear)."""
        await self.power_off(tear=False, count=False)

    # -- Wi-Fi and clock faults --------------------------------------------------------------
    def set_wifi(self, up: bool) -> None:
        self.wifi_up = up
        if self.hal is not None:
            if up:
                self.hal.net.restore()
            else:
                self.hal.net.cut()

    def unsync_clock(self) -> None:
        """The device forgets its wall time (RTC lost): records carry w=0 until it re-syncs."""
        if self.fw is not None:
            self.fw.clock.synced = False
            self.fw.clock.source = ""

    # -- the device loop ----------------------------------------------------------------------
    async def _loop(self) -> None:
        fw = self.fw
        hal = self.hal
        assert hal is not None
        while True:
            now = fw.step()
            if fw.app.reboot_due(now):
                asyncio.get_running_loop().call_soon(self._reboot_soon)
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_ms / 1000)
            except TimeoutError:
                pass

    def _reboot_soon(self) -> None:
        async def reboot() -> None:
            await self.power_off(tear=False, count=False)
            await self.power_on()
        asyncio.get_running_loop().create_task(reboot())

    # -- citizen's side -------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.fw.app.state if self.fw is not None else "off"

    @property
    def invitation(self) -> str:
        return self.fw.app.inv if self.fw is not None else ""

    @property
    def online(self) -> bool:
        return bool(self.fw is not None and self.fw.link is not None and self.fw.link.connected)

    def journal_depth(self) -> int:
        return int(self.fw.journal.depth()) if self.fw is not None else 0

    async def wait_invited(self, invitation_id: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.fw is not None and self.fw.app.state == "invited" and self.fw.app.inv == invitation_id:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass

    async def press(self, index: int) -> PressResult:
        """Press and release button index, as a citizen does; returns what the device answered."""
        t = time.monotonic()
        fw = self.fw
        if fw is None:       # no power: no light, no beep
            return PressResult(False, "", "", "", "", t)
        hal = self.hal
        assert hal is not None
        self._press_result = None
        hal.press(index)
        fw.step()             # the next scan sees the press (the loop's step would do the same)
        hal.release(index)
        fw.step()             # ... and the release; the debounce ends debounce_ms later:
        # wake the loop then, as the 10 ms scan of the real device would see it.
        asyncio.get_running_loop().call_later(
            (fw.cfg.debounce_ms / self.clock_speed + 5) / 1000.0, self._wake.set)
        result = self._press_result
        self._press_result = None
        if result is None:
            return PressResult(False, "", "", "", "", t)
        rid, before = result
        kind = ""
        for k, v in fw.app.counts.items():
            if v != before.get(k, 0):
                kind = k
        if rid is None or kind == "":
            return PressResult(False, "", kind, "", "", t)
        rb, rs = rid
        self.sent_at[(rb, rs)] = t
        grade = fw.cfg.buttons[index]
        inv = fw.app.last_inv if kind in ("rated", "extra") else ""
        # ok beep or extra click: the citizen saw the press taken (an unpaired press is journaled
        # but answered with the refused signal: a record, not a rating).
        accepted = kind != "unpaired" and hal.tone_hz in (FEEDBACK_OK_HZ, FEEDBACK_EXTRA_HZ)
        return PressResult(accepted, record_id(self.device_id, rb, rs), kind, grade, inv, t)

    # -- instrumentation ------------------------------------------------------------------------
    def _instrument(self, fw: Any) -> None:
        app = fw.app
        real_on_button = app.on_button

        def on_press(index: int, now: int) -> Any:
            before = dict(app.counts)
            rid = real_on_button(index, now)
            self._press_result = (rid, before)
            return rid

        fw._on_press = on_press          # Firmware.step() calls this for each debounced press

        real_on_command = app.on_command

        def on_command(msg: dict[str, Any], now: int | None = None) -> Any:
            r = real_on_command(msg, now)
            self.changed.set()
            return r

        app.on_command = on_command

        journal = fw.journal
        real_ack = journal.ack

        def ack(rb: int, rs: int) -> Any:
            done = real_ack(rb, rs)
            if done:
                t0 = self.sent_at.pop((rb, rs), None)
                if t0 is not None and self.on_ack is not None:
                    self.on_ack(record_id(self.device_id, rb, rs), time.monotonic() - t0)
            return done

        journal.ack = ack
