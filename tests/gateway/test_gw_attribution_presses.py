"""attribute_batch reads each device's stored presses once per batch (StoredPresses) for the
burst check; it must flag exactly what record-by-record attribution flags. Randomized dense
press histories over several batches (so bursts span stored records of earlier batches and
records of the same batch), real SQLite files, compared record by record and in the store."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from harness.store import BACKEND, query

from gateway import attribution
from gateway.broker_accounts import NoBrokerAccounts
from gateway.config import HallConfig, OpeningRange
from gateway.devices import DeviceService
from gateway.store import open_store
from gateway.store.api import Tx
from protocol.ids import record_id

S = 1000
RULES = attribution.AttributionRules(hall=HallConfig(opening_days=(1, 2, 3, 4, 5, 6, 7),
                                                     opening_hours=(OpeningRange(0, 24 * 60 - 1),)),
                                     burst_presses=3, burst_window_s=10)
KINDS = ["walkup", "walkup", "walkup", "unpaired", "extra", "unrated"]


def _batches(seed: int) -> list[list[dict[str, Any]]]:
    rnd = random.Random(seed)
    t0 = 1_700_000_000_000
    seqs: dict[str, int] = {}
    out = []
    for _ in range(6):
        batch = []
        for _ in range(rnd.randint(1, 25)):
            dev = rnd.choice(["dev-1", "dev-2", "dev-3"])
            seqs[dev] = rs = seqs.get(dev, 0) + 1
            # Dense: ~0-3 presses per 10 s per device, so bursts come and go.
            pressed = t0 + rnd.randint(0, 150) * S + rnd.randint(0, 999)
            batch.append({
                "record_id": record_id(dev, 1, rs), "device_id": dev, "rb": 1, "rs": rs,
                "kind": rnd.choice(KINDS), "grade": "s", "invitation_id": None,
                "device_wall_s": pressed // 1000, "uptime_ms": rs, "pressed_at_ms": pressed,
                "time_source": "device", "received_at_ms": t0, "msg_boot": 1, "binding_id": None,
                "window_id": None, "staff_account": None, "flags": "",
            })
        out.append(batch)
    return out


async def _run(url: str, batches: list[list[dict[str, Any]]], batch: bool) -> tuple[list[Any], list[Any]]:
    store = await open_store(url)
    hook = attribution.Attribution(RULES)
    answers = []
    try:
        svc = DeviceService(store, NoBrokerAccounts())
        for dev in ("dev-1", "dev-2", "dev-3"):
            await svc.register(dev, "ab" * 32, "pw")
        for recs in batches:
            def work(tx: Tx, recs: list[dict[str, Any]] = recs) -> list[dict[str, Any]]:
                copies = [dict(r) for r in recs]
                if batch:
                    out = hook.batch(tx, copies)
                else:
                    out = [hook.one(tx, r) for r in copies]
                tx.records.insert_many(out)
                return out
            answers.append([(r["record_id"], r["flags"]) for r in await store.write(work)])
        stored = query(url, "SELECT record_id, flags FROM records ORDER BY record_id")
        return answers, [tuple(r) for r in stored]
    finally:
        await store.close()


@pytest.mark.parametrize("seed", range(12))
async def test_batch_burst_flags_equal_record_by_record(tmp_path: Path, seed: int,
                                                      request: pytest.FixtureRequest) -> None:
    batches = _batches(seed)
    urls = [str(tmp_path / "one.db"), str(tmp_path / "many.db")]
    if BACKEND == "postgresql":
        server = request.getfixturevalue("pg_server")
        urls = [server.fresh_database(), server.fresh_database()]
    one = await _run(urls[0], batches, batch=False)
    many = await _run(urls[1], batches, batch=True)
    assert many == one
    if seed == 0:
        # The corpus does exercise bursts across stored records (else this test proves little).
        assert sum("burst" in f for _, f in one[1]) >= 5


def test_stored_presses_declines_ranges_outside_its_batch() -> None:
    presses = attribution.StoredPresses({"dev-1": (100_000, 200_000)}, 10_000)
    tx: Any = None   # never asked: the ranges are declined before any read
    assert presses.around(tx, "dev-2", 95_000, 105_000, "x") is None     # another device
    assert presses.around(tx, "dev-1", 80_000, 100_000, "x") is None     # before the span
    assert presses.around(tx, "dev-1", 205_000, 215_000, "x") is None    # after the span


async def test_presses_of_a_rolled_back_batch_do_not_count_towards_a_later_burst(store_url: str) -> None:
    """A batch whose transaction failed was never stored (the devices re-send it): its
    presses must not make a later press look like a burst."""
    db = await open_store(store_url)
    try:
        await DeviceService(db, NoBrokerAccounts()).register("dev-1", "ab" * 32, "pw")
        t0 = 1_700_000_000_000
        rows = _batches(0)[0][:1]
        lost = [dict(rows[0], record_id=record_id("dev-1", 1, rs), device_id="dev-1", rs=rs, kind="walkup",
                     pressed_at_ms=t0 + rs * S) for rs in range(1, 4)]

        def failing(tx: Tx) -> None:
            attribution.attribute_batch(tx, [dict(r) for r in lost], RULES)
            raise RuntimeError("disk full")

        with pytest.raises(RuntimeError):
            await db.write(failing)
        later = dict(lost[0], record_id=record_id("dev-1", 2, 1), rb=2, rs=1, pressed_at_ms=t0 + 4 * S)

        def work(tx: Tx) -> list[dict[str, Any]]:
            return attribution.attribute_batch(tx, [dict(later)], RULES)

        (out,) = await db.write(work)
        assert "burst" not in out["flags"].split(","), out
    finally:
        await db.close()
