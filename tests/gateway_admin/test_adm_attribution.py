"""Attribution at press time, one rating per invitation, and the flags (real SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adm_support import Store, flags, open_store

from gateway import attribution, bindings, invitations
from gateway.invitations import InvitationRequest, InvitationRules

RULES = InvitationRules(default_countdown_s=60, grace_s=30)
S = 1000


async def invite(store: Store, window: str, case: str, at_ms: int) -> str:
    out = await invitations.create(
        store.db, InvitationRequest(case_no=case, window_id=window), "test", RULES, at_ms=at_ms
    )
    return out.invitation.id


async def test_a_press_before_a_rebind_that_arrives_after_it_goes_to_the_old_clerk(store: Store) -> None:
    t0 = bindings.now_ms() - 3600 * S
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0)
    inv = await invite(store, "A01", "CASE-1", t0 + 5 * S)
    # Shift change at t0+60s: li takes over dev-1 (forced: the device is bound).
    change = await bindings.pair(store.db, "dev-1", "A01", "li", "t", force=True, at_ms=t0 + 60 * S)
    # CASE-1 was still pending: it cannot outlive zhang's binding.
    assert change.cancelled_invitations == [(inv, "dev-1")]
    # The citizen pressed at t0+20s; the journal delivers it only now, after the rebind.
    early = await store.rec("dev-1", "rated", t0 + 20 * S, "s", inv)
    late_walkup = await store.rec("dev-1", "walkup", t0 + 90 * S, "vs")
    assert (early["staff_account"], early["window_id"]) == ("zhang", "A01")
    assert (late_walkup["staff_account"], late_walkup["window_id"]) == ("li", "A01")
    assert early["binding_id"] != late_walkup["binding_id"]
    assert await store.invitation_status(inv) == ("rated", early["record_id"], "s")
    # Rebinding never moves old ratings: the stored row keeps its clerk.
    await bindings.pair(store.db, "dev-1", "A02", "wang", "t", force=True, at_ms=t0 + 120 * S)
    assert (await store.record(early["record_id"]))["staff_account"] == "zhang"


async def test_rebind_cancels_the_pending_invitation(store: Store) -> None:
    t0 = bindings.now_ms() - 3600 * S
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0)
    inv = await invite(store, "A01", "CASE-9", t0 + S)
    change = await bindings.unpair(store.db, "dev-1", "t", at_ms=t0 + 10 * S)
    assert change.cancelled_invitations == [(inv, "dev-1")]
    assert (await store.invitation_status(inv))[0] == "cancelled"
    # A press made before the unpair, delivered later, still rates it (by press time) ...
    r = await store.rec("dev-1", "rated", t0 + 5 * S, "vs", inv)
    assert flags(r) == set() and r["staff_account"] == "zhang"
    assert (await store.invitation_status(inv))[0] == "rated"


async def test_one_rating_per_invitation(store: Store) -> None:
    t0 = bindings.now_ms() - 3600 * S
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0)
    inv = await invite(store, "A01", "CASE-2", t0 + S)
    first = await store.rec("dev-1", "rated", t0 + 10 * S, "vd", inv)
    second = await store.rec("dev-1", "rated", t0 + 11 * S, "vs", inv)
    cooldown = await store.rec("dev-1", "extra", t0 + 12 * S, "vs", inv)
    assert flags(first) == set()
    assert flags(second) == {"extra"} and flags(cooldown) == {"extra"}
    assert await store.invitation_status(inv) == ("rated", first["record_id"], "vd")
    # Both presses are stored (nothing dropped), credited, but only one is the rating.
    n = await store.fetchone("SELECT COUNT(*) FROM records WHERE invitation_id = ?", (inv,))
    assert n is not None and n[0] == 3
    # The case cannot be invited again once rated (一次一评).
    try:
        await invite(store, "A01", "CASE-2", t0 + 20 * S)
    except bindings.Conflict as e:
        assert e.code == "case_already_rated"
    else:
        raise AssertionError("a rated case was invited again")


async def test_unrated_late_and_expired(store: Store) -> None:
    t0 = bindings.now_ms() - 3600 * S
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0)
    # The countdown ran out on the device: unrated closes the invitation.
    a = await invite(store, "A01", "CASE-A", t0)
    u = await store.rec("dev-1", "unrated", t0 + 60 * S, None, a)
    assert await store.invitation_status(a) == ("unrated", u["record_id"], None)
    # Expired server-side (device offline); a press made in time and delivered later counts,
    # one made after countdown + grace is late.
    b = await invite(store, "A01", "CASE-B", t0 + 100 * S)
    assert await invitations.expire_due(store.db, t0 + 100 * S + 91 * S) == [b]
    assert (await store.invitation_status(b))[0] == "expired"
    late = await store.rec("dev-1", "rated", t0 + 100 * S + 200 * S, "d", b)
    assert flags(late) == {"late"} and (await store.invitation_status(b))[0] == "expired"
    ok = await store.rec("dev-1", "rated", t0 + 100 * S + 50 * S, "s", b)
    assert flags(ok) == set() and await store.invitation_status(b) == ("rated", ok["record_id"], "s")
    # Cancelled by the window system: a press after the cancel is late, never a rating.
    c = await invite(store, "A01", "CASE-C", t0 + 400 * S)
    await invitations.cancel(store.db, c, "t", at_ms=t0 + 410 * S)
    after = await store.rec("dev-1", "rated", t0 + 420 * S, "vs", c)
    assert flags(after) == {"late"} and (await store.invitation_status(c))[0] == "cancelled"


async def test_walkup_unbound_foreign_and_unknown_invitation(store: Store) -> None:
    t0 = bindings.now_ms() - 3600 * S
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0)
    inv = await invite(store, "A01", "CASE-F", t0 + S)
    walk = await store.rec("dev-1", "walkup", t0 + 2 * S, "bs")
    assert flags(walk) == {"no_invitation"} and walk["staff_account"] == "zhang"
    unbound = await store.rec("dev-3", "unpaired", t0 + 3 * S, "vs")
    assert flags(unbound) == {"unpaired", "unbound", "no_invitation"}
    assert unbound["binding_id"] is None and unbound["staff_account"] is None
    foreign = await store.rec("dev-3", "rated", t0 + 4 * S, "vs", inv)
    assert "foreign_invitation" in flags(foreign)
    assert (await store.invitation_status(inv))[0] == "pending"
    unknown = await store.rec("dev-1", "rated", t0 + 5 * S, "vs", "nope")
    assert flags(unknown) == {"no_invitation"}


async def test_after_hours_and_burst(tmp_path: Path) -> None:
    store = await open_store(
        tmp_path,
        hall={
            "timezone": "Asia/Shanghai",
            "opening_hours": ["08:30-17:30"],
            "opening_days": [1, 2, 3, 4, 5, 6, 7],
        },
        attribution={"burst_presses": 3, "burst_window_s": 10},
    )
    try:
        # 2026-11-25 03:00 in Shanghai (19:00 UTC the day before).
        night = 1795633200 * S - 24 * 3600 * S
        await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=night - 3600 * S)
        r = await store.rec("dev-1", "walkup", night, "vs")
        assert flags(r) == {"no_invitation", "after_hours"}
        day = night + 7 * 3600 * S  # 10:00 local
        rows = [await store.rec("dev-1", "walkup", day + i * S, "vs") for i in range(3)]
        assert all("burst" not in flags(x) for x in rows)
        fourth = await store.rec("dev-1", "walkup", day + 3 * S, "vs")
        assert "burst" in flags(fourth)
        # The stored presses of the burst are flagged too; a press long after is not.
        for x in rows:
            assert "burst" in flags(await store.record(x["record_id"]))
        calm = await store.rec("dev-1", "walkup", day + 60 * S, "vs")
        assert "burst" not in flags(calm)
    finally:
        await store.db.close()


async def test_burst_within_one_ingest_batch(store: Store) -> None:
    """The core's ingest attributes a whole batch before inserting it: the press completing a
    burst flags the batch's earlier presses too ("all of them flagged", as across batches)."""
    rules = attribution.AttributionRules(hall=store.cfg.hall, burst_presses=2, burst_window_s=10)
    t0 = bindings.now_ms() - 3600 * S
    rows = []
    def unit(tx: Any) -> None:
        for i in range(3):
            row = {
                "record_id": "dev-2:1:%d" % (i + 1),
                "device_id": "dev-2",
                "kind": "walkup",
                "grade": "vs",
                "invitation_id": None,
                "pressed_at_ms": t0 + i * S,
                "flags": "",
            }
            rows.append(hook.one(tx, row))
    hook = attribution.Attribution(rules)
    await store.db.write(unit)
    assert ["burst" in flags(r) for r in rows] == [True, True, True]


async def test_whole_second_device_time_just_before_the_first_binding(store: Store) -> None:
    """A device stamps presses in whole seconds: a press stamped up to clock_slack_ms before
    the device's first binding began is credited to it, not left unbound."""
    t0 = bindings.now_ms() - 3600 * S + 700
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0)
    r = await store.rec("dev-1", "walkup", t0 - 700, "vs")
    assert r["staff_account"] == "zhang" and "unbound" not in flags(r)
    far = await store.rec("dev-1", "walkup", t0 - 60 * S, "vs")
    assert far["staff_account"] is None and "unbound" in flags(far)
