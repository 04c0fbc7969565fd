"""The PostgreSQL backend, for deployments that outgrow one machine: several gateway
instances share one database. psycopg 3 (sync API) in the store's own writer and reader
threads: the same unit-of-work model as SQLite, so domain code is one code path for both.
"""

from __future__ import annotations

from typing import Any

import psycopg

from gateway.store.base import SqlStore
from gateway.store.errors import StoreUnusable
from gateway.store.migrate import check_schema, migrate
from gateway.store.sql.conn import Conn
from gateway.store.worker import Worker

# Any fixed number: the lock all instances take while one of them migrates.
_MIGRATION_LOCK = 0x68637067  # "hcpg"


def _connect(url: str) -> Conn:
    raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
    return Conn(raw, "postgresql", (psycopg.errors.IntegrityError,))


def _close(conn: Conn) -> None:
    conn.raw.close()


def redact(url: str) -> str:
    """The url without its password (for logs)."""
    try:
        info: dict[str, Any] = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://?"
    return "postgresql://%s@%s:%s/%s" % (info.get("user", ""), info.get("host", ""), info.get("port", ""),
                                         info.get("dbname", ""))


class PostgresStore(SqlStore):
    backend = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(Worker("store-writer", lambda: _connect(url), _close),
                         Worker("store-reader", lambda: _connect(url), _close), redact(url))


def _migrate_locked(c: Conn) -> list[int]:
    c.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
    try:
        return migrate(c, lambda s: c.raw.execute(s))
    finally:
        c.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))


async def open_postgres(url: str, run_migrations: bool = True, create: bool = True) -> PostgresStore:
    store = PostgresStore(url)
    try:
        try:
            await store._writer.started()
            await store._reader.started()
        except psycopg.OperationalError as e:
            why = (str(e).strip().splitlines() or ["?"])[0]
            raise StoreUnusable("store %s cannot be reached: %s" % (redact(url), why)) from None
        await store._writer.call(lambda c: check_schema(c, redact(url), fresh_ok=create))
        if run_migrations:
            await store._writer.call(_migrate_locked)
            await store._writer.call(lambda c: check_schema(c, redact(url), fresh_ok=False))
    except BaseException:
        await store.close()
        raise
    return store
