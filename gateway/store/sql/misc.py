"""Audit log, change feed, leader leases and the schema version."""

from __future__ import annotations

import json
from typing import Any

from gateway.store.rows import Change
from gateway.store.sql.conn import Conn


class SqlAudit:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def add(self, at_ms: int, actor: str, action: str, detail: dict[str, Any]) -> None:
        """One audit row: who, when, what (never a secret in detail)."""
        self.c.execute("INSERT INTO audit_log (at_ms, actor, action, detail_json) VALUES (?, ?, ?, ?)",
                       (at_ms, actor, action, json.dumps(detail, ensure_ascii=False, sort_keys=True)))

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.c.dicts("SELECT id, at_ms, actor, action, detail_json FROM audit_log"
                            " ORDER BY id DESC LIMIT ?", (limit,))
        rows.reverse()
        return rows

    def page(self, before_id: int | None = None, limit: int = 50, actor: str | None = None,
             action: str | None = None) -> list[dict[str, Any]]:
        """Newest first, ids below before_id; exact actor / action filters (indexed, 0300)."""
        where, args = ["1=1"], []  # type: tuple[list[str], list[Any]]
        for cond, val in (("id < ?", before_id), ("actor = ?", actor), ("action = ?", action)):
            if val is not None:
                where.append(cond)
                args.append(val)
        return self.c.dicts("SELECT id, at_ms, actor, action, detail_json FROM audit_log WHERE "
                            + " AND ".join(where) + " ORDER BY id DESC LIMIT ?", [*args, limit])


class SqlChanges:
    """A feed of changes that running gateways must see at once (a re-keyed device), written in
    the same transaction as the change; every instance polls it (cheap: an indexed max)."""

    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def note(self, kind: str, subject: str, at_ms: int) -> None:
        self.c.execute("INSERT INTO changes (kind, subject, at_ms) VALUES (?, ?, ?)", (kind, subject, at_ms))

    def latest(self) -> int:
        return int(self.c.scalar("SELECT COALESCE(MAX(id), 0) FROM changes"))

    def since(self, after_id: int, limit: int = 1000) -> list[Change]:
        return [Change(int(r[0]), r[1], r[2]) for r in self.c.rows(
            "SELECT id, kind, subject FROM changes WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))]

    def prune(self, before_ms: int) -> int:
        return self.c.execute("DELETE FROM changes WHERE at_ms < ?", (before_ms,))


class SqlLeases:
    """Named leader leases: one holder at a time until it stops renewing (expires_ms)."""

    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def acquire(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew the lease; True if holder has it now."""
        self.c.execute(
            "INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
            " SET holder = excluded.holder, expires_ms = excluded.expires_ms"
            " WHERE leases.holder = excluded.holder OR leases.expires_ms < ?",
            (name, holder, now_ms + ttl_ms, now_ms))
        return bool(self.c.scalar("SELECT holder FROM leases WHERE name = ?", (name,)) == holder)

    def release(self, name: str, holder: str) -> None:
        self.c.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def holder(self, name: str, now_ms: int) -> str | None:
        v = self.c.scalar("SELECT holder FROM leases WHERE name = ? AND expires_ms >= ?", (name, now_ms))
        return None if v is None else str(v)


class SqlSchema:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def version(self) -> int:
        return int(self.c.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
