"""Contract tests of the district's repositories on the store_url backend: each record's copy of
its upload state follows every change the uplink makes (migration 0190's triggers), the case
feed's repository, device presence."""

from __future__ import annotations

from pathlib import Path

from adm_support import open_store

from gateway.store.api import Tx
from gateway.store.rows import CaseRow

HOUR = 3_600_000


async def test_records_follow_their_uplink_state(tmp_path: Path, store_url: str) -> None:
    s = await open_store(tmp_path, store_url)
    try:
        r1 = await s.rec("dev-1", "walkup", 1_780_000_000_000)
        r2 = await s.rec("dev-1", "unrated", 1_780_000_001_000, None)
        ids = [r1["record_id"], r2["record_id"]]

        async def state() -> list[tuple[object, ...]]:
            rows = await s.fetchall("SELECT record_id, up_status, up_default FROM records ORDER BY record_id")
            return [tuple(r) for r in rows]

        assert await state() == [(ids[0], None, 0), (ids[1], None, 0)]
        await s.db.write(lambda tx: tx.uplink.mark_sent("b1", "x", [(ids[0], 0, None, None, 1)], 5))
        await s.db.write(lambda tx: tx.uplink.mark_covered([(ids[1], "inv:x")]))
        assert await state() == [(ids[0], "sent", 0), (ids[1], "covered", 1)]
        await s.db.write(lambda tx: tx.uplink.apply_results("b1", [], [("bad", "no", 6, ids[0])], (0, 0, 1),
                                                            6,
                                                            None))
        assert (await state())[0] == (ids[0], "rejected", 0)
        assert await s.db.write(lambda tx: tx.uplink.requeue([ids[0]])) == 1
        assert (await state())[0] == (ids[0], "pending", 0)
        await s.db.write(lambda tx: tx.uplink.mark_sent("b2", "x", [(ids[0], 0, None, None, 1)], 7))
        await s.db.write(lambda tx: tx.uplink.apply_results("b2", [(8, "accepted", ids[0])], [], (1, 0, 0), 8,
                                                            None))
        assert (await state())[0] == (ids[0], "acked", 0)
        # An "inv:" default item has no record: nothing else changes.
        await s.db.write(lambda tx: tx.uplink.mark_sent("b3", "x", [("inv:abc", 1, "abc", None, 1)], 9))
        assert len(await state()) == 2
    finally:
        await s.db.close()


async def test_cases_and_presence_repositories(tmp_path: Path, store_url: str) -> None:
    s = await open_store(tmp_path, store_url)
    try:
        rows = [CaseRow("K%d" % i, None if i % 2 else "west", "A01", "zhang", "张三", "", "T", "事项",
                        "finished",
                        1_000 + i, None, 5, 5, "t") for i in range(5)]

        def put(tx: Tx) -> None:
            tx.cases.insert_many(rows)
            tx.cases.update_many([CaseRow("K1", None, "A02", "li", "李四", "", "T", "事项", "withdrawn",
                                          1_001,
                                          2_000, 0, 9, "other")])
        await s.db.write(put)
        got = await s.db.read(lambda tx: tx.cases.get("K1"))
        assert got is not None
        assert (got.window_id, got.status, got.finished_ms, got.updated_ms) == ("A02", "withdrawn", 2_000, 9)
        assert (got.reported_ms, got.reported_by) == (5, "t")          # the first report's
        found, total = await s.db.read(lambda tx: tx.cases.find(1_001, 1_004, limit=2))
        assert [c.case_no for c in found] == ["K1", "K2"] and total == 3
        assert set(await s.db.read(lambda tx: tx.cases.get_many(["K0", "K4", "nope"]))) == {"K0", "K4"}

        # Presence: the hour of each device's last message.
        await s.execute("UPDATE devices SET last_seen = ? WHERE device_id = 'dev-1'", (10 * HOUR + 5,))
        await s.execute("UPDATE devices SET last_seen = ? WHERE device_id = 'dev-2'", (3 * HOUR,))
        assert await s.db.write(lambda tx: tx.presence.note_last_seen(9 * HOUR)) == 1
        assert await s.db.write(lambda tx: tx.presence.note_last_seen(9 * HOUR)) == 0     # once per hour
        await s.db.write(lambda tx: tx.presence.note([("dev-3", 11 * HOUR + 1), ("dev-3", 11 * HOUR + 2)]))
        hours = await s.db.read(lambda tx: tx.presence.hours(10 * HOUR, 12 * HOUR))
        assert hours == {"dev-1": {10 * HOUR}, "dev-3": {11 * HOUR}}
    finally:
        await s.db.close()


async def test_the_service_presence_job(tmp_path: Path, store_url: str) -> None:
    """The leader's presence job (wired in gateway/service.py) notes the hour of every device's
    last message each round, and stops when told."""
    import asyncio

    from gateway.supervision import presence_job
    s = await open_store(tmp_path, store_url)
    try:
        now = [50 * HOUR + 10]
        await s.execute("UPDATE devices SET last_seen = ? WHERE device_id = 'dev-1'", (50 * HOUR,))
        stop = asyncio.Event()
        task = asyncio.create_task(presence_job(s.db, lambda: now[0], 0.05)(stop))
        for _ in range(100):
            if await s.db.read(lambda tx: tx.presence.hours(0, 100 * HOUR)):
                break
            await asyncio.sleep(0.02)
        await s.execute("UPDATE devices SET last_seen = ? WHERE device_id = 'dev-2'", (51 * HOUR + 5,))
        now[0] = 51 * HOUR + 30
        for _ in range(100):
            if "dev-2" in await s.db.read(lambda tx: tx.presence.hours(0, 100 * HOUR)):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert await s.db.read(lambda tx: tx.presence.hours(0, 100 * HOUR)) == {"dev-1": {50 * HOUR},
                                                                                 "dev-2": {51 * HOUR}}
    finally:
        await s.db.close()


async def test_invitations_know_whether_their_case_was_reported(tmp_path: Path, store_url: str) -> None:
    """Migration 0021's triggers: reported before or after the invitation, the invitation's
    case_reported and the case's invited say so (a cancelled invitation is no offer); 0190's: an
    "inv:" default item's state is on its invitation."""
    from gateway import bindings, casefeed, invitations
    s = await open_store(tmp_path, store_url)
    try:
        await bindings.pair(s.db, "dev-1", "A01", "zhang", "t")
        await casefeed.report_cases(s.db, s.cfg.hall, [casefeed.CaseReport("EARLY", 1_780_000_000_000)], "t")
        rules = invitations.InvitationRules()
        for case in ("EARLY", "LATE", "NEVER"):
            req = invitations.InvitationRequest(case_no=case, window_id="A01")
            await invitations.create(s.db, req, "t", rules)
        await casefeed.report_cases(s.db, s.cfg.hall, [casefeed.CaseReport("LATE", 1_780_000_000_000)], "t")
        got = dict(await s.fetchall("SELECT case_no, case_reported FROM invitations"))
        assert got == {"EARLY": 1, "LATE": 1, "NEVER": 0}
        inv = (await s.fetchone("SELECT id FROM invitations WHERE case_no = 'NEVER'"))[0]
        item = "inv:" + inv

        def ack(tx: Tx) -> None:
            tx.uplink.mark_sent("b", "x", [(item, 1, inv, "NEVER", 1)], 5)
            tx.uplink.apply_results("b", [(6, "accepted", item)], [], (1, 0, 0), 6, None)
        await s.db.write(ack)
        rows = await s.fetchall("SELECT case_no, default_status FROM invitations"
                                " WHERE default_status IS NOT NULL")
        assert rows == [("NEVER", "acked")]
        # The case side: offered a rating, whichever came first; a cancelled invitation is no offer.
        await casefeed.report_cases(s.db, s.cfg.hall, [casefeed.CaseReport("SOLO", 1_780_000_000_000)], "t")
        invited = dict(await s.fetchall("SELECT case_no, invited FROM cases"))
        assert invited == {"EARLY": 1, "LATE": 1, "SOLO": 0}
        solo = invitations.InvitationRequest(case_no="SOLO", window_id="A01")
        out = await invitations.create(s.db, solo, "t", rules)
        assert (await s.fetchone("SELECT invited FROM cases WHERE case_no = 'SOLO'")) == (1,)
        await invitations.cancel(s.db, out.invitation.id, "t")
        assert (await s.fetchone("SELECT invited FROM cases WHERE case_no = 'SOLO'")) == (0,)
    finally:
        await s.db.close()
