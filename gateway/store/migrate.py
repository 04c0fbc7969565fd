"""Numbered SQL migrations: gateway/store/migrations/NNNN_name.sql, applied in order.

Numbering: 0001-0099 core, bindings, invitations; 0100+ uplink. Each file runs in its own
transaction together with its schema_version row, so a failed migration leaves no trace
and the next start retries it. Applied versions are never re-run; editing an applied file
has no effect (add a new one instead).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class MigrationError(Exception):
    """A migration file is misnamed, duplicated, or failed to apply."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
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


async def applied_versions(conn: aiosqlite.Connection) -> set[int]:
    async with conn.execute("SELECT version FROM schema_version") as cur:
        return {int(r[0]) for r in await cur.fetchall()}


async def migrate(conn: aiosqlite.Connection, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply every not-yet-applied migration in order; return the versions applied now."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)"
    )
    done = await applied_versions(conn)
    applied: list[int] = []
    for mig in discover(directory):
        if mig.version in done:
            continue
        sql = mig.path.read_text(encoding="utf-8")
        # executescript runs statements one by one; BEGIN/COMMIT around them (and the
        # version row) make the file atomic. On error the transaction is still open.
        script = (
            "BEGIN IMMEDIATE;\n"
            f"{sql}\n;\n"
            "INSERT INTO schema_version(version, name, applied_at_ms) "
            f"VALUES ({mig.version}, '{mig.name}', {int(time.time() * 1000)});\n"
            "COMMIT;"
        )
        try:
            await conn.executescript(script)
        except Exception as e:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise MigrationError(f"migration {mig.path.name} failed: {e}") from e
        applied.append(mig.version)
    return applied
