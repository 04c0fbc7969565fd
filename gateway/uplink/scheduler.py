"""When to push: daily at a local time, optionally every N minutes, retries after outages.

`run_scheduler(store, cfg, stop_event)` is the task the gateway service starts (on the
leader instance). It runs one push at a time until stop_event is set. The clock is injectable so tests can
live through a week of outage in a second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from gateway.store import Store
from gateway.uplink import state
from gateway.uplink.client import PlatformClient
from gateway.uplink.pacing import sleep_or_stop
from gateway.uplink.push import Pusher, PushReport
from gateway.uplink.settings import UplinkSettings, load_settings

log = logging.getLogger("gateway.uplink.scheduler")

MAX_SLEEP_S = 60.0   # re-read the wall clock at least this often (NTP steps, suspend)


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep_until(self, at_ms: int, stop: asyncio.Event) -> bool:
        """Wait until wall time at_ms; True when stop was set instead."""
        ...


class WallClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep_until(self, at_ms: int, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            left = (at_ms - self.now_ms()) / 1000
            if left <= 0:
                return False
            if await sleep_or_stop(min(left, MAX_SLEEP_S), stop):
                return True
        return True


def last_due_daily(now_ms: int, tz: ZoneInfo, hm: tuple[int, int]) -> int:
    """The most recent daily push time at or before now (epoch ms)."""
    now = dt.datetime.fromtimestamp(now_ms / 1000, tz)
    due = dt.datetime.combine(now.date(), dt.time(hm[0], hm[1]), tz)
    if due > now:
        due = dt.datetime.combine(now.date() - dt.timedelta(days=1), dt.time(hm[0], hm[1]), tz)
    return int(due.timestamp() * 1000)


def next_daily(now_ms: int, tz: ZoneInfo, hm: tuple[int, int]) -> int:
    """The first daily push time strictly after now (epoch ms), in hall local time."""
    now = dt.datetime.fromtimestamp(now_ms / 1000, tz)
    d = now.date()
    while True:
        due = dt.datetime.combine(d, dt.time(hm[0], hm[1]), tz)
        if due > now:
            return int(due.timestamp() * 1000)
        d += dt.timedelta(days=1)


class Scheduler:
    def __init__(self, store: Store, settings: UplinkSettings, clock: Clock | None = None,
                 client: PlatformClient | None = None) -> None:
        self.store = store
        self.s = settings
        self.clock: Clock = clock or WallClock()
        self.pusher = Pusher(store, settings, client, now_ms=self.clock.now_ms)
        self.runs: list[tuple[str, PushReport]] = []
        # Tests and the simulator may watch each run.
        self.on_run: Callable[[str, PushReport], Awaitable[None]] | None = None

    async def _missed_daily(self) -> bool:
        """After a restart: was the latest daily push time passed without a successful run?"""
        last = await state.last_full_success(self.store)
        due = last_due_daily(self.clock.now_ms(), self.s.tz, self.s.daily_hm)
        return last is None or int(last["started_ms"]) < due

    async def _push(self, trigger: str, stop: asyncio.Event) -> PushReport:
        try:
            report = await self.pusher.run(trigger=trigger, stop=stop)
        except Exception as e:  # the service must survive anything a run throws
            log.exception("uplink %s run failed", trigger)
            report = PushReport(outcome="error", error="%s: %s" % (e.__class__.__name__, e))
        self.runs.append((trigger, report))
        if self.on_run is not None:
            await self.on_run(trigger, report)
        return report

    async def run(self, stop: asyncio.Event) -> None:
        retry_at: int | None = None
        if await self._missed_daily():
            # Down at push time (or first start): push now, then keep the daily rhythm.
            report = await self._push("daily", stop)
            if not report.ok and report.outcome != "stopped":
                retry_at = self.clock.now_ms() + self.s.retry_minutes * 60_000
        while not stop.is_set():
            now = self.clock.now_ms()
            due, trigger = next_daily(now, self.s.tz, self.s.daily_hm), "daily"
            if self.s.realtime_minutes:
                rt = now + self.s.realtime_minutes * 60_000
                if rt < due:
                    due, trigger = rt, "realtime"
            if retry_at is not None and retry_at < due:
                due, trigger = retry_at, "retry"
            if await self.clock.sleep_until(due, stop):
                break
            report = await self._push(trigger, stop)
            if report.outcome == "stopped":
                break
            # A failed run is retried soon; a daily that fails still counts as missed
            # (its row says so), so a restart in between pushes at once.
            retry_at = None if report.ok else self.clock.now_ms() + self.s.retry_minutes * 60_000

    async def close(self) -> None:
        await self.pusher.close()


async def run_scheduler(store: Store, cfg: Any, stop_event: asyncio.Event,
                        clock: Clock | None = None) -> None:
    """The gateway service's uplink task: returns when stop_event is set."""
    settings = load_settings(cfg)
    if not settings.enabled:
        log.info("uplink disabled ([uplink] enabled = false)")
        await stop_event.wait()
        return
    sched = Scheduler(store, settings, clock)
    try:
        await sched.run(stop_event)
    finally:
        await sched.close()
