"""Push runs against the real stand-in: delivery, dedupe after a lost ack, per-record
rejection, policies per record kind, resume after restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from up_support import Database, Seeder, fast_settings, open_db

from gateway.uplink import state
from gateway.uplink.push import Pusher, push_once
from simulator.platform import PlatformStandIn


async def test_push_delivers_every_record_once(gwdb: Database, seeder: Seeder,
                                               platform: PlatformStandIn) -> None:
    ids = await seeder.records("hcp-dev1", "2025-03-03", 120)
    report = await push_once(gwdb, fast_settings(platform.url))
    assert report.ok and report.accepted == 120 and report.batches == 3
    assert platform.accepted_ids() == sorted(ids)
    assert await state.status_counts(gwdb) == {"acked": 120}
    again = await push_once(gwdb, fast_settings(platform.url))
    assert again.ok and again.batches == 0
    assert platform.stats()["received_total"] == 120


async def test_lost_ack_then_repush_creates_no_duplicate(gwdb: Database, seeder: Seeder,
                                                          platform: PlatformStandIn) -> None:
    ids = await seeder.records("hcp-dev1", "2025-03-03", 40)
    platform.faults.lose_ack_next = 1     # first batch: stored by the platform, answer lost
    report = await push_once(gwdb, fast_settings(platform.url, batch_size=40, max_attempts=3))
    # The retry of the same batch finds every record already there.
    assert report.ok and report.requests == 2 and report.duplicates == 40 and report.accepted == 0
    assert platform.stats()["acks_lost"] == 1
    assert platform.accepted_ids() == sorted(ids)
    assert platform.stats()["received_total"] == 80          # sent twice, stored once
    assert await state.status_counts(gwdb) == {"acked": 40}


async def test_lost_ack_across_runs(gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    """The ack is lost and the run gives up; the next run re-sends, the platform dedupes."""
    ids = await seeder.records("hcp-dev1", "2025-03-03", 10)
    platform.faults.lose_ack_next = 1
    first = await push_once(gwdb, fast_settings(platform.url, max_attempts=1))
    assert first.outcome == "unavailable" and first.acked == 0
    assert await state.status_counts(gwdb) == {"sent": 10}
    second = await push_once(gwdb, fast_settings(platform.url))
    assert second.ok and second.duplicates == 10
    assert platform.accepted_ids() == sorted(ids)


async def test_malformed_record_rejected_alone(gwdb: Database, seeder: Seeder,
                                               platform: PlatformStandIn) -> None:
    good = await seeder.records("hcp-dev1", "2025-03-03", 30)
    bad = await seeder.records("hcp-dev1", "2025-03-03", 1, dept_code="NOT-A-CREDIT-CODE")
    more = await seeder.records("hcp-dev1", "2025-03-03", 19)
    report = await push_once(gwdb, fast_settings(platform.url))
    assert report.ok and report.accepted == 49 and report.rejected == 1
    assert platform.accepted_ids() == sorted(good + more)
    rej = await state.list_rejections(gwdb)
    assert [r["record_id"] for r in rej] == bad
    assert rej[0]["reject_origin"] == "platform" and rej[0]["reject_code"] == "bad_format"
    assert "deptCode" in rej[0]["reject_reason"]
    # Never retried blindly: the next run sends nothing.
    again = await push_once(gwdb, fast_settings(platform.url))
    assert again.batches == 0 and platform.stats()["rejected"] == 1
    # An admin re-queues it (after fixing the case data): it is sent once more.
    async with gwdb.transaction() as c:
        await c.execute("UPDATE invitations SET dept_code = '' WHERE record_id = ?", (bad[0],))
    assert await state.requeue(gwdb, bad) == 1
    fixed = await push_once(gwdb, fast_settings(platform.url))
    assert fixed.ok and fixed.accepted == 1
    assert await state.status_counts(gwdb) == {"acked": 50}


async def test_injected_partial_rejection(gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    ids = await seeder.records("hcp-dev1", "2025-03-03", 20)
    platform.faults.reject_ids = [ids[3], ids[17]]
    report = await push_once(gwdb, fast_settings(platform.url))
    assert report.accepted == 18 and report.rejected == 2
    assert sorted(r["record_id"] for r in await state.list_rejections(gwdb)) == sorted([ids[3], ids[17]])


async def test_kinds_policy(gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    rated = await seeder.records("hcp-dev1", "2025-03-03", 3)
    unrated = await seeder.records("hcp-dev1", "2025-03-03", 2, kind="unrated")
    await seeder.records("hcp-dev1", "2025-03-03", 2, kind="extra")
    await seeder.records("hcp-dev1", "2025-03-03", 2, kind="walkup", with_invitation=False)
    await seeder.records("hcp-dev1", "2025-03-03", 1, kind="unpaired", with_invitation=False)
    no_type = await seeder.records("hcp-dev1", "2025-03-03", 1, applicant_type=None)
    report = await push_once(gwdb, fast_settings(platform.url))
    assert report.accepted == 5 and report.local_rejected == 1
    assert platform.accepted_ids() == sorted(rated + unrated)
    by_id = {r["recordId"]: r for r in platform.accepted_records()}
    assert all(by_id[i]["defaultFlag"] == 1 and by_id[i]["satisfaction"] == 4 for i in unrated)
    assert all(by_id[i]["defaultFlag"] == 0 for i in rated)
    rej = await state.list_rejections(gwdb)
    assert [(r["record_id"], r["reject_origin"], r["reject_code"]) for r in rej] == \
        [(no_type[0], "gateway", "bad_applicant_type")]


async def test_unrated_skip_policy(gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    await seeder.records("hcp-dev1", "2025-03-03", 2, kind="unrated")
    report = await push_once(gwdb, fast_settings(platform.url, unrated="skip"))
    assert report.batches == 0 and platform.accepted_ids() == []


async def test_push_by_date(gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    d1 = await seeder.records("hcp-dev1", "2025-03-03", 5)
    d2 = await seeder.records("hcp-dev1", "2025-03-04", 5)
    report = await push_once(gwdb, fast_settings(platform.url), date="2025-03-04")
    assert report.accepted == 5 and platform.accepted_ids() == sorted(d2)
    await push_once(gwdb, fast_settings(platform.url))
    assert platform.accepted_ids() == sorted(d1 + d2)


async def test_bad_credentials_stop_the_run_and_keep_records(gwdb: Database, seeder: Seeder,
                                                             platform: PlatformStandIn) -> None:
    await seeder.records("hcp-dev1", "2025-03-03", 5)
    report = await push_once(gwdb, fast_settings(platform.url, app_secret="wrong"))
    assert report.outcome == "refused" and "auth" in (report.error or "")
    assert await state.list_rejections(gwdb) == []
    ok = await push_once(gwdb, fast_settings(platform.url))
    assert ok.accepted == 5


async def test_resume_after_restart(tmp_path: Path, platform: PlatformStandIn) -> None:
    """Stop the gateway in the middle of a push; a new process (new connection) finishes it."""
    path = tmp_path / "gw.sqlite"
    db = await open_db(path)
    seeder = Seeder(db)
    await seeder.device("hcp-dev1", "W01", "clerk01")
    ids = await seeder.records("hcp-dev1", "2025-03-03", 200)
    stop = asyncio.Event()
    platform.faults.slow_ms = 30
    pusher = Pusher(db, fast_settings(platform.url, batch_size=20))
    task = asyncio.create_task(pusher.run(stop=stop))
    for _ in range(1000):                 # deadline: 10 s
        if len(platform.accepted_ids()) >= 40:
            break
        await asyncio.sleep(0.01)
    stop.set()
    first = await task
    await pusher.close()
    await db.close()
    assert first.outcome == "stopped"
    assert 40 <= len(platform.accepted_ids()) < 200
    platform.faults.slow_ms = 0
    db2 = await open_db(path)            # the "restarted" gateway
    second = await push_once(db2, fast_settings(platform.url, batch_size=20))
    assert second.ok
    assert platform.accepted_ids() == sorted(ids)
    assert platform.stats()["accepted"] == 200
    assert await state.status_counts(db2) == {"acked": 200}
    await db2.close()
