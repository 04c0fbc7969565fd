"""Devices and their credentials (table devices)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.rows import DeviceHealth, DeviceRow
from gateway.store.sql.conn import Conn

_COLS = ("device_id, secret_hex, fw, created_at, last_seen, online, status_b, status_c, boot, last_hb_json,"
         " last_hello_json, journal_depth, reconnects, last_rst, cmd_boot, cmd_n_reserved, enabled, limited,"
         " limited_at, quenched_until")


def _row(r: tuple[Any, ...]) -> DeviceRow:
    return DeviceRow(r[0], r[1], r[2], int(r[3]), r[4], bool(r[5]), r[6], r[7], r[8], r[9], r[10], r[11],
                     int(r[12]), r[13], r[14], int(r[15]), bool(r[16]), int(r[17]), r[18],
                     r[19])


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
        """Write back the registry's health fields. Several instances share a store, each with
        its own view: a field is taken only if it is not older than the stored one -- the
        online state by its status (b, c) (offline wins for the same (b, c), as in
        gateway.health), the reported fields (fw, journal, last reset, hb/hello) by last_seen;
        boot, reconnects and the rate-limit counters only grow."""
        g = self.c.greatest
        newer = ("COALESCE(?, -1) > COALESCE(status_b * 8589934592 + status_c * 2 + (1 - online), -1)")
        fresh = "COALESCE(?, -1) >= COALESCE(last_seen, -1)"
        self.c.executemany(
            "UPDATE devices SET"
            " online = CASE WHEN %(newer)s THEN ? ELSE online END,"
            " status_b = CASE WHEN %(newer)s THEN ? ELSE status_b END,"
            " status_c = CASE WHEN %(newer)s THEN ? ELSE status_c END,"
            " fw = CASE WHEN %(fresh)s THEN COALESCE(?, fw) ELSE fw END,"
            " journal_depth = CASE WHEN %(fresh)s THEN ? ELSE journal_depth END,"
            " last_rst = CASE WHEN %(fresh)s THEN ? ELSE last_rst END,"
            " last_hb_json = CASE WHEN %(fresh)s THEN COALESCE(?, last_hb_json) ELSE last_hb_json END,"
            " last_hello_json = CASE WHEN %(fresh)s THEN COALESCE(?, last_hello_json)"
            " ELSE last_hello_json END,"
            " last_seen = NULLIF(%(g)s(COALESCE(last_seen, -1), COALESCE(?, last_seen, -1)), -1),"
            " boot = %(g)s(COALESCE(boot, 0), ?), reconnects = %(g)s(reconnects, ?),"
            " limited = %(g)s(limited, ?),"
            " limited_at = NULLIF(%(g)s(COALESCE(limited_at, -1), COALESCE(?, -1)), -1)"
            " WHERE device_id = ?" % {"newer": newer, "fresh": fresh, "g": g},
            [_health_params(s) for s in rows])
        # (-1 stands for "none yet" where GREATEST/MAX needs a value.)

    def set_quenched(self, device_id: str, until_ms: int | None) -> None:
        self.c.execute("UPDATE devices SET quenched_until = ? WHERE device_id = ?", (until_ms, device_id))

    def quench_over(self, now_ms: int) -> list[str]:
        """Devices whose quench has run out (their broker account is to be enabled again)."""
        return [r[0] for r in self.c.rows(
            "SELECT device_id FROM devices WHERE quenched_until IS NOT NULL AND quenched_until <= ?"
            " ORDER BY device_id", (now_ms,))]

    def lease_commands(self, device_id: str, boot: int, reserved_until: int) -> None:
        """Persist "command counters below reserved_until may have been used in this boot"."""
        self.c.execute("UPDATE devices SET cmd_boot = ?, cmd_n_reserved = ? WHERE device_id = ?",
                       (boot, reserved_until, device_id))

    def silent(self, cutoff_ms: int) -> list[dict[str, Any]]:
        """Enabled devices with no accepted message since cutoff_ms (or never)."""
        return self.c.dicts(
            "SELECT device_id, last_seen, online, boot, journal_depth FROM devices"
            " WHERE enabled = 1 AND (last_seen IS NULL OR last_seen < ?) ORDER BY device_id", (cutoff_ms,))


def _health_params(s: DeviceHealth) -> tuple[Any, ...]:
    key = (None if s.status_b is None or s.status_c is None
           else s.status_b * 8589934592 + s.status_c * 2 + (0 if s.online else 1))
    ls = s.last_seen
    return (key, int(s.online), key, s.status_b, key, s.status_c,
            ls, s.fw, ls, s.journal_depth, ls, s.last_rst, ls, s.last_hb_json, ls, s.last_hello_json,
            ls, s.boot, s.reconnects, s.limited, s.limited_at, s.device_id)
