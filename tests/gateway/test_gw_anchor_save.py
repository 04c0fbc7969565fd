"""Anchors.save / take_dirty (ingest writes the taken rows in its batch's unit of work):
anchors in the store only move earlier, a failed write is retried with a later save. Real
store (SQLite file or PostgreSQL) with the gateway's migrations."""

from __future__ import annotations

from harness.store import query

from gateway import timesync
from gateway.broker_accounts import NoBrokerAccounts
from gateway.devices import DeviceService
from gateway.store import Store, open_store


async def _store(url: str) -> Store:
    store = await open_store(url)
    await DeviceService(store, NoBrokerAccounts()).register("dev-a", "ab" * 32, "pw")
    return store


def _anchors(url: str) -> dict[tuple[str, int], int]:
    return {(d, b): a for d, b, a in query(url, "SELECT device_id, boot, anchor_ms FROM device_boots")}


async def test_save_writes_improved_anchors_once(store_url: str) -> None:
    store = await _store(store_url)
    try:
        a = timesync.Anchors()
        a.observe("dev-a", 1, 1000, 11_000)
        a.observe("dev-a", 2, 1000, 51_000)
        assert await a.save(store, 99) == 2
        assert await a.save(store, 99) == 0  # nothing improved since
        assert _anchors(store_url) == {("dev-a", 1): 10_000, ("dev-a", 2): 50_000}
        # Another process (an older run) may hold a later anchor in memory: the store keeps the minimum.
        b = timesync.Anchors()
        b.observe("dev-a", 1, 1000, 20_000)
        await b.save(store, 100)
        assert _anchors(store_url)[("dev-a", 1)] == 10_000
    finally:
        await store.close()


async def test_take_dirty_then_failed_write_is_saved_later(store_url: str) -> None:
    store = await _store(store_url)
    try:
        a = timesync.Anchors()
        a.observe("dev-a", 3, 500, 10_500)
        rows = a.take_dirty(7)
        assert rows == [("dev-a", 3, 10_000, 7)]
        assert a.take_dirty(7) == []
        a.mark_all_dirty([(r[0], r[1]) for r in rows])  # the batch transaction failed
        assert await a.save(store, 8) == 1
        assert _anchors(store_url) == {("dev-a", 3): 10_000}
        await store.write(lambda tx: tx.anchors.save([]))  # nothing to write: no statement
    finally:
        await store.close()
