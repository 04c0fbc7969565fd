"""Records (ratings as the devices sent them), their time anchors and rejection counters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.store.sql.conn import Conn
from gateway.store.sql.uplink import NOT_A_RATING

# Columns ingest writes, in order.
COLUMNS = (
    "record_id", "device_id", "rb", "rs", "kind", "grade", "invitation_id",
    "device_wall_s", "uptime_ms", "pressed_at_ms", "time_source", "received_at_ms",
    "msg_boot", "binding_id", "window_id", "staff_account", "flags",
)
# A re-sent record is a no-op on its primary key: redelivery never doubles a rating.
_INSERT = "INSERT INTO records (%s) VALUES (%s) ON CONFLICT DO NOTHING" % (
    ", ".join(COLUMNS), ", ".join("?" for _ in COLUMNS))
# SQLite's limit on host parameters is 32766; PostgreSQL's 65535: stay well below both.
_IN_CHUNK = 500
PRESS_KINDS = ("rated", "walkup", "extra", "unpaired")


class SqlRecords:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i:i + _IN_CHUNK]
            found.update(r[0] for r in self.c.rows(
                "SELECT record_id FROM records WHERE record_id IN (%s)" % self.c.placeholders(len(chunk)),
                chunk))
        return found

    def insert_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.c.executemany(_INSERT, [tuple(r[k] for k in COLUMNS) for r in rows])

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self.c.one_dict("SELECT * FROM records WHERE record_id = ?", (record_id,))

    def count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self.c.scalar("SELECT count(*) FROM records"))
        return int(self.c.scalar("SELECT count(*) FROM records WHERE device_id = ?", (device_id,)))

    def presses_between(self, device_id: str, lo: int, hi: int, exclude_id: str) -> list[list[Any]]:
        """[record_id, pressed_at_ms, flags] of the device's presses with lo < pressed < hi."""
        return [[r[0], int(r[1]), r[2] or ""] for r in self.c.rows(
            "SELECT record_id, pressed_at_ms, flags FROM records WHERE device_id = ? AND pressed_at_ms > ?"
            " AND pressed_at_ms < ? AND kind IN ('rated', 'walkup', 'extra', 'unpaired') AND record_id != ?"
            " ORDER BY pressed_at_ms", (device_id, lo, hi, exclude_id))]

    def set_flags(self, record_id: str, flags: str) -> None:
        self.c.execute("UPDATE records SET flags = ? WHERE record_id = ?", (flags, record_id))

    def search(self, lo: int | None = None, hi: int | None = None, window_id: str | None = None,
               staff_account: str | None = None, kind: str | None = None,
               limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        """Records by press time (the first `limit`, oldest first), each with its invitation's
        case and whether it is that invitation's one rating, and how many matched in all."""
        where, args = ["1=1"], []  # type: tuple[list[str], list[Any]]
        for cond, val in (("r.pressed_at_ms >= ?", lo), ("r.pressed_at_ms < ?", hi),
                          ("r.window_id = ?", window_id), ("r.staff_account = ?", staff_account),
                          ("r.kind = ?", kind)):
            if val is not None:
                where.append(cond)
                args.append(val)
        w = " AND ".join(where)
        total = int(self.c.scalar("SELECT count(*) FROM records r WHERE " + w, args))
        rows = self.c.dicts(
            "SELECT r.record_id, r.pressed_at_ms, r.time_source, r.kind, r.grade, r.window_id,"
            " r.staff_account, r.invitation_id, i.case_no,"
            " CASE WHEN i.record_id = r.record_id THEN 1 ELSE 0 END AS counted, r.flags"
            " FROM records r LEFT JOIN invitations i ON i.id = r.invitation_id WHERE " + w
            + " ORDER BY r.pressed_at_ms, r.record_id LIMIT ?", [*args, limit])
        for r in rows:
            r["counted"] = bool(r["counted"])
        return rows, total

    @staticmethod
    def _filter(lo: int | None, hi: int | None, windows: Sequence[str] | None, staff_account: str | None,
                kind: str | None, grade: str | None, flag: str | None,
                device_id: str | None) -> tuple[str, list[Any]]:
        where, args = ["1=1"], []  # type: tuple[list[str], list[Any]]
        for cond, val in (("r.pressed_at_ms >= ?", lo), ("r.pressed_at_ms < ?", hi),
                          ("r.device_id = ?", device_id),
                          ("r.staff_account = ?", staff_account), ("r.kind = ?", kind),
                          ("r.grade = ?", grade)):
            if val is not None:
                where.append(cond)
                args.append(val)
        if windows is not None:
            if not windows:
                where.append("1=0")
            else:
                where.append("r.window_id IN (%s)" % ",".join("?" * len(windows)))
                args.extend(windows)
        if flag is not None:
            # flags <> '' lets the planner read the partial index of flagged records (0301).
            where.append("r.flags <> '' AND (',' || r.flags || ',') LIKE ?")
            args.append("%," + flag + ",%")
        return " AND ".join(where), args

    def page(self, lo: int | None = None, hi: int | None = None, windows: Sequence[str] | None = None,
             staff_account: str | None = None, kind: str | None = None, grade: str | None = None,
             flag: str | None = None, before: tuple[int, str] | None = None, limit: int = 50,
             device_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first (by press time, then record id), strictly before `before` when given:
        a keyset page (no OFFSET), walking the records_pressed index backwards. windows=None:
        any window (and none); a list: only those windows."""
        w, args = self._filter(lo, hi, windows, staff_account, kind, grade, flag, device_id)
        if before is not None:
            # "<= ?" first: a range the press-time index can seek to on both backends (an OR of
            # two ranges alone makes PostgreSQL scan).
            w += " AND r.pressed_at_ms <= ? AND (r.pressed_at_ms < ? OR r.record_id < ?)"
            args += [before[0], before[0], before[1]]
        rows = self.c.dicts(
            "SELECT r.record_id, r.device_id, r.pressed_at_ms, r.time_source, r.received_at_ms, r.kind,"
            " r.grade, r.window_id, r.staff_account, r.invitation_id, i.case_no,"
            " CASE WHEN i.record_id = r.record_id THEN 1 ELSE 0 END AS counted, r.flags"
            " FROM records r LEFT JOIN invitations i ON i.id = r.invitation_id WHERE " + w
            + " ORDER BY r.pressed_at_ms DESC, r.record_id DESC LIMIT ?", [*args, limit])
        for r in rows:
            r["counted"] = bool(r["counted"])
        return rows

    def count_upto(self, cap: int, lo: int | None = None, hi: int | None = None,
                   windows: Sequence[str] | None = None, staff_account: str | None = None,
                   kind: str | None = None, grade: str | None = None, flag: str | None = None,
                   device_id: str | None = None) -> int:
        """How many records match, counting no further than cap (a list says "cap+" then)."""
        w, args = self._filter(lo, hi, windows, staff_account, kind, grade, flag, device_id)
        return int(self.c.scalar(
            "SELECT count(*) FROM (SELECT 1 FROM records r WHERE " + w + " LIMIT ?) AS m", [*args, cap]))

    def day_presses(self, lo: int, hi: int) -> list[tuple[str | None, str | None, str, str]]:
        """(window, staff, kind, flags) of the day's records other than `unrated`."""
        return [(r[0], r[1], r[2], r[3] or "") for r in self.c.rows(
            "SELECT window_id, staff_account, kind, flags FROM records"
            " WHERE pressed_at_ms >= ? AND pressed_at_ms < ? AND kind != 'unrated'", (lo, hi))]

    def day_with_uplink(self, lo: int, hi: int) -> list[dict[str, Any]]:
        """The day's records with their uplink state (reconciliation), and whether each is a
        rating at all (NOT_A_RATING: late and extra presses, unrated follow-ups are not)."""
        return self.c.dicts(
            "SELECT r.record_id, r.device_id, r.rb, r.rs, r.kind, COALESCE(r.window_id, '') AS window_id,"
            " u.status, u.reject_origin, u.reject_code, u.reject_reason,"
            " CASE WHEN " + NOT_A_RATING + " THEN 1 ELSE 0 END AS not_a_rating"
            " FROM records r LEFT JOIN uplink_items u ON u.record_id = r.record_id"
            " LEFT JOIN invitations i ON i.id = r.invitation_id"
            " WHERE r.pressed_at_ms >= ? AND r.pressed_at_ms < ? ORDER BY r.device_id, r.rb, r.rs",
            (lo, hi))

    def seqs(self, device_id: str, rb: int, upto: int) -> set[int]:
        return {int(r[0]) for r in self.c.rows(
            "SELECT rs FROM records WHERE device_id = ? AND rb = ? AND rs <= ?", (device_id, rb, upto))}


# (device_id, boot, anchor_ms, first_seen)
AnchorRow = tuple[str, int, "int | None", int]


class SqlAnchors:
    """Per (device, boot) wall-clock anchors (table device_boots)."""

    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def get(self, device_id: str, boot: int) -> int | None:
        v = self.c.scalar("SELECT anchor_ms FROM device_boots WHERE device_id = ? AND boot = ?",
                          (device_id, boot))
        return None if v is None else int(v)

    def save(self, rows: Sequence[tuple[str, int, int | None, int]]) -> None:
        """An anchor only ever moves earlier."""
        self.c.executemany(
            "INSERT INTO device_boots(device_id, boot, anchor_ms, first_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(device_id, boot) DO UPDATE SET anchor_ms = %s(COALESCE(device_boots.anchor_ms,"
            " excluded.anchor_ms), excluded.anchor_ms)" % self.c.least, rows)


class SqlRejections:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def add_counts(self, counts: Mapping[str, int], at_ms: int) -> None:
        self.c.executemany(
            "INSERT INTO rejections(reason, count, last_at) VALUES (?, ?, ?) ON CONFLICT(reason) DO UPDATE"
            " SET count = rejections.count + excluded.count, last_at = excluded.last_at",
            [(reason, n, at_ms) for reason, n in counts.items() if n])

    def totals(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self.c.rows("SELECT reason, count FROM rejections")}

    def rows(self) -> list[dict[str, Any]]:
        """reason, count, last_at, by reason."""
        return self.c.dicts("SELECT reason, count, last_at FROM rejections ORDER BY reason")
