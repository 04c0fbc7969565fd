"""The embedded backend: one SQLite file (WAL, synchronous=FULL), plain sqlite3 in the
store's own writer and reader threads.

WAL + synchronous=FULL: a COMMIT returns only after the WAL is fsynced, which is what
"durable before ack" needs; one fsync per transaction, so ingest batches many records into
one (group commit). Readers never block the writer.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from gateway.store.base import SqlStore
from gateway.store.errors import StoreUnusable
from gateway.store.migrate import check_schema, migrate
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


_HEADER = b"SQLite format 3\x00"


def check_file(path: Path, create: bool) -> bool:
    """Refuse, with one line, a store file that is not ours or cannot be used; True when the
    store is new (only allowed with create, i.e. `hcp-gateway init`)."""
    if path.is_dir():
        raise StoreUnusable(f"store {path} is a directory, not a SQLite file")
    if not path.exists():
        if not create:
            raise StoreUnusable(f"store {path} does not exist (run `hcp-gateway init` to create it)")
        if not os.access(path.parent if path.parent.exists() else path.parent.parent, os.W_OK):
            raise StoreUnusable(f"store {path} cannot be created: {path.parent} is not writable")
        return True
    try:
        with path.open("rb") as f:
            head = f.read(len(_HEADER))
    except OSError as e:
        raise StoreUnusable(f"store {path} cannot be read: {e.strerror}") from None
    if not head:
        # An empty file is never a fresh store: every key and all history would be gone.
        raise StoreUnusable(f"store {path} is an empty file: not a gateway store (restore it from a "
                            "backup; `hcp-gateway init` creates a new store only where there is no file)")
    if head != _HEADER:
        raise StoreUnusable(f"store {path} is not a SQLite database (bad header)")
    # By the mode bits and the mount flag, not os.access: root may write anything, yet a file
    # someone made read-only, or a disk remounted read-only after errors, is a fault to report.
    if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
        raise StoreUnusable(f"store {path} is on a read-only file system: the gateway must write it")
    if not path.stat().st_mode & 0o200 or not path.parent.stat().st_mode & 0o200:
        raise StoreUnusable(f"store {path} is read-only (the file or its directory): "
                            "the gateway must write it")
    return False


def _quick_check(conn: Conn, path: Path) -> None:
    try:
        rows = conn.rows("PRAGMA quick_check")
    except sqlite3.DatabaseError as e:
        raise StoreUnusable(f"store {path} is damaged: {e}") from None
    if [r[0] for r in rows] != ["ok"]:
        raise StoreUnusable(f"store {path} is damaged: quick_check: {rows[0][0]}")


async def open_sqlite(path: Path, run_migrations: bool = True, create: bool = True) -> SqliteStore:
    new = check_file(path, create)
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The store holds device secrets: created 0600 (SQLite gives -wal/-shm the same mode).
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    writer: Worker[Conn] = Worker("store-writer", lambda: _connect(path), _close)
    try:
        await writer.started()
    except sqlite3.DatabaseError as e:
        await writer.stop()
        raise StoreUnusable(f"store {path} is damaged: {e}") from None
    except BaseException:
        await writer.stop()
        raise
    store = SqliteStore(path, writer)
    try:
        await store._reader.started()
        if not new:
            await store._writer.call(lambda c: _quick_check(c, path))
            await store._writer.call(lambda c: check_schema(c, str(path), fresh_ok=False))
        if run_migrations:
            await store._writer.call(lambda c: migrate(c, c.raw.executescript))
            await store._writer.call(lambda c: check_schema(c, str(path), fresh_ok=False))
    except sqlite3.DatabaseError as e:
        await store.close()
        raise StoreUnusable(f"store {path}: {e}") from None
    except BaseException:
        await store.close()
        raise
    return store
