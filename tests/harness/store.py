"""Which store backend the tests run on, and a backend-neutral way for tests to look at what
is stored. `HCP_STORE=sqlite` (default) or `HCP_STORE=postgresql` (or `pytest --store ...`)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

BACKEND = os.environ.get("HCP_STORE", "sqlite")


def is_pg(url: str | Path) -> bool:
    return str(url).startswith(("postgresql://", "postgres://"))


def query(url: str | Path, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
    """A separate connection: sees exactly what is committed. `?` placeholders on both."""
    if is_pg(url):
        import psycopg
        with psycopg.connect(str(url), autocommit=True) as c:
            cur = c.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    path = str(url)[len("sqlite://"):] if str(url).startswith("sqlite://") else str(url)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, tuple(params)).fetchall())
    finally:
        conn.close()


def execute(url: str | Path, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> None:
    """A write from outside the gateway (a test's tampering or seeding)."""
    if is_pg(url):
        import psycopg
        with psycopg.connect(str(url), autocommit=True) as c:
            c.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
        return
    conn = sqlite3.connect(str(url), timeout=10, isolation_level=None)
    try:
        conn.execute(sql, tuple(params))
    finally:
        conn.close()
