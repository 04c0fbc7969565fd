"""The complaints repository's contract (gateway/store/sql/complaints.py), the same on SQLite
and PostgreSQL (the store_url fixture): idempotent opening, optimistic updates, notices once,
exclusions once, corrections only for ratings the platform holds."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.store import open_store
from gateway.store.api import Tx
from gateway.store.rows import NewComplaint

NEW = NewComplaint(
    record_id="dev-1:1:1",
    channel="device",
    grade="vd",
    assess_number=1,
    invitation_id="inv-1",
    case_no="C-1",
    task_code="T1",
    task_name="换领",
    rated_ms=1000,
    opened_ms=2000,
    hall_id="hall-1",
    hall_name="",
    hall_tz="Asia/Shanghai",
    dept_code="11370300MB0000000H",
    dept_name="",
    window_id="A01",
    window_name="综合窗口",
    staff_account="zhang",
    staff_name="张三",
    notified_ms=2000,
    contact_due_ms=9000,
    rectify_due_ms=19000,
    appeal_due_ms=None,
    calendar_error="no national holiday arrangement for 2027",
)


async def test_the_complaints_repository(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        cid = await store.write(lambda tx: tx.complaints.open(NEW))
        assert cid is not None
        assert await store.write(lambda tx: tx.complaints.open(NEW)) is None  # one per rating
        c = await store.read(lambda tx: tx.complaints.get(cid))
        assert c is not None
        assert (c.state, c.verdict, c.appeal_state, c.version, c.complex, c.tags) == (
            "opened",
            "pending",
            "none",
            1,
            False,
            "",
        )
        assert (c.appeal_due_ms, c.calendar_error, c.staff_name) == (None, NEW.calendar_error, "张三")
        assert (await store.read(lambda tx: tx.complaints.by_record("dev-1:1:1"))) == c

        # Optimistic: an update against a stale version changes nothing.
        assert await store.write(
            lambda tx: tx.complaints.update(cid, 1, {"state": "contacted", "contacted_ms": 3000}, 3000)
        )
        assert not await store.write(lambda tx: tx.complaints.update(cid, 1, {"state": "closed"}, 3100))
        c = await store.read(lambda tx: tx.complaints.get(cid))
        assert c is not None and (c.state, c.version, c.updated_ms) == ("contacted", 2, 3000)
        with pytest.raises(ValueError, match="not changeable"):
            await store.write(lambda tx: tx.complaints.update(cid, 2, {"record_id": "x"}, 1))
        assert await store.write(lambda tx: tx.complaints.update(cid, 2, {"complex": True}, 3200))
        c2 = await store.read(lambda tx: tx.complaints.get(cid))
        assert c2 is not None and c2.complex is True

        def events(tx: Tx) -> None:
            tx.complaints.add_event(cid, 2000, "gateway", "open", None, "opened", "", {"grade": "vd"})
            tx.complaints.add_event(cid, 3000, "cli:li", "contact", "opened", "contacted", "电话", {})

        await store.write(events)
        ev = await store.read(lambda tx: tx.complaints.events(cid))
        assert [(e["action"], e["actor"], e["note"], e["detail"]) for e in ev] == [
            ("open", "gateway", "", {"grade": "vd"}),
            ("contact", "cli:li", "电话", {}),
        ]

        assert [x.id for x in await store.read(lambda tx: tx.complaints.unannounced())] == [cid]
        assert await store.write(lambda tx: tx.complaints.note_notice(cid, "opened", 4000))
        assert not await store.write(lambda tx: tx.complaints.note_notice(cid, "opened", 4001))
        assert await store.read(lambda tx: tx.complaints.unannounced()) == []
        assert await store.read(lambda tx: tx.complaints.notices([cid])) == {cid: {"opened"}}

        other = dataclasses.replace(NEW, record_id="dev-1:1:2", case_no="C-2")
        cid2 = await store.write(lambda tx: tx.complaints.open(other))
        rows, total = await store.read(lambda tx: tx.complaints.find(["contacted"], limit=10))
        assert total == 1 and [r.id for r in rows] == [cid]
        rows, total = await store.read(lambda tx: tx.complaints.find(open_only=True, limit=1))
        assert total == 2 and [r.id for r in rows] == [cid2]  # newest first, cut to the limit

        assert await store.write(
            lambda tx: tx.complaints.exclude("dev-1:1:2", cid2, "malicious", "x", "cli:w", 5)
        )
        assert not await store.write(
            lambda tx: tx.complaints.exclude("dev-1:1:2", cid2, "malicious", "y", "cli:w", 6)
        )
        ex = await store.read(lambda tx: tx.complaints.exclusion("dev-1:1:2"))
        assert ex is not None and (ex["reason"], ex["note"], ex["actor"]) == ("malicious", "x", "cli:w")

        # A correction waits until the platform holds its rating.
        kid = await store.write(
            lambda tx: tx.complaints.add_correction(
                "dev-1:1:2", cid2, "exclude", {"reason": "malicious"}, "pending", 7
            )
        )
        assert await store.read(lambda tx: tx.complaints.corrections_ready(10)) == []
        await store.write(lambda tx: tx.uplink.mark_sent("b1", "x", [("dev-1:1:2", 0, None, "C-2", 1)], 8))
        assert await store.read(lambda tx: tx.complaints.corrections_ready(10)) == []  # sent, not acked
        await store.write(
            lambda tx: tx.uplink.apply_results("b1", [(9, "accepted", "dev-1:1:2")], [], (1, 0, 0), 9, None)
        )
        ready = await store.read(lambda tx: tx.complaints.corrections_ready(10))
        assert [(k.id, k.action, k.payload) for k in ready] == [(kid, "exclude", {"reason": "malicious"})]
        assert await store.read(lambda tx: tx.uplink.first_upload_of_case("C-2")) == "dev-1:1:2"
        await store.write(lambda tx: tx.complaints.set_correction([kid], "sent", 10))
        await store.write(lambda tx: tx.complaints.set_correction([kid], "acked", 11))
        k = await store.read(lambda tx: tx.complaints.get_correction(kid))
        assert k is not None and (k.status, k.attempts, k.sent_ms, k.done_ms) == ("acked", 1, 10, 11)
        assert await store.read(lambda tx: tx.complaints.corrections_ready(10)) == []
    finally:
        await store.close()
