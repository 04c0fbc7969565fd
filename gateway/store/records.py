"""The records table: idempotent inserts keyed by record id, and simple reads.

A record id is "<device>:<rb>:<rs>" everywhere; INSERT OR IGNORE on that primary key makes
a re-sent record a no-op, so redelivery can never double a rating.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

# Columns ingest writes, in order. binding_id/window_id/staff_account/flags come from
# gateway.attribution when it exists (NULL / '' otherwise).
COLUMNS = (
    "record_id", "device_id", "rb", "rs", "kind", "grade", "invitation_id",
    "device_wall_s", "uptime_ms", "pressed_at_ms", "time_source", "received_at_ms",
    "msg_boot", "binding_id", "window_id", "staff_account", "flags",
)
_INSERT = "INSERT OR IGNORE INTO records (%s) VALUES (%s)" % (
    ", ".join(COLUMNS), ", ".join("?" for _ in COLUMNS))

# SQLite's default limit on host parameters is 32766 (3.32+); stay well below it.
_IN_CHUNK = 500


def _in_sql(n: int) -> str:
    return "SELECT record_id FROM records WHERE record_id IN (%s)" % ",".join("?" * n)


def _params(rows: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in COLUMNS) for r in rows]


async def existing_ids(conn: aiosqlite.Connection, ids: Sequence[str]) -> set[str]:
    """Which of these record ids are already stored."""
    found: set[str] = set()
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i:i + _IN_CHUNK]
        async with conn.execute(_in_sql(len(chunk)), tuple(chunk)) as cur:
            found.update(r[0] for r in await cur.fetchall())
    return found


async def insert_records(conn: aiosqlite.Connection, rows: Iterable[dict[str, Any]]) -> None:
    """INSERT OR IGNORE each row (a dict with every name in COLUMNS)."""
    await conn.executemany(_INSERT, _params(rows))


# Synchronous forms, for code that runs inside the connection's thread (Database.write).

def existing_ids_sync(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), _IN_CHUNK):
        chunk = ids[i:i + _IN_CHUNK]
        found.update(r[0] for r in conn.execute(_in_sql(len(chunk)), tuple(chunk)))
    return found


def insert_records_sync(conn: sqlite3.Connection, rows: Iterable[dict[str, Any]]) -> None:
    conn.executemany(_INSERT, _params(rows))


async def get_record(conn: aiosqlite.Connection, record_id: str) -> dict[str, Any] | None:
    async with conn.execute("SELECT * FROM records WHERE record_id = ?", (record_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else {k: row[k] for k in row.keys()}


async def count_records(conn: aiosqlite.Connection, device_id: str | None = None) -> int:
    sql = "SELECT count(*) FROM records"
    params: tuple[str, ...] = ()
    if device_id is not None:
        sql, params = sql + " WHERE device_id = ?", (device_id,)
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0
