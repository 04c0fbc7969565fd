"""Numbered SQL migrations, one directory per backend with the same version numbers:
gateway/store/migrations/<backend>/NNNN_name.sql, applied in order.

Numbering: 0001-0099 core, bindings, invitations, change feed, leases; 0100+ uplink. Each
file runs in its own transaction together with its schema_version row, so a failed migration
leaves no trace and the next start retries it. Applied versions are never re-run; editing an
applied file has no effect (add a new one instead, for both backends).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.store.errors import MigrationError
from gateway.store.sql.conn import Conn

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")  # fullmatch
_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version ("
                  " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def discover(directory: Path) -> list[Migration]:
    found: dict[int, Migration] = {}
    for p in sorted(directory.glob("*.sql")):
        m = _NAME.fullmatch(p.name)
        if m is None:
            raise MigrationError(f"migration file {p.name} is not named NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            other = found[version].path.name
            raise MigrationError(f"two migrations numbered {version:04d}: {other}, {p.name}")
        found[version] = Migration(version, m.group(2), p)
    return [found[v] for v in sorted(found)]


def migrations_dir(dialect: str) -> Path:
    return MIGRATIONS_DIR / ("postgres" if dialect == "postgresql" else "sqlite")


def latest_version(dialect: str) -> int:
    migs = discover(migrations_dir(dialect))
    return migs[-1].version if migs else 0


def applied_versions(conn: Conn) -> set[int]:
    return {int(r[0]) for r in conn.rows("SELECT version FROM schema_version")}


def migrate(conn: Conn, run_script: Callable[[str], object], directory: Path | None = None) -> list[int]:
    """Apply every not-yet-applied migration in order; return the versions applied now.
    conn is in autocommit mode; run_script runs a multi-statement text as it is."""
    d = directory or migrations_dir(conn.dialect)
    run_script(_VERSION_TABLE)
    done = applied_versions(conn)
    applied: list[int] = []
    begin = "BEGIN IMMEDIATE" if conn.dialect == "sqlite" else "BEGIN"
    for mig in discover(d):
        if mig.version in done:
            continue
        sql = mig.path.read_text(encoding="utf-8")
        script = (f"{begin};\n{sql}\n;\n"
                  "INSERT INTO schema_version(version, name, applied_at_ms) "
                  f"VALUES ({mig.version}, '{mig.name}', {int(time.time() * 1000)});\nCOMMIT;")
        try:
            run_script(script)
        except Exception as e:
            try:
                conn.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - nothing open to roll back
                pass
            raise MigrationError(f"migration {mig.path.name} failed: {e}") from e
        applied.append(mig.version)
    return applied



# Tables every store has once migrated (the uplink's included): a store missing one is
# damaged or not ours, never taken for a fresh one.
EXPECTED_TABLES = ("devices", "device_boots", "records", "rejections", "audit_log", "windows", "staff",
                   "bindings", "invitations", "uplink_items", "uplink_batches", "uplink_runs",
                   "changes", "leases", "alerts", "service_instances", "ops_cursors")


def check_schema(conn: Conn, where: str, fresh_ok: bool) -> int:
    """Refuse (StoreUnusable, one line) a store that is not ours: no schema_version, a version
    newer than this gateway knows, or a missing table. A store with no tables at all is fresh
    (allowed only with fresh_ok). Returns the schema version."""
    from gateway.store.errors import StoreUnusable
    if conn.dialect == "sqlite":
        tables = {r[0] for r in conn.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
    else:
        tables = {r[0] for r in conn.rows(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    if not tables and fresh_ok:
        return 0
    if "schema_version" not in tables:
        raise StoreUnusable(f"store {where} is not a gateway store (no schema_version table)")
    version = int(conn.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
    latest = latest_version(conn.dialect)
    if version > latest:
        raise StoreUnusable(f"store {where} has schema version {version}, newer than this gateway "
                            f"knows ({latest}): upgrade the gateway")
    if version == latest:
        missing = [t for t in EXPECTED_TABLES if t not in tables]
        if missing:
            raise StoreUnusable(f"store {where} is damaged: table {missing[0]} is missing"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return version
