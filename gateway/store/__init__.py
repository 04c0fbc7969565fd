"""The gateway's store: the only place with SQL and database drivers.

`open_store(url)` picks the backend by the url: `sqlite:///path` or a plain path is the
embedded SQLite file; `postgresql://...` is PostgreSQL. Domain code gets a `Store`
(gateway.store.api) and runs units of work on its repositories. See docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.api import Store

__all__ = ["Store", "open_store", "is_postgres_url", "sqlite_path", "claim_single_instance", "check_private"]


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


class InstanceLock:
    """Held by a serving gateway on a SQLite store for as long as it runs."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        import os
        if self._fd is not None:
            os.close(self._fd)   # closing drops the lock
            self._fd = None


def claim_single_instance(url: str | Path) -> InstanceLock:
    """On SQLite, one serving gateway per store file: a second one is refused with one line
    (two would fight over the client id and double the pushes). PostgreSQL stores are shared
    by design (shared subscriptions, the leader lease): nothing to claim."""
    import fcntl
    import os

    from gateway.store.errors import StoreUnusable
    u = str(url)
    if is_postgres_url(u):
        return InstanceLock(None)
    db = sqlite_path(u)
    if not db.is_file() or db.stat().st_size == 0:
        return InstanceLock(None)   # nothing to serve: open_store refuses it with its own line
    lock = Path(str(db) + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreUnusable(f"another gateway (pid {other}) is already serving store {sqlite_path(u)}: "
                            "stop it first (systemctl stop hcp-gateway); several instances need a "
                            "PostgreSQL store") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return InstanceLock(fd)


def check_private(url: str | Path) -> None:
    """Refuse (StoreUnusable, one line) a SQLite store file everyone may read: it holds the
    devices' secrets. (A PostgreSQL store's access is the server's.)"""
    import stat

    from gateway.store.errors import StoreUnusable
    u = str(url)
    if is_postgres_url(u):
        return
    db = sqlite_path(u)
    for f in (db, Path(str(db) + "-wal"), Path(str(db) + "-shm")):
        try:
            mode = f.stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IROTH:
            raise StoreUnusable(f"store file {f} holds the devices' secrets and is readable by everyone "
                                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {f}")
