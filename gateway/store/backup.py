"""Online, consistent backups of the store and their restore, for both backends.

SQLite: the backup API (`sqlite3.Connection.backup`) copies every page in ONE step, i.e.
inside one read transaction: the copy is the database as of one commit, while the service
keeps writing (WAL: readers never block the writer). The copy is switched to
journal_mode=DELETE (one self-contained file), checked (integrity_check, schema) and only
then renamed into place. PostgreSQL: `pg_dump --format=custom`, which reads everything in
one repeatable-read snapshot; the password goes to pg_dump in its environment (PGPASSWORD),
never on its command line.

A backup holds device keys, and the store's other secrets: it is created 0600 and never
readable by anyone else, even for a moment. Restore refuses to overwrite a store unless told
(`force`), keeps the store it replaces (SQLite: renamed beside it), refuses while a gateway
serves the store, and migrates a backup made by an older gateway.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.store import claim_single_instance, is_postgres_url, sqlite_path
from gateway.store.errors import StoreError, StoreUnusable
from gateway.store.migrate import check_schema
from gateway.store.sql.conn import Conn

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
PG_TOOL_TIMEOUT_S = 3600.0


class BackupError(StoreError):
    """A backup or restore could not be made; one line says why (never a password)."""


@dataclass(frozen=True)
class BackupInfo:
    path: str
    backend: str            # sqlite | postgresql
    bytes: int
    schema_version: int
    records: int | None     # records in the copy (SQLite: counted in the copy itself)
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RestoreInfo:
    target: str
    backend: str
    schema_version: int
    records: int
    kept: str | None        # where the store that was replaced now is (SQLite)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup_kind(path: Path) -> str:
    """"sqlite" or "postgresql" by the file's first bytes; BackupError for anything else."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise BackupError("cannot read %s: %s" % (path, e.strerror or e)) from None
    if head == SQLITE_MAGIC:
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise BackupError("%s is not a gateway backup (neither a SQLite file nor a pg_dump archive)" % path)


def _private_file(path: Path) -> None:
    """Create an empty file readable by its owner only (its final mode from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _part(dest: Path) -> Path:
    return dest.with_name("." + dest.name + ".part")


def backup(url: str, dest: Path) -> BackupInfo:
    """Write a consistent copy of the store at url to dest (0600); blocking (run it in a thread)."""
    dest = Path(dest)
    if dest.is_dir():
        raise BackupError("%s is a directory: give the backup file's name" % dest)
    if not dest.parent.is_dir():
        raise BackupError("directory %s does not exist" % dest.parent)
    started = time.monotonic()
    part = _part(dest)
    try:
        if is_postgres_url(url):
            version, records = _pg_dump(url, part)
            backend = "postgresql"
        else:
            version, records = _sqlite_backup(sqlite_path(url), part)
            backend = "sqlite"
        _fsync(part)
        os.replace(part, dest)
        with contextlib.suppress(OSError):
            _fsync(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return BackupInfo(str(dest), backend, dest.stat().st_size, version, records,
                      round(time.monotonic() - started, 3))


def _sqlite_backup(src_path: Path, part: Path) -> tuple[int, int]:
    if not src_path.is_file():
        raise BackupError("store %s does not exist" % src_path)
    _private_file(part)
    try:
        src = sqlite3.connect(str(src_path), timeout=30)
    except sqlite3.Error as e:
        raise BackupError("store %s cannot be opened: %s" % (src_path, e)) from None
    try:
        dst = sqlite3.connect(str(part))
        try:
            # pages=-1 (the default): every page in one step, one read transaction: one commit's state.
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")   # one self-contained file, no -wal beside it
            version, records = _check_copy(dst, str(part))
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise BackupError("backup of %s failed: %s" % (src_path, e)) from None
    finally:
        src.close()
    return version, records


def _check_copy(conn: sqlite3.Connection, where: str) -> tuple[int, int]:
    """A SQLite copy is whole and ours: integrity_check, the schema, its record count."""
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    if [r[0] for r in rows] != ["ok"]:
        raise BackupError("%s is damaged: %s" % (where, rows[0][0]))
    c = Conn(conn, "sqlite", (sqlite3.IntegrityError,))
    version = check_schema(c, where, fresh_ok=False)
    return version, int(c.scalar("SELECT count(*) FROM records"))


# ---- PostgreSQL: pg_dump / pg_restore, the password in the environment ---------------------

def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).is_file():
            return str(d / name)
    raise BackupError("%s not found: install postgresql-client (apt-get install postgresql-client)" % name)


def _pg_env(url: str) -> tuple[str, dict[str, str]]:
    """The connection string without its password, and an environment holding it."""
    import psycopg
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise BackupError("[store] url is not a PostgreSQL connection string") from None
    env = dict(os.environ)
    password = info.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()}), env


def _redacted(url: str) -> str:
    from gateway.store.postgres import redact
    return redact(url)


def _run_pg(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        out = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=PG_TOOL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BackupError("%s did not finish within %.0f s" % (what, PG_TOOL_TIMEOUT_S)) from None
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.decode(errors="replace").splitlines() if ln.strip()]
        raise BackupError("%s failed: %s" % (what, lines[0] if lines else "exit %d" % out.returncode))


def _pg_facts(url: str) -> tuple[int, int]:
    import psycopg
    try:
        with psycopg.connect(url, connect_timeout=10) as c:
            conn = Conn(c, "postgresql", (psycopg.errors.IntegrityError,))
            version = check_schema(conn, _redacted(url), fresh_ok=False)
            return version, int(conn.scalar("SELECT count(*) FROM records"))
    except psycopg.Error as e:
        raise BackupError("store %s: %s" % (_redacted(url), str(e).strip().splitlines()[0])) from None


def _pg_dump(url: str, part: Path) -> tuple[int, int | None]:
    version, _ = _pg_facts(url)   # refuses a database that is not a gateway store
    _private_file(part)
    conninfo, env = _pg_env(url)
    _run_pg([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
             "--file", str(part), "--dbname", conninfo], env, "pg_dump of %s" % _redacted(url))
    return version, None


# ---- restore -----------------------------------------------------------------------------------

def restore(src: Path, url: str, force: bool = False) -> RestoreInfo:
    """Put a backup in place as the store at url. Refuses (BackupError / StoreUnusable, one
    line) a file that is not a backup, a backup of the other backend, a store a gateway is
    serving, and an existing store unless force. Blocking: run it in a thread."""
    src = Path(src)
    kind = backup_kind(src)
    target_pg = is_postgres_url(url)
    if (kind == "postgresql") != target_pg:
        raise BackupError("%s is a %s backup but [store] is %s: restore it into a store of its kind"
                          % (src, kind, "PostgreSQL" if target_pg else "SQLite"))
    if target_pg:
        return _pg_restore(src, url, force)
    return _sqlite_restore(src, sqlite_path(url), force)


def _sqlite_restore(src: Path, target: Path, force: bool) -> RestoreInfo:
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % src, uri=True)
        try:
            _check_copy(conn, str(src))
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise BackupError("%s cannot be read as a backup: %s" % (src, e)) from None
    if not target.parent.is_dir():
        raise BackupError("directory %s does not exist" % target.parent)
    lock = claim_single_instance(target)   # StoreUnusable while a gateway serves it
    kept: Path | None = None
    try:
        if target.exists():
            if not force:
                raise BackupError("store %s exists: stop the gateway and pass --force to replace it "
                                  "(the current store is kept beside it)" % target)
            kept = _set_aside(target)
        part = _part(target)
        _private_file(part)
        with src.open("rb") as fin, part.open("wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        _fsync(part)
        if kept is not None and os.geteuid() == 0:
            st = kept.stat()
            os.chown(part, st.st_uid, st.st_gid)   # the service's file stays the service's
        os.replace(part, target)
        with contextlib.suppress(OSError):
            _fsync(target.parent)
    finally:
        lock.release()
    version, records = _migrate_restored(str(target))
    return RestoreInfo(str(target), "sqlite", version, records, str(kept) if kept else None)


def _set_aside(target: Path) -> Path:
    """Move the store (with its WAL folded in) out of the way, beside it, never deleted."""
    try:
        c = sqlite3.connect(str(target), timeout=10)
        try:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            c.close()
    except sqlite3.Error:
        pass   # a damaged store is moved as it is, with its -wal and -shm
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = target.with_name("%s.replaced-%s" % (target.name, stamp))
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(target) + suffix)
        if p.exists():
            os.replace(p, Path(str(kept) + suffix))
    return kept


def _migrate_restored(url: str) -> tuple[int, int]:
    """Open the restored store once: migrations of a newer gateway are applied, and it is checked."""
    import asyncio

    from gateway.store import open_store

    async def go() -> tuple[int, int]:
        store = await open_store(url, create=False)
        try:
            return await store.read(lambda tx: (tx.schema.version(), tx.ops.record_count()))
        finally:
            await store.close()

    return asyncio.run(go())


def _pg_restore(src: Path, url: str, force: bool) -> RestoreInfo:
    import psycopg
    now = int(time.time() * 1000)
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as c:
            tables = [r[0] for r in c.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()]
            holder = None
            if "leases" in tables:
                row = c.execute("SELECT holder FROM leases WHERE name = 'leader' AND expires_ms >= %s",
                                (now,)).fetchone()
                holder = row[0] if row else None
    except psycopg.Error as e:
        raise BackupError("store %s: %s" % (_redacted(url), str(e).strip().splitlines()[0])) from None
    if holder is not None:
        raise StoreUnusable("a gateway (%s) is serving %s: stop every instance before a restore"
                            % (holder, _redacted(url)))
    if tables and not force:
        raise BackupError("store %s is not empty: stop every gateway and pass --force to replace its "
                          "tables" % _redacted(url))
    conninfo, env = _pg_env(url)
    args = [_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
            "--single-transaction", "--dbname", conninfo]
    if tables:
        args[1:1] = ["--clean", "--if-exists"]
    _run_pg([*args, str(src)], env, "pg_restore into %s" % _redacted(url))
    version, records = _migrate_restored(url)
    return RestoreInfo(_redacted(url), "postgresql", version, records, None)
