"""Devices heard per hour (table device_presence), for supervision's silent-device finding."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.sql.conn import Conn

HOUR_MS = 3_600_000


class SqlPresence:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def note_last_seen(self, since_ms: int) -> int:
        """Mark the hour of every device's last message at or after since_ms; rows added."""
        return self.c.execute(
            "INSERT INTO device_presence (device_id, hour_ms) SELECT device_id, (last_seen / ?) * ?"
            " FROM devices WHERE last_seen >= ? ON CONFLICT DO NOTHING", (HOUR_MS, HOUR_MS, since_ms))

    def note(self, rows: Sequence[tuple[str, int]]) -> None:
        """(device_id, any ms in the hour) pairs."""
        self.c.executemany("INSERT INTO device_presence (device_id, hour_ms) VALUES (?, ?)"
                           " ON CONFLICT DO NOTHING",
                           [(d, (t // HOUR_MS) * HOUR_MS) for d, t in rows])

    def hours(self, lo: int, hi: int) -> dict[str, set[int]]:
        """device -> the hour starts (UTC ms) in [lo, hi) it was heard in."""
        out: dict[str, set[int]] = {}
        for d, h in self.c.rows("SELECT device_id, hour_ms FROM device_presence"
                                " WHERE hour_ms >= ? AND hour_ms < ?",
                                ((lo // HOUR_MS) * HOUR_MS, hi)):
            out.setdefault(str(d), set()).add(int(h))
        return out
