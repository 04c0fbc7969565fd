"""Anchors.save_sync / take_dirty + write_rows_sync (the forms ingest's batch transaction uses):
same rows as the asyncio save, anchors in the store only move earlier, a failed write is
retried with a later save. Real SQLite file with the gateway's migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway import timesync
from gateway.config import parse_config
from gateway.store.db import open_db
from gateway.store.devices import register_device


async def _store(path: Path) -> None:
    db = await open_db(path)
    try:
        await register_device(db, parse_config({"store": {"path": str(path)}}, path.parent),
                              "dev-a", "ab" * 32, "pw")
    finally:
        await db.close()


def _anchors(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
    return {(d, b): a for d, b, a in conn.execute("SELECT device_id, boot, anchor_ms FROM device_boots")}


async def test_save_sync_writes_improved_anchors_once(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    await _store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    a = timesync.Anchors()
    a.observe("dev-a", 1, 1000, 11_000)
    a.observe("dev-a", 2, 1000, 51_000)
    assert a.save_sync(conn, 99) == 2
    assert a.save_sync(conn, 99) == 0  # nothing improved since
    assert _anchors(conn) == {("dev-a", 1): 10_000, ("dev-a", 2): 50_000}
    # Another process (an older run) may hold a later anchor in memory: the store keeps the minimum.
    b = timesync.Anchors()
    b.observe("dev-a", 1, 1000, 20_000)
    b.save_sync(conn, 100)
    assert _anchors(conn)[("dev-a", 1)] == 10_000


async def test_take_dirty_then_failed_write_is_saved_later(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    await _store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    a = timesync.Anchors()
    a.observe("dev-a", 3, 500, 10_500)
    rows = a.take_dirty(7)
    assert rows == [("dev-a", 3, 10_000, 7)]
    assert a.take_dirty(7) == []
    a.mark_all_dirty([(r[0], r[1]) for r in rows])  # the batch transaction failed
    assert a.save_sync(conn, 8) == 1
    assert _anchors(conn) == {("dev-a", 3): 10_000}
    timesync.write_rows_sync(conn, [])  # nothing to write: no statement
