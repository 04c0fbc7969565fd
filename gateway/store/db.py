"""Opening the gateway's SQLite database: pragmas for durability, migrations at start.

WAL + synchronous=FULL: a COMMIT returns only after the WAL is fsynced, which is what
"durable before ack" needs. One fsync per transaction, so ingest batches many records
into one transaction (group commit) instead of paying an fsync per record.

aiosqlite runs one thread per connection and executes its calls in order, but coroutines
sharing a connection would interleave statements inside each other's transactions;
`Database.transaction()` serialises writers of one connection with an asyncio lock.
A subsystem that wants independence may open its own Database on the same file
(WAL: readers never block the writer; writers wait up to busy_timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from gateway.store.migrate import migrate

BUSY_TIMEOUT_MS = 10000


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), one writer at a time."""
        async with self._write_lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")

    async def fetchall(self, sql: str, params: tuple[object, ...] = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: tuple[object, ...] = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def close(self) -> None:
        await self.conn.close()


async def open_db(path: str | Path, run_migrations: bool = True) -> Database:
    """Open (creating if needed) the database at path, set pragmas, apply migrations."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; we issue BEGIN/COMMIT ourselves.
    conn = await aiosqlite.connect(p, isolation_level=None)
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        if run_migrations:
            await migrate(conn)
    except BaseException:
        await conn.close()
        raise
    return Database(conn, p)
