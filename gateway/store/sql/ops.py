"""Operations' repositories (issue 20): alert state, running instances, leader-job cursors,
and the few figures capacity planning needs (records per period, the database's size)."""

from __future__ import annotations

import json
from typing import Any

from gateway.store.rows import AlertRow, InstanceBeat
from gateway.store.sql.conn import Conn

_ALERT_COLS = ("id, cond_key, kind, severity, subject, detail_json, opened_ms, notified_ms, resolved_ms,"
               " recovery_notified_ms")


def _alert(r: tuple[Any, ...]) -> AlertRow:
    try:
        detail = json.loads(r[5]) if r[5] else {}
    except ValueError:
        detail = {}
    return AlertRow(int(r[0]), r[1], r[2], r[3], r[4], detail if isinstance(detail, dict) else {},
                    int(r[6]), _int(r[7]), _int(r[8]), _int(r[9]))


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


class SqlAlerts:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def open_alerts(self) -> list[AlertRow]:
        return [_alert(r) for r in self.c.rows(
            "SELECT %s FROM alerts WHERE resolved_ms IS NULL ORDER BY id" % _ALERT_COLS)]

    def open(self, cond_key: str, kind: str, severity: str, subject: str, detail: dict[str, Any],
             at_ms: int) -> int | None:
        """Raise the condition; its id, or None when it is already open (never twice)."""
        if self.c.one("SELECT 1 FROM alerts WHERE cond_key = ? AND resolved_ms IS NULL", (cond_key,)):
            return None
        row = self.c.one(
            "INSERT INTO alerts (cond_key, kind, severity, subject, detail_json, opened_ms)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (cond_key, kind, severity, subject, json.dumps(detail, ensure_ascii=False, sort_keys=True),
             at_ms))
        assert row is not None
        return int(row[0])

    def mark_notified(self, alert_id: int, at_ms: int) -> None:
        self.c.execute("UPDATE alerts SET notified_ms = ? WHERE id = ?", (at_ms, alert_id))

    def resolve(self, alert_id: int, at_ms: int) -> bool:
        """Close an open alert; False when it was no longer open."""
        return self.c.execute("UPDATE alerts SET resolved_ms = ? WHERE id = ? AND resolved_ms IS NULL",
                              (at_ms, alert_id)) == 1

    def mark_recovery_notified(self, alert_id: int, at_ms: int) -> None:
        self.c.execute("UPDATE alerts SET recovery_notified_ms = ? WHERE id = ?", (at_ms, alert_id))

    def unannounced_recoveries(self) -> list[AlertRow]:
        """Resolved alerts whose recovery notice was never queued (the leader stopped between)."""
        return [_alert(r) for r in self.c.rows(
            "SELECT %s FROM alerts WHERE resolved_ms IS NOT NULL AND notified_ms IS NOT NULL"
            " AND recovery_notified_ms IS NULL ORDER BY id" % _ALERT_COLS)]

    def history(self, limit: int = 100) -> tuple[list[AlertRow], int]:
        """The newest alerts (open and resolved), newest first, and how many there are."""
        total = int(self.c.scalar("SELECT count(*) FROM alerts"))
        rows = [_alert(r) for r in self.c.rows(
            "SELECT %s FROM alerts ORDER BY id DESC LIMIT ?" % _ALERT_COLS, (limit,))]
        return rows, total

    def cursor(self, name: str) -> int | None:
        return _int(self.c.scalar("SELECT value FROM ops_cursors WHERE name = ?", (name,)))

    def set_cursor(self, name: str, value: int) -> None:
        self.c.execute("INSERT INTO ops_cursors (name, value) VALUES (?, ?)"
                       " ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))


class SqlOps:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def beat(self, b: InstanceBeat) -> None:
        self.c.execute(
            "INSERT INTO service_instances (instance, client_id, version, started_ms, seen_ms, mqtt_ok,"
            " mqtt_error, detail_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(instance) DO UPDATE SET"
            " client_id = excluded.client_id, version = excluded.version, started_ms = excluded.started_ms,"
            " seen_ms = excluded.seen_ms, mqtt_ok = excluded.mqtt_ok, mqtt_error = excluded.mqtt_error,"
            " detail_json = excluded.detail_json",
            (b.instance, b.client_id, b.version, b.started_ms, b.seen_ms, int(b.mqtt_ok), b.mqtt_error,
             json.dumps(b.detail, ensure_ascii=False, sort_keys=True)))

    def forget(self, instance: str) -> None:
        self.c.execute("DELETE FROM service_instances WHERE instance = ?", (instance,))

    def instances(self) -> list[InstanceBeat]:
        out = []
        for r in self.c.rows("SELECT instance, client_id, version, started_ms, seen_ms, mqtt_ok, mqtt_error,"
                             " detail_json FROM service_instances ORDER BY seen_ms DESC"):
            try:
                detail = json.loads(r[7]) if r[7] else {}
            except ValueError:
                detail = {}
            out.append(InstanceBeat(r[0], r[1], r[2], int(r[3]), int(r[4]), bool(r[5]), r[6],
                                    detail if isinstance(detail, dict) else {}))
        return out

    def prune_instances(self, before_ms: int) -> int:
        return self.c.execute("DELETE FROM service_instances WHERE seen_ms < ?", (before_ms,))

    def rejection_codes(self) -> dict[str, int]:
        """Records the platform (or the mapping) rejected and nobody re-queued, per reason code."""
        return {str(r[0]): int(r[1]) for r in self.c.rows(
            "SELECT COALESCE(reject_code, ''), count(*) FROM uplink_items WHERE status = 'rejected'"
            " GROUP BY COALESCE(reject_code, '')")}

    def records_received_since(self, since_ms: int) -> int:
        return int(self.c.scalar("SELECT count(*) FROM records WHERE received_at_ms >= ?", (since_ms,)))

    def record_count(self) -> int:
        return int(self.c.scalar("SELECT count(*) FROM records"))

    def newest_times(self) -> dict[str, int | None]:
        """The latest times the store holds, per source: a clock set back shows here."""
        return {
            "record_received": _int(self.c.scalar("SELECT MAX(received_at_ms) FROM records")),
            "audit": _int(self.c.scalar("SELECT MAX(at_ms) FROM audit_log")),
            "device_seen": _int(self.c.scalar("SELECT MAX(last_seen) FROM devices")),
        }

    def database_bytes(self) -> int:
        """The database's size as the server counts it (SQLite: pages in use and free)."""
        if self.c.dialect == "sqlite":
            return int(self.c.scalar("PRAGMA page_count")) * int(self.c.scalar("PRAGMA page_size"))
        return int(self.c.scalar("SELECT pg_database_size(current_database())"))
