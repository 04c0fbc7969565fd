"""Invitations closed without a rating reach the platform once, as flagged default ratings.

Real store (all migrations), the gateway's own invitation functions (create supersedes,
expire_due expires, cancel) and attribution (a device record closes its invitation as the
ingest does), the real platform stand-in over loopback HTTP.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from up_support import DEPT, CaseFlow, Database, Seeder, fast_settings, local_ms, open_db

from gateway.store.migrate import migrate, migrations_dir
from gateway.uplink import state
from gateway.uplink.adapters import make_adapter
from gateway.uplink.push import Pusher, push_once
from gateway.uplink.reconcile import reconcile
from gateway.uplink.settings import UplinkSettings
from simulator.platform import PlatformStandIn

DAY = "2025-03-03"
T0 = local_ms(DAY, 10)


async def three_cases(gwdb: Database, flow: CaseFlow) -> tuple[str, str, str, str]:
    """A superseded by B; B expired on the gateway; C unrated by the device's own record.
    Returns (A, B, C, C's record id)."""
    a = await flow.invite("W01", T0)
    b = await flow.invite("W01", T0 + 10_000)             # supersedes A at 10:00:10
    assert await flow.expire(T0 + 200_000) == [b]          # B expires at 10:00:10 + 60 s + 30 s
    c = await flow.invite("W01", T0 + 300_000)
    c_rec = await flow.device_record("hcp-dev1", "unrated", c, T0 + 360_000)
    status = {r["id"]: r["status"] for r in await gwdb.fetchall("SELECT id, status FROM invitations")}
    assert status == {a: "superseded", b: "expired", c: "unrated"}
    return a, b, c, c_rec


async def test_superseded_expired_and_device_unrated_reach_the_platform_once_flagged(
        gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    a, b, c, c_rec = await three_cases(gwdb, flow)
    settings = fast_settings(platform.url)

    # The device record goes first, then the two invitation defaults.
    first = await push_once(gwdb, settings)
    assert first.ok and first.accepted == 3 and first.invitation_defaults == 2
    assert sorted(platform.accepted_ids()) == sorted(["inv:" + a, "inv:" + b, c_rec])

    # Re-push: nothing more to send.
    again = await push_once(gwdb, settings)
    assert again.ok and again.batches == 0

    by_id = {r["recordId"]: r for r in platform.accepted_records()}
    for rid, project, closed in (("inv:" + a, "CASE-INV-0001", T0 + 10_000),
                                 ("inv:" + b, "CASE-INV-0002", T0 + 10_000 + 90_000),
                                 (c_rec, "CASE-INV-0003", T0 + 360_000)):
        r = by_id[rid]
        assert r["defaultFlag"] == 1 and r["satisfaction"] == 4          # default grade s, 5 = 非常满意
        assert r["projectNo"] == project and r["clerkAccount"] == "clerk01" and r["deptCode"] == DEPT
        assert r["assessTime"] == make_adapter(settings).format_time(closed)   # the close time
    assert by_id["inv:" + a]["assessTime"] == "2025-03-03 10:00:10"
    assert platform.stats()["received_total"] == 3
    assert await state.status_counts(gwdb) == {"acked": 3}


async def test_lost_ack_of_the_defaults_then_repush_doubles_nothing(
        gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    c = await flow.invite("W01", T0)
    c_rec = await flow.device_record("hcp-dev1", "unrated", c, T0 + 60_000)
    assert (await push_once(gwdb, fast_settings(platform.url))).accepted == 1
    a = await flow.invite("W01", T0 + 100_000)
    b = await flow.invite("W01", T0 + 110_000)             # supersedes A
    await flow.expire(T0 + 400_000)                        # B expires
    platform.faults.lose_ack_next = 1
    lost = await push_once(gwdb, fast_settings(platform.url, max_attempts=1))
    assert lost.outcome == "unavailable" and lost.acked == 0
    assert platform.stats()["acks_lost"] == 1
    assert await state.status_counts(gwdb) == {"acked": 1, "sent": 2}
    # The next run re-sends the same ids; the platform answers duplicate; nothing doubles.
    second = await push_once(gwdb, fast_settings(platform.url))
    assert second.ok and second.duplicates == 2 and second.accepted == 0
    third = await push_once(gwdb, fast_settings(platform.url))
    assert third.batches == 0
    assert platform.accepted_ids() == sorted(["inv:" + a, "inv:" + b, c_rec])
    assert platform.stats()["accepted"] == 3 and platform.stats()["received_total"] == 5
    assert await state.status_counts(gwdb) == {"acked": 3}


async def test_lost_ack_retried_within_one_run(gwdb: Database, seeder: Seeder,
                                               platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0)
    await flow.invite("W01", T0 + 5_000)                   # supersedes A; stays pending
    platform.faults.lose_ack_next = 1
    rep = await push_once(gwdb, fast_settings(platform.url, max_attempts=3))
    assert rep.ok and rep.requests == 2 and rep.duplicates == 1 and rep.invitation_defaults == 1
    assert platform.accepted_ids() == ["inv:" + a]


async def test_unrated_skip_uploads_none_of_them(gwdb: Database, seeder: Seeder,
                                                 platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    await three_cases(gwdb, flow)
    rated = await seeder.records("hcp-dev1", DAY, 2)
    rep = await push_once(gwdb, fast_settings(platform.url, unrated="skip"))
    assert rep.ok and rep.invitation_defaults == 0
    assert platform.accepted_ids() == sorted(rated)
    res = await reconcile(gwdb, fast_settings(platform.url, unrated="skip"), DAY, platform.accepted_ids())
    assert res.ok, res.mismatches
    assert res.uplink["held_invitations"] == 2 and res.uplink["invitation_defaults"] == 0
    assert res.uplink["held"] == 1                          # the device's unrated record


async def test_cancelled_and_rated_and_pending_get_no_default(gwdb: Database, seeder: Seeder,
                                                              platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    withdrawn = await flow.invite("W01", T0)
    await flow.cancel(withdrawn, T0 + 5_000)               # the window system withdrew the case
    rated = await flow.invite("W01", T0 + 10_000)
    press = await flow.device_record("hcp-dev1", "rated", rated, T0 + 15_000, grade="vs")
    await flow.invite("W01", T0 + 20_000)                  # still pending
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.invitation_defaults == 0
    assert platform.accepted_ids() == [press]


async def test_a_device_record_of_a_superseded_invitation_is_used_instead(
        gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    """The device missed the cancel (offline) and ran its countdown: its own unrated record
    names the superseded invitation; a press made before the supersede arrives late and
    rates its invitation. Either way the device record goes up, no "inv:" default."""
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0)
    b = await flow.invite("W01", T0 + 10_000)              # supersedes A
    c = await flow.invite("W01", T0 + 20_000)              # supersedes B
    await flow.invite("W01", T0 + 30_000)                  # supersedes C
    a_unrated = await flow.device_record("hcp-dev1", "unrated", a, T0 + 60_000)
    b_press = await flow.device_record("hcp-dev1", "rated", b, T0 + 15_000, grade="d")
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok
    assert platform.accepted_ids() == sorted([a_unrated, b_press, "inv:" + c])
    status = {r["id"]: r["status"] for r in await gwdb.fetchall("SELECT id, status FROM invitations")}
    assert status[a] == "superseded" and status[b] == "rated" and status[c] == "superseded"


async def test_device_unrated_arriving_after_the_default_is_covered(
        gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0)
    await flow.expire(T0 + 100_000)
    assert (await push_once(gwdb, fast_settings(platform.url))).invitation_defaults == 1
    late = await flow.device_record("hcp-dev1", "unrated", a, T0 + 60_000)   # journal delivered late
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.batches == 0 and rep.covered == 1
    assert platform.accepted_ids() == ["inv:" + a]
    row = await gwdb.fetchone("SELECT status, covered_by FROM uplink_items WHERE record_id = ?", (late,))
    assert row is not None and (row["status"], row["covered_by"]) == ("covered", "inv:" + a)
    res = await reconcile(gwdb, fast_settings(platform.url), DAY, platform.accepted_ids())
    assert res.ok, res.mismatches
    assert res.uplink["covered"] == 1 and res.uplink["uploadable"] == 1 and res.uplink["acked"] == 1


async def test_rating_arriving_after_the_default_is_kept_and_rejected_locally(
        gwdb: Database, seeder: Seeder, platform: PlatformStandIn) -> None:
    """One rating per case at the platform: the default went first; the late real rating is
    kept, listed as a gateway rejection with the reason, and sent only if an admin re-queues it."""
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0)
    await flow.expire(T0 + 100_000)
    await push_once(gwdb, fast_settings(platform.url))
    late = await flow.device_record("hcp-dev1", "rated", a, T0 + 30_000, grade="vs")  # pressed in time
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.local_rejected == 1 and rep.batches == 0
    rej = await state.list_rejections(gwdb)
    assert [(r["record_id"], r["reject_origin"], r["reject_code"]) for r in rej] == \
        [(late, "gateway", "case_has_default")]
    res = await reconcile(gwdb, fast_settings(platform.url), DAY, platform.accepted_ids())
    assert res.mismatch_counts == {"rejected": 1}
    assert await state.requeue(gwdb, [late]) == 1
    assert (await push_once(gwdb, fast_settings(platform.url))).accepted == 1
    assert platform.accepted_ids() == sorted(["inv:" + a, late])


async def test_default_after_s_waits_for_late_records(gwdb: Database, seeder: Seeder,
                                                      platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0)
    await flow.invite("W01", T0 + 10_000)                  # supersedes A at T0 + 10 s
    settings = fast_settings(platform.url, default_after_s=300)
    early = Pusher(gwdb, settings, now_ms=lambda: T0 + 60_000)
    try:
        assert (await early.run()).invitation_defaults == 0
    finally:
        await early.close()
    res = await reconcile(gwdb, settings, DAY, now_ms=T0 + 60_000)
    assert res.mismatch_counts == {"not_delivered": 1}
    assert "not yet due" in res.mismatches[0].detail
    later = Pusher(gwdb, settings, now_ms=lambda: T0 + 311_000)
    try:
        assert (await later.run()).invitation_defaults == 1
    finally:
        await later.close()
    assert platform.accepted_ids() == ["inv:" + a]


async def test_push_by_date_uses_the_close_date(gwdb: Database, seeder: Seeder,
                                                platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", local_ms("2025-03-03", 16))
    b = await flow.invite("W01", local_ms("2025-03-04", 9))    # supersedes A on the next day
    await flow.invite("W01", local_ms("2025-03-04", 10))       # supersedes B
    rep = await push_once(gwdb, fast_settings(platform.url), date="2025-03-03")
    assert rep.invitation_defaults == 0                       # A closed on 03-04, not 03-03
    rep = await push_once(gwdb, fast_settings(platform.url), date="2025-03-04")
    assert rep.invitation_defaults == 2
    assert platform.accepted_ids() == sorted(["inv:" + a, "inv:" + b])


async def test_reconcile_counts_invitation_defaults(gwdb: Database, seeder: Seeder,
                                                    platform: PlatformStandIn) -> None:
    flow = CaseFlow(gwdb, seeder)
    a, b, _, c_rec = await three_cases(gwdb, flow)
    rated = await seeder.records("hcp-dev1", DAY, 3)
    settings = fast_settings(platform.url)
    before = await reconcile(gwdb, settings, DAY, [])
    assert before.uplink["uploadable"] == 6 and before.uplink["invitation_defaults"] == 2
    assert before.mismatch_counts == {"not_delivered": 6}
    assert {m.record_id for m in before.mismatches} == {"inv:" + a, "inv:" + b, c_rec, *rated}
    assert (await push_once(gwdb, settings)).accepted == 6
    after = await reconcile(gwdb, settings, DAY, platform.accepted_ids())
    assert after.ok, after.mismatches
    assert after.uplink["uploadable"] == after.uplink["acked"] == 6
    assert after.platform_held == 6
    # The platform missing one of them is seen too.
    missing = await reconcile(gwdb, settings, DAY, [i for i in platform.accepted_ids() if i != "inv:" + a])
    assert [(m.kind, m.record_id) for m in missing.mismatches] == [("platform_missing", "inv:" + a)]


async def test_gbt39046_family_flags_the_default(gwdb: Database, seeder: Seeder, tmp_path: Path) -> None:
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0)
    await flow.invite("W01", T0 + 10_000)
    base = UplinkSettings(adapter="gbt39046", area_code="540102")
    async with PlatformStandIn(make_adapter(base).schema(), tmp_path / "p.sqlite") as p:
        rep = await push_once(gwdb, fast_settings(p.url, adapter="gbt39046"))
        assert rep.ok and rep.accepted == 1
        (r,) = p.accepted_records()
    assert r["evaluateId"] == "inv:" + a and r["isDefault"] == 1
    assert r["evaluateLevel"] == 2 and r["evaluateTime"] == "20250303T100010"   # GB/T: 2 = 满意


async def test_migration_0101_keeps_delivery_state(tmp_path: Path) -> None:
    """A store migrated up to 0100 with delivered records keeps them through 0101."""
    old = tmp_path / "migrations"
    old.mkdir()
    for f in migrations_dir("sqlite").glob("*.sql"):
        if int(f.name[:4]) <= 100:
            shutil.copy(f, old / f.name)
    db = await open_db(tmp_path / "gw.sqlite", run_migrations=False)
    writer = db.store._writer  # type: ignore[attr-defined]  # the migration runner's raw connection
    await writer.call(lambda c: migrate(c, c.raw.executescript, old))
    seeder = Seeder(db)
    await seeder.device("hcp-dev1", "W01", "clerk01")
    ids = await seeder.records("hcp-dev1", DAY, 3)
    async with db.transaction() as c:
        await c.executemany("INSERT INTO uplink_items (record_id, status) VALUES (?, 'acked')",
                            [(i,) for i in ids])
    assert 101 in await writer.call(lambda c: migrate(c, c.raw.executescript))
    assert await state.status_counts(db) == {"acked": 3}
    cols = {r[1] for r in await db.fetchall("PRAGMA table_info(uplink_items)")}
    assert {"invitation_id", "covered_by"} <= cols
    assert await db.fetchall("PRAGMA foreign_key_check") == []
    await db.close()
