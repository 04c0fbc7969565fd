"""Backoff on 5xx and timeouts, the rate limit, batch-level refusal, and a week of outage
lived through the real scheduler on a clock the test controls."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

from up_support import TZ, Database, Seeder, fast_settings, local_ms

from gateway.uplink import state
from gateway.uplink.pacing import Backoff
from gateway.uplink.push import Pusher, push_once
from gateway.uplink.scheduler import Scheduler, next_daily
from simulator.platform import PlatformStandIn


def gaps(platform: PlatformStandIn) -> list[float]:
    t = [e["t"] for e in platform.request_log]
    return [b - a for a, b in zip(t, t[1:], strict=False)]


async def test_backoff_on_5xx_is_exponential_with_jitter(gwdb: Database, seeder: Seeder,
                                                         platform: PlatformStandIn) -> None:
    await seeder.records("hcp-dev1", "2025-03-03", 5)
    platform.faults.fail_next = 4
    settings = fast_settings(platform.url, backoff_base_s=0.04, backoff_max_s=1.0, max_attempts=6)
    pusher = Pusher(gwdb, settings, backoff=Backoff(0.04, 1.0, random.Random(7)))
    report = await pusher.run()
    await pusher.close()
    assert report.ok and report.accepted == 5 and report.requests == 5
    assert [e["outcome"] for e in platform.request_log] == ["fail"] * 4 + ["answered"]
    # Retry n waits between step/2 and step, step = 0.04 * 2**(n-1).
    for n, (planned, seen) in enumerate(zip(report.retry_delays, gaps(platform), strict=True), start=1):
        step = 0.04 * 2 ** (n - 1)
        assert step / 2 <= planned <= step
        assert seen >= planned * 0.95
    assert len(set(report.retry_delays)) == 4


async def test_timeouts_are_retried(gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    await seeder.records("hcp-dev1", "2025-03-03", 5)
    platform.faults.timeout_next = 1
    platform.faults.hang_s = 1.0
    report = await push_once(gwdb, fast_settings(platform.url, request_timeout_s=0.3))
    assert report.ok and report.accepted == 5 and report.requests == 2
    assert platform.request_log[0]["outcome"] == "timeout"


async def test_gives_up_after_max_attempts_and_keeps_records(gwdb: Database, seeder: Seeder,
                                                             platform: PlatformStandIn) -> None:
    await seeder.records("hcp-dev1", "2025-03-03", 5)
    platform.faults.outage = True
    report = await push_once(gwdb, fast_settings(platform.url, max_attempts=3))
    assert report.outcome == "unavailable" and report.requests == 3
    assert await state.status_counts(gwdb) == {"sent": 5}
    platform.faults.outage = False
    assert (await push_once(gwdb, fast_settings(platform.url))).accepted == 5


async def test_rate_limit_spaces_batches(gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    await seeder.records("hcp-dev1", "2025-03-03", 100)
    report = await push_once(gwdb, fast_settings(platform.url, batch_size=4, max_batches_per_second=20.0))
    assert report.ok and report.batches == 25
    t = [e["t"] for e in platform.request_log]
    # 25 requests at 20/s take at least 24 intervals of 50 ms (arrival jitter aside) ...
    assert t[-1] - t[0] >= 24 * 0.05 * 0.9
    # ... and no 1-second window holds more than 20 (+1 for arrival jitter at its edge).
    assert max(sum(1 for x in t if a <= x < a + 1.0) for a in t) <= 21


async def test_whole_batch_refused_is_kept_not_retried(gwdb: Database, seeder: Seeder,
                                                       platform: PlatformStandIn) -> None:
    ids = await seeder.records("hcp-dev1", "2025-03-03", 4)
    platform.faults.batch_status = 413
    report = await push_once(gwdb, fast_settings(platform.url))
    assert report.rejected == 4 and report.requests == 1
    rej = await state.list_rejections(gwdb)
    assert sorted(r["record_id"] for r in rej) == sorted(ids)
    assert {r["reject_code"] for r in rej} == {"injected_refusal"}


class FakeClock:
    """Wall time that jumps to each wake-up at once; a hook plays the world in between."""

    def __init__(self, start_ms: int) -> None:
        self.now = start_ms
        self.wakes: list[int] = []
        self.hook = None

    def now_ms(self) -> int:
        return self.now

    async def sleep_until(self, at_ms: int, stop: asyncio.Event) -> bool:
        if stop.is_set():
            return True
        self.now = max(self.now, at_ms)
        self.wakes.append(self.now)
        if self.hook is not None:
            await self.hook(self.now)
        await asyncio.sleep(0)
        return stop.is_set()


async def test_seven_days_of_outage_then_exactly_once(gwdb: Database, seeder: Seeder,
                                                      platform: PlatformStandIn) -> None:
    """Days 1-7 the platform is down at every push; day 8 it is back: everything arrives once,
    in batches no faster than the rate limit."""
    await seeder.device("hcp-dev2", "W02", "clerk02")
    day0 = dt.date(2025, 3, 2)
    clock = FakeClock(local_ms(day0.isoformat(), 0, 0))
    settings = fast_settings(platform.url, batch_size=25, max_attempts=2, retry_minutes=240,
                             max_batches_per_second=50.0)
    sched = Scheduler(gwdb, settings, clock)
    stop = asyncio.Event()
    all_ids: list[str] = []
    seeded: set[dt.date] = set()

    async def world(now_ms: int) -> None:
        today = dt.datetime.fromtimestamp(now_ms / 1000, TZ).date()
        if (today - day0).days >= 9:
            stop.set()
            return
        yesterday = today - dt.timedelta(days=1)
        if yesterday >= day0 and yesterday not in seeded:   # yesterday's work, for tonight's push
            seeded.add(yesterday)
            for dev in ("hcp-dev1", "hcp-dev2"):
                all_ids.extend(await seeder.records(dev, yesterday.isoformat(), 30))
                all_ids.extend(await seeder.records(dev, yesterday.isoformat(), 3, kind="unrated"))
        platform.faults.outage = (today - day0).days <= 7

    clock.hook = world  # type: ignore[assignment]
    await world(clock.now)
    await sched.run(stop)
    await sched.close()

    triggers = [t for t, _ in sched.runs]
    outage_runs = [r for t, r in sched.runs if r.outcome == "unavailable"]
    assert len(outage_runs) >= 7 * 5      # daily + retries every 4 h, each refused
    assert "daily" in triggers and "retry" in triggers
    assert len(all_ids) == 8 * 2 * 33 and len(set(all_ids)) == len(all_ids)
    assert platform.accepted_ids() == sorted(all_ids)
    assert platform.stats()["received_total"] == len(all_ids)     # no record was sent twice
    assert await state.status_counts(gwdb) == {"acked": len(all_ids)}
    # The catch-up run was paced: 22 batches at 50/s, never more than 50 (+1) in a second.
    answered = [e["t"] for e in platform.request_log if e["outcome"] == "answered"]
    assert len(answered) == -(-len(all_ids) // 25)
    assert answered[-1] - answered[0] >= (len(answered) - 1) * 0.02 * 0.9
    # Daily pushes happened at 01:30 local time.
    first_daily = next_daily(local_ms(day0.isoformat(), 0, 0), TZ, (1, 30))
    assert first_daily in clock.wakes
