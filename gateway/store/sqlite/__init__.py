"""The embedded backend: one SQLite file (WAL, synchronous=FULL), plain sqlite3 in the
store's own writer and reader threads.

WAL + synchronous=FULL: a COMMIT returns only after the WAL is fsynced, which is what
"durable before ack" needs; one fsync per transaction, so ingest batches many records into
one (group commit). Readers never block the writer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store.base import SqlStore
from gateway.store.migrate import migrate
from gateway.store.sql.conn import Conn
from gateway.store.worker import Worker

BUSY_TIMEOUT_MS = 10000


def _connect(path: Path, writer: bool = True) -> Conn:
    raw = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                          check_same_thread=False)
    try:
        raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if writer:
            # WAL is a property of the file: the writer sets it once (switching needs an
            # exclusive lock that the busy timeout does not wait for).
            raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = FULL")
        raw.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        raw.close()
        raise
    return Conn(raw, "sqlite", (sqlite3.IntegrityError,))


def _close(conn: Conn) -> None:
    conn.raw.close()


class SqliteStore(SqlStore):
    backend = "sqlite"
    begin_write = "BEGIN IMMEDIATE"

    def __init__(self, path: Path, writer: Worker[Conn]) -> None:
        self.path = path
        super().__init__(writer, Worker("store-reader", lambda: _connect(path, writer=False), _close),
                         "sqlite:%s" % path)

    def _rollback(self, conn: Conn) -> None:
        if conn.raw.in_transaction:
            conn.raw.execute("ROLLBACK")


async def open_sqlite(path: Path, run_migrations: bool = True) -> SqliteStore:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: Worker[Conn] = Worker("store-writer", lambda: _connect(path), _close)
    try:
        await writer.started()
    except BaseException:
        await writer.stop()
        raise
    store = SqliteStore(path, writer)
    try:
        await store._reader.started()
        if run_migrations:
            await store._writer.call(lambda c: migrate(c, c.raw.executescript))
    except BaseException:
        await store.close()
        raise
    return store
