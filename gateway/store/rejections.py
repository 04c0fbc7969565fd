"""Persistent per-reason rejection counters (table `rejections`)."""

from __future__ import annotations

from collections.abc import Mapping

import aiosqlite


async def add_counts(conn: aiosqlite.Connection, counts: Mapping[str, int], at_ms: int) -> None:
    """Add counts to the stored totals (one upsert per reason)."""
    await conn.executemany(
        "INSERT INTO rejections(reason, count, last_at) VALUES (?, ?, ?) "
        "ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count, last_at = excluded.last_at",
        [(reason, n, at_ms) for reason, n in counts.items() if n],
    )


async def totals(conn: aiosqlite.Connection) -> dict[str, int]:
    async with conn.execute("SELECT reason, count FROM rejections") as cur:
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}
