"""The QR repository (tx.qr, migration 0400) on both backends (HCP_STORE=postgresql), and two
gateway processes' worth of stores racing for one case."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from adm_support import Store
from qr_support import S, bind_qr_only, qr_hall

from gateway.qr.points import point_id
from gateway.qr.service import QrService
from gateway.store import open_store
from gateway.store.errors import IntegrityError
from gateway.store.rows import NewInvitation, QrSubmission


async def test_points_are_devices_that_never_connect(store: Store) -> None:
    pid = point_id("A01")
    assert await store.db.write(lambda tx: tx.qr.add_point(pid, "A01", "00" * 32, 1000)) is True
    assert await store.db.write(lambda tx: tx.qr.add_point("qr-other", "A01", "00" * 32, 1000)) is False
    assert await store.db.read(
        lambda tx: (tx.qr.point_of_window("A01"), tx.qr.is_point(pid), tx.qr.is_point("dev-1"))
    ) == (pid, True, False)
    enabled = await store.db.read(lambda tx: [d.device_id for d in tx.devices.all(enabled_only=True)])
    assert pid not in enabled  # the MQTT registry never loads it
    with pytest.raises(IntegrityError):  # a real device's id is not a point's
        await store.db.write(lambda tx: tx.qr.add_point("dev-1", "A02", "00" * 32, 1000))
    seqs = [await store.db.write(lambda tx: tx.qr.next_seq(pid)) for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert await store.db.read(lambda tx: tx.qr.points()) == [
        {"device_id": pid, "window_id": "A01", "records": 3, "created_ms": 1000}
    ]


async def test_records_invitations_and_the_receipt_rule(store: Store) -> None:
    pid = point_id("A01")
    await store.db.write(lambda tx: tx.qr.add_point(pid, "A01", "00" * 32, 1000))
    b = await store.db.write(lambda tx: tx.bindings.open(pid, "A01", "zhang", 1000, "test"))

    def inv(i: str, receipt: bool, device: str = pid) -> NewInvitation:
        return NewInvitation(
            i, device, "A01", "zhang", b, "case-" + i, "", "", "", 1, 60, 2000, 9000, "t", 1, receipt=receipt
        )

    # Receipts: many open at one point; shown invitations: one per device, as before.
    await store.db.write(lambda tx: [tx.invitations.insert(inv(i, True)) for i in ("r1", "r2")])
    await store.db.write(lambda tx: tx.invitations.insert(inv("s1", False)))
    with pytest.raises(IntegrityError):
        await store.db.write(lambda tx: tx.invitations.insert(inv("s2", False)))
    assert await store.db.read(lambda tx: tx.invitations.pending_ids(pid)) == ["s1"]
    assert (await store.db.read(lambda tx: tx.invitations.get("r1"))).receipt is True  # type: ignore[union-attr]
    row = {
        "record_id": pid + ":1:1",
        "device_id": pid,
        "rb": 1,
        "rs": 1,
        "kind": "rated",
        "grade": "s",
        "invitation_id": "r1",
        "device_wall_s": 3,
        "uptime_ms": 0,
        "pressed_at_ms": 3000,
        "time_source": "arrival",
        "received_at_ms": 3000,
        "msg_boot": 1,
        "binding_id": b,
        "window_id": "A01",
        "staff_account": "zhang",
        "flags": "",
        "channel": "qr",
    }
    await store.db.write(lambda tx: tx.qr.insert_record(row))
    with pytest.raises(IntegrityError):
        await store.db.write(lambda tx: tx.qr.insert_record(row))
    with pytest.raises(ValueError):
        await store.db.write(lambda tx: tx.qr.insert_record({**row, "secret": 1}))
    assert await store.db.write(lambda tx: tx.qr.claim_invitation("r1", row["record_id"], "s", 3000)) is True
    assert await store.db.write(lambda tx: tx.qr.claim_invitation("r1", "x:1:2", "vs", 3001)) is False
    assert await store.invitation_status("r1") == ("rated", row["record_id"], "s")
    assert await store.db.read(lambda tx: (tx.qr.rated_via(row["record_id"]), tx.qr.rated_via("nope"))) == (
        "qr",
        None,
    )
    assert await store.db.read(lambda tx: tx.qr.ratings_by_channel(0, 10_000)) == [
        ("A01", "zhang", "qr", 1, 1)
    ]
    # Device records keep the channel they always had.
    rec = await store.rec("dev-1", "walkup", 4000, "vs")
    assert (await store.record(rec["record_id"]))["channel"] == "device"
    # Submissions: keyed by the form's one-time id.
    sub = QrSubmission("ab" * 12, "case", "r1", row["record_id"], "rated", "s", "", "", 3000)
    await store.db.write(lambda tx: tx.qr.add_submission(sub))
    with pytest.raises(IntegrityError):
        await store.db.write(lambda tx: tx.qr.add_submission(sub))
    assert await store.db.read(
        lambda tx: (tx.qr.submission(sub.nonce), tx.qr.submissions_of("case", "r1"))
    ) == (sub, [sub])


async def test_plates(store: Store) -> None:
    b = await store.db.write(lambda tx: tx.bindings.open("dev-1", "A01", "zhang", 1000, "test"))
    await store.db.write(lambda tx: tx.qr.add_plate("plate-aaaa1", 1, "A01", "zhang", b, 2000, "cli:x"))
    await store.db.write(lambda tx: tx.qr.add_plate("plate-bbbb2", 1, "A01", "zhang", b, 3000, "cli:x"))
    got = await store.db.read(lambda tx: tx.qr.active_plate("A01", "zhang"))
    assert got is not None and got.id == "plate-bbbb2" and not got.revoked
    assert await store.db.write(lambda tx: tx.qr.revoke_plate("plate-bbbb2", 4000, "cli:y", "leaked")) is True
    assert await store.db.write(lambda tx: tx.qr.revoke_plate("plate-bbbb2", 5000, "cli:y", "again")) is False
    p = await store.db.read(lambda tx: tx.qr.get_plate("plate-bbbb2"))
    assert p is not None and (p.revoked_ms, p.revoked_by, p.revoke_reason) == (4000, "cli:y", "leaked")
    assert [x.id for x in await store.db.read(lambda tx: tx.qr.plates())] == ["plate-aaaa1"]
    assert [x.id for x in await store.db.read(lambda tx: tx.qr.plates(True, "A01"))] == [
        "plate-aaaa1",
        "plate-bbbb2",
    ]
    assert await store.db.read(lambda tx: tx.qr.plate_ratings([])) == {}
    with pytest.raises(IntegrityError):  # a plate names a real binding
        await store.db.write(lambda tx: tx.qr.add_plate("plate-cccc3", 1, "A01", "zhang", 999, 1, "x"))


async def test_two_gateways_race_for_one_case(store: Store, tmp_path: Path) -> None:
    """Two instances (two stores on one database) take a phone's rating of the same receipt at the
    same moment: one is the case's rating, the other a flagged extra, never two ratings."""
    h = await qr_hall(store, tmp_path)
    await bind_qr_only(h, "A02", "li")
    inv = (await h.invite("A02", receipt=True)).invitation
    token = h.case_token(inv.id)
    other_db = await open_store(store.url)
    try:
        other = QrService(
            other_db,
            h.svc.settings,
            h.svc.ring,
            h.svc.complaints,
            h.svc.rules,
            h.svc.attribution,
            h.svc.calendar,
            h.svc.hall,
            None,
            h.clock,
        )
        forms = [(await h.svc.view_case(token)).form for _ in range(2)]
        h.clock.t += 5 * S
        a, b = await asyncio.gather(
            h.svc.submit_case(token, forms[0], "first", "vs"),
            other.submit_case(token, forms[1], "first", "s"),
            return_exceptions=True,
        )
    finally:
        await other_db.close()
    outcomes = sorted(
        x.submission.outcome if not isinstance(x, BaseException) else getattr(x, "code", repr(x))
        for x in (a, b)
    )
    # The loser either saw the rating (extra) or, having read the link's own first rating, "used".
    assert outcomes in (["extra", "rated"], ["rated", "used"]), outcomes
    rated = await store.fetchall(
        "SELECT record_id FROM invitations WHERE case_no = ? AND status = 'rated'", (inv.case_no,)
    )
    assert len(rated) == 1
