"""Devices and their credentials (table devices)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.rows import DeviceHealth, DeviceRow
from gateway.store.sql.conn import Conn

_COLS = ("device_id, secret_hex, fw, created_at, last_seen, online, status_b, status_c, boot, last_hb_json,"
         " last_hello_json, journal_depth, reconnects, last_rst, cmd_boot, cmd_n_reserved, enabled")


def _row(r: tuple[Any, ...]) -> DeviceRow:
    return DeviceRow(r[0], r[1], r[2], int(r[3]), r[4], bool(r[5]), r[6], r[7], r[8], r[9], r[10], r[11],
                     int(r[12]), r[13], r[14], int(r[15]), bool(r[16]))


class SqlDevices:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def get(self, device_id: str, enabled_only: bool = False) -> DeviceRow | None:
        r = self.c.one("SELECT %s FROM devices WHERE device_id = ?%s"
                       % (_COLS, " AND enabled = 1" if enabled_only else ""), (device_id,))
        return None if r is None else _row(r)

    def all(self, enabled_only: bool = False) -> list[DeviceRow]:
        return [_row(r) for r in self.c.rows("SELECT %s FROM devices%s ORDER BY device_id"
                                             % (_COLS, " WHERE enabled = 1" if enabled_only else ""))]

    def exists(self, device_id: str) -> bool:
        return self.c.one("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)) is not None

    def secret(self, device_id: str) -> str | None:
        v = self.c.scalar("SELECT secret_hex FROM devices WHERE device_id = ?", (device_id,))
        return None if v is None else str(v)

    def upsert(self, device_id: str, secret_hex: str, fw: str | None, at_ms: int) -> bool:
        """Insert or re-key (and re-enable) a device; True if it was new."""
        existed = self.exists(device_id)
        self.c.execute(
            "INSERT INTO devices(device_id, secret_hex, fw, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(device_id) DO UPDATE SET secret_hex = excluded.secret_hex,"
            " fw = COALESCE(excluded.fw, devices.fw), enabled = 1",
            (device_id, secret_hex, fw, at_ms))
        return not existed

    def save_health(self, rows: Sequence[DeviceHealth]) -> None:
        self.c.executemany(
            "UPDATE devices SET last_seen = ?, online = ?, status_b = ?, status_c = ?,"
            " boot = %s(COALESCE(boot, 0), ?), fw = COALESCE(?, fw), journal_depth = ?,"
            " reconnects = ?, last_rst = ?, last_hb_json = ?, last_hello_json = ?"
            " WHERE device_id = ?" % self.c.greatest,
            [(s.last_seen, int(s.online), s.status_b, s.status_c, s.boot, s.fw, s.journal_depth,
              s.reconnects, s.last_rst, s.last_hb_json, s.last_hello_json, s.device_id) for s in rows])

    def lease_commands(self, device_id: str, boot: int, reserved_until: int) -> None:
        """Persist "command counters below reserved_until may have been used in this boot"."""
        self.c.execute("UPDATE devices SET cmd_boot = ?, cmd_n_reserved = ? WHERE device_id = ?",
                       (boot, reserved_until, device_id))

    def silent(self, cutoff_ms: int) -> list[dict[str, Any]]:
        """Enabled devices with no accepted message since cutoff_ms (or never)."""
        return self.c.dicts(
            "SELECT device_id, last_seen, online, boot, journal_depth FROM devices"
            " WHERE enabled = 1 AND (last_seen IS NULL OR last_seen < ?) ORDER BY device_id", (cutoff_ms,))
