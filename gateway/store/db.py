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
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import aiosqlite

from gateway.store.migrate import migrate

BUSY_TIMEOUT_MS = 10000

T = TypeVar("T")


async def run_in_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run fn(sqlite3 connection) in the aiosqlite connection's own thread: one thread hop
    for any number of statements, where each `await conn.execute` is a hop of its own.

    Uses aiosqlite's `_execute` and `_conn` (stable across 0.20-0.22, the range pyproject
    allows): the call is queued behind the connection's other work like any statement.
    """
    return await conn._execute(lambda: fn(conn._conn))  # type: ignore[no-untyped-call,no-any-return]



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

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """BEGIN IMMEDIATE; fn(conn); COMMIT -- all in one hop to the connection's thread
        (ROLLBACK if fn raises), one writer at a time like transaction(). For hot paths
        (ingest batches) that run many statements per transaction."""
        def whole(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (I/O error) can leave the transaction open: close it.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return out

        async with self._write_lock:
            return await run_in_thread(self.conn, whole)

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
