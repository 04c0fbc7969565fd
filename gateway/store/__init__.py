"""The gateway's store: the only place with SQL and database drivers.

`open_store(url)` picks the backend by the url: `sqlite:///path` or a plain path is the
embedded SQLite file; `postgresql://...` is PostgreSQL. Domain code gets a `Store`
(gateway.store.api) and runs units of work on its repositories. See docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.api import Store

__all__ = ["Store", "open_store", "is_postgres_url", "sqlite_path"]


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> Path:
    return Path(url[len("sqlite://"):]) if url.startswith("sqlite://") else Path(url)


async def open_store(url: str | Path, run_migrations: bool = True, create: bool = True) -> Store:
    """Open the store, refusing (StoreUnusable, one line) one that is damaged or not ours.
    create=False (serve and the admin commands): a missing or empty store is refused too;
    only `hcp-gateway init` (and tests) create one."""
    u = str(url)
    if is_postgres_url(u):
        from gateway.store.postgres import open_postgres
        return await open_postgres(u, run_migrations, create)
    from gateway.store.sqlite import open_sqlite
    return await open_sqlite(sqlite_path(u), run_migrations, create)
