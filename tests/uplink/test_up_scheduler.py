"""The scheduler as the service runs it: run_scheduler on its own connection, catch-up of a
missed daily push at start, near-real-time mode, prompt stop; and next_daily in hall time."""

from __future__ import annotations

import asyncio
import datetime as dt

from up_support import TZ, Database, Seeder, local_ms

from gateway.uplink import state
from gateway.uplink.scheduler import Scheduler, last_due_daily, next_daily, run_scheduler
from gateway.uplink.settings import UplinkSettings
from simulator.platform import PlatformStandIn


def test_next_daily_in_hall_time() -> None:
    now = local_ms("2025-03-03", 1, 29, 59)
    assert next_daily(now, TZ, (1, 30)) == local_ms("2025-03-03", 1, 30)
    assert next_daily(local_ms("2025-03-03", 1, 30), TZ, (1, 30)) == local_ms("2025-03-04", 1, 30)
    assert last_due_daily(now, TZ, (1, 30)) == local_ms("2025-03-02", 1, 30)
    # 01:30 in Shanghai is 17:30 UTC the day before.
    utc = dt.datetime.fromtimestamp(next_daily(now, TZ, (1, 30)) / 1000, dt.UTC)
    assert (utc.day, utc.hour, utc.minute) == (2, 17, 30)


async def test_run_scheduler_catches_up_at_start_and_stops(gwdb: Database, seeder: Seeder,
                                                           platform: PlatformStandIn) -> None:
    ids = await seeder.records("hcp-dev1", "2025-03-03", 30)
    cfg = {"uplink": {"url": platform.url, "area_code": "540102", "backoff_base_s": 0.01,
                      "backoff_max_s": 0.05}}
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(gwdb, cfg, stop))
    for _ in range(500):                       # deadline 5 s: no daily run yet -> push at start
        if await state.last_full_success(gwdb) is not None:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)            # next daily is hours away: stop must be prompt
    assert platform.accepted_ids() == sorted(ids)
    last = await state.last_full_success(gwdb)
    assert last is not None and last["trigger"] == "daily"


class StepClock:
    def __init__(self, start_ms: int, stop_after: int) -> None:
        self.now = start_ms
        self.wakes: list[int] = []
        self.stop_after = stop_after

    def now_ms(self) -> int:
        return self.now

    async def sleep_until(self, at_ms: int, stop: asyncio.Event) -> bool:
        self.now = max(self.now, at_ms)
        self.wakes.append(self.now)
        if len(self.wakes) > self.stop_after:
            stop.set()
        await asyncio.sleep(0)
        return stop.is_set()


async def test_realtime_mode_pushes_every_n_minutes(gwdb: Database, seeder: Seeder,
                                                    platform: PlatformStandIn) -> None:
    start = local_ms("2025-03-03", 10, 0)
    async with gwdb.transaction() as c:   # a daily run already happened today: no catch-up
        await c.execute("INSERT INTO uplink_runs (trigger, started_ms, outcome) VALUES ('daily', ?, 'done')",
                        (local_ms("2025-03-03", 1, 30),))
    clock = StepClock(start, stop_after=3)
    sched = Scheduler(gwdb, UplinkSettings(url=platform.url, area_code="540102", realtime_minutes=5), clock)
    seen: list[int] = []

    async def on_run(trigger: str, report: object) -> None:
        seen.append(len(platform.accepted_ids()))
        await seeder.records("hcp-dev1", "2025-03-03", 2)
    sched.on_run = on_run
    await seeder.records("hcp-dev1", "2025-03-03", 2)
    await sched.run(asyncio.Event())
    await sched.close()
    assert [t for t, _ in sched.runs] == ["realtime"] * 3
    assert [w - start for w in clock.wakes[:3]] == [300_000, 600_000, 900_000]
    assert seen == [2, 4, 6]


async def test_leader_job_runs_until_stopped(gwdb: Database, seeder: Seeder,
                                             platform: PlatformStandIn) -> None:
    """gateway.service runs run_scheduler as a leader job: it pushes, and ends when its event is set."""
    from types import SimpleNamespace

    from gateway.uplink.scheduler import run_scheduler
    await seeder.records("hcp-dev1", "2025-03-03", 3)
    raw = {"uplink": {"url": platform.url, "area_code": "540102"}}
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(gwdb.store, SimpleNamespace(raw=raw), stop))
    for _ in range(500):
        if len(platform.accepted_ids()) == 3:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10.0)
    assert task.done() and len(platform.accepted_ids()) == 3
