"""The batch form of attribution (what the core's ingest runs in the database thread) gives
exactly what record-by-record attribution gives: bindings read once per batch must not change
who is credited, across rebinds, slack at a first binding, invitations and bursts (real SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adm_support import Store, open_store

from gateway import attribution, bindings, invitations
from gateway.invitations import InvitationRequest, InvitationRules
from protocol.ids import record_id

S = 1000
RULES = InvitationRules(default_countdown_s=60, grace_s=30)


async def _history(store: Store, t0: int) -> str:
    """dev-1: zhang at A01 from t0+700 ms, li from t0+60 s (forced rebind), unbound from
    t0+120 s, wang at A02 from t0+180 s; an invitation for A01 at t0+5 s."""
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0 + 700)
    inv = await invitations.create(store.db, InvitationRequest(case_no="CASE-B", window_id="A01"), "t",
                                   RULES, at_ms=t0 + 5 * S)
    await bindings.pair(store.db, "dev-1", "A01", "li", "t", force=True, at_ms=t0 + 60 * S)
    await bindings.unpair(store.db, "dev-1", "t", at_ms=t0 + 120 * S)
    await bindings.pair(store.db, "dev-1", "A02", "wang", "t", at_ms=t0 + 180 * S)
    return inv.invitation.id


def _rows(t0: int, inv: str) -> list[dict[str, Any]]:
    # (kind, pressed offset ms, invitation): before the first binding (inside and outside the
    # slack), each binding period, the unbound gap, the invitation rated then an extra, and a
    # burst of presses one second apart.
    plan = [("walkup", 0, None), ("walkup", -60 * S, None), ("rated", 20 * S, inv),
            ("extra", 21 * S, inv), ("walkup", 90 * S, None), ("walkup", 150 * S, None),
            ("walkup", 200 * S, None)] + [("walkup", 300 * S + i * S, None) for i in range(7)]
    out = []
    for rs, (kind, off, i) in enumerate(plan, start=1):
        out.append({
            "record_id": record_id("dev-1", 1, rs), "device_id": "dev-1", "rb": 1, "rs": rs,
            "kind": kind, "grade": "s", "invitation_id": i, "device_wall_s": (t0 + off) // 1000,
            "uptime_ms": rs * S, "pressed_at_ms": t0 + off, "time_source": "device",
            "received_at_ms": t0 + 400 * S, "msg_boot": 1, "binding_id": None, "window_id": None,
            "staff_account": None, "flags": "",
        })
    return out


async def _attribute_and_store(store: Store, rows: list[dict[str, Any]], batch: bool) -> list[dict[str, Any]]:
    rules = attribution.AttributionRules(hall=store.cfg.hall, burst_presses=5, burst_window_s=10)

    hook = attribution.Attribution(rules)   # record by record: as ingest's fallback does

    def work(conn: Any) -> list[dict[str, Any]]:
        if batch:
            out = attribution.attribute_batch(conn, [dict(r) for r in rows], rules)
        else:
            out = [hook.one(conn, dict(r)) for r in rows]
        conn.records.insert_many(out)
        return out

    return await store.db.write(work)


async def test_batch_attribution_equals_record_by_record(tmp_path: Path) -> None:
    t0 = bindings.now_ms() - 7200 * S
    results = []
    for name, batch in (("one", False), ("batch", True)):
        store = await open_store(tmp_path / name, hall={"opening_days": [1, 2, 3, 4, 5, 6, 7],
                                                        "opening_hours": ["00:00-23:59"]})
        try:
            inv = await _history(store, t0)
            attributed = await _attribute_and_store(store, _rows(t0, inv), batch)
            stored = [await store.record(r["record_id"]) for r in attributed]
            status = await store.invitation_status(inv)
            results.append((attributed, stored, status))
        finally:
            await store.db.close()
    (one, one_stored, one_inv), (many, many_stored, many_inv) = results
    fields = ("record_id", "binding_id", "window_id", "staff_account", "flags")
    assert [[r[f] for f in fields if f != "binding_id"] for r in many] == \
        [[r[f] for f in fields if f != "binding_id"] for r in one]
    assert [[r[f] for f in fields if f != "binding_id"] for r in many_stored if r] == \
        [[r[f] for f in fields if f != "binding_id"] for r in one_stored if r]
    assert many_inv[0] == one_inv[0] == "rated"
    # The expected credits, spelled out (so the two forms cannot agree on something wrong).
    who = [r["staff_account"] for r in many]
    assert who[:7] == ["zhang", None, "zhang", "zhang", "li", None, "wang"]
    assert "extra" in many[3]["flags"] and "unbound" in many[5]["flags"]
    # Within one batch the press that completes a burst also flags the batch's earlier presses
    # of it (not stored yet, flagged in their records): all seven, as across batches.
    assert ["burst" in r["flags"] for r in many[7:]] == [True] * 7
    assert not any("burst" in r["flags"] for r in many[:7])


async def test_attribution_runs_inside_the_callers_unit_of_work(store: Store) -> None:
    """attribute_sync runs inside the caller's unit of work (its transaction, the store's thread)."""
    t0 = bindings.now_ms() - 3600 * S
    await bindings.pair(store.db, "dev-2", "A02", "li", "t", at_ms=t0)
    row = {"record_id": "dev-2:1:1", "device_id": "dev-2", "kind": "walkup", "grade": "vs",
           "invitation_id": None, "pressed_at_ms": t0 + S, "flags": ""}
    rules = attribution.AttributionRules.from_config(store.cfg)
    out = await store.db.write(lambda tx: attribution.attribute_sync(tx, row, rules))
    assert out["staff_account"] == "li"
