"""The QR channel (issue 19): QR points, printed plates, the page's submissions, and the
records and invitation outcomes the page writes (migration 0400)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.store.rows import QrPlate, QrSubmission
from gateway.store.sql.conn import Conn

_PLATE = ("id, kid, window_id, staff_account, binding_id, issued_ms, issued_by, revoked_ms, revoked_by,"
          " revoke_reason")
_SUBMISSION = "nonce, via, subject, record_id, outcome, grade, tags, comment, created_ms"
# What a QR record may carry: the records columns ingest writes, and its channel.
RECORD_COLUMNS = frozenset((
    "record_id", "device_id", "rb", "rs", "kind", "grade", "invitation_id", "device_wall_s", "uptime_ms",
    "pressed_at_ms", "time_source", "received_at_ms", "msg_boot", "binding_id", "window_id",
    "staff_account", "flags", "channel", "hall_id", "dept_code"))


def _plate(r: tuple[Any, ...]) -> QrPlate:
    return QrPlate(str(r[0]), int(r[1]), r[2], r[3], int(r[4]), int(r[5]), r[6],
                   None if r[7] is None else int(r[7]), r[8], r[9])


def _submission(r: tuple[Any, ...]) -> QrSubmission:
    return QrSubmission(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], int(r[8]))


class SqlQr:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    # -- points --------------------------------------------------------------------------------

    def point_of_window(self, window_id: str) -> str | None:
        v = self.c.scalar("SELECT device_id FROM qr_points WHERE window_id = ?", (window_id,))
        return None if v is None else str(v)

    def is_point(self, device_id: str) -> bool:
        return self.c.one("SELECT 1 FROM qr_points WHERE device_id = ?", (device_id,)) is not None

    def add_point(self, device_id: str, window_id: str, secret_hex: str, at_ms: int) -> bool:
        """The window's point (a disabled devices row and its qr_points row); False if the window
        has one already. IntegrityError if the device id is taken by a real device."""
        if self.point_of_window(window_id) is not None:
            return False
        self.c.execute("INSERT INTO devices (device_id, secret_hex, fw, created_at, enabled)"
                       " VALUES (?, ?, 'qr', ?, 0)", (device_id, secret_hex, at_ms))
        self.c.execute("INSERT INTO qr_points (device_id, window_id, created_ms) VALUES (?, ?, ?)",
                       (device_id, window_id, at_ms))
        return True

    def next_seq(self, device_id: str) -> int:
        """The next record sequence of a point (the row lock serialises concurrent writers)."""
        return int(self.c.scalar("UPDATE qr_points SET next_seq = next_seq + 1 WHERE device_id = ?"
                                 " RETURNING next_seq", (device_id,)))

    def points(self) -> list[dict[str, Any]]:
        return self.c.dicts("SELECT device_id, window_id, next_seq AS records, created_ms FROM qr_points"
                            " ORDER BY window_id")

    # -- records and invitation outcomes --------------------------------------------------------

    def insert_record(self, row: Mapping[str, Any]) -> None:
        """One record given on the QR page (IntegrityError if its id exists)."""
        unknown = set(row) - RECORD_COLUMNS
        if unknown:
            raise ValueError("not a records column: %s" % ", ".join(sorted(unknown)))
        cols = list(row)
        self.c.execute("INSERT INTO records (%s) VALUES (%s)"
                       % (", ".join(cols), self.c.placeholders(len(cols))), [row[k] for k in cols])

    def claim_invitation(self, inv_id: str, record_id: str, grade: str, at_ms: int) -> bool:
        """pending -> rated by record_id; False when it is no longer pending (rated meanwhile by
        the device or another submission: on PostgreSQL the second writer waits for the first and
        then finds it rated)."""
        return self.c.execute(
            "UPDATE invitations SET status = 'rated', closed_ms = ?, close_reason = NULL, record_id = ?,"
            " grade = ? WHERE id = ? AND status = 'pending'", (at_ms, record_id, grade, inv_id)) > 0

    def rated_via(self, record_id: str) -> str | None:
        """The channel of a record (device | qr), None when unknown."""
        v = self.c.scalar("SELECT channel FROM records WHERE record_id = ?", (record_id,))
        return None if v is None else str(v)

    # -- plates --------------------------------------------------------------------------------

    def add_plate(self, plate_id: str, kid: int, window_id: str, staff_account: str, binding_id: int,
                  at_ms: int, actor: str) -> None:
        self.c.execute("INSERT INTO qr_plates (id, kid, window_id, staff_account, binding_id, issued_ms,"
                       " issued_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (plate_id, kid, window_id, staff_account, binding_id, at_ms, actor))

    def get_plate(self, plate_id: str) -> QrPlate | None:
        r = self.c.one("SELECT %s FROM qr_plates WHERE id = ?" % _PLATE, (plate_id,))
        return None if r is None else _plate(r)

    def active_plate(self, window_id: str, staff_account: str) -> QrPlate | None:
        """The newest plate of (window, clerk) not revoked."""
        r = self.c.one("SELECT %s FROM qr_plates WHERE window_id = ? AND staff_account = ?"
                       " AND revoked_ms IS NULL ORDER BY issued_ms DESC, id DESC LIMIT 1" % _PLATE,
                       (window_id, staff_account))
        return None if r is None else _plate(r)

    def plates(self, include_revoked: bool = False, window_id: str | None = None) -> list[QrPlate]:
        where = ["1=1"]
        args: list[Any] = []
        if not include_revoked:
            where.append("revoked_ms IS NULL")
        if window_id is not None:
            where.append("window_id = ?")
            args.append(window_id)
        return [_plate(r) for r in self.c.rows(
            "SELECT %s FROM qr_plates WHERE %s ORDER BY window_id, issued_ms, id"
            % (_PLATE, " AND ".join(where)), args)]

    def revoke_plate(self, plate_id: str, at_ms: int, actor: str, reason: str) -> bool:
        """False if it was revoked already."""
        return self.c.execute("UPDATE qr_plates SET revoked_ms = ?, revoked_by = ?, revoke_reason = ?"
                              " WHERE id = ? AND revoked_ms IS NULL", (at_ms, actor, reason, plate_id)) > 0

    def plate_ratings(self, plate_ids: list[str]) -> dict[str, tuple[int, int | None]]:
        """plate id -> (submissions, latest submission ms)."""
        if not plate_ids:
            return {}
        return {str(r[0]): (int(r[1]), None if r[2] is None else int(r[2])) for r in self.c.rows(
            "SELECT subject, count(*), max(created_ms) FROM qr_submissions WHERE via = 'plate'"
            " AND subject IN (%s) GROUP BY subject" % self.c.placeholders(len(plate_ids)), plate_ids)}

    # -- submissions ---------------------------------------------------------------------------

    def submission(self, nonce: str) -> QrSubmission | None:
        r = self.c.one("SELECT %s FROM qr_submissions WHERE nonce = ?" % _SUBMISSION, (nonce,))
        return None if r is None else _submission(r)

    def submissions_of(self, via: str, subject: str) -> list[QrSubmission]:
        return [_submission(r) for r in self.c.rows(
            "SELECT %s FROM qr_submissions WHERE via = ? AND subject = ? ORDER BY created_ms, nonce"
            % _SUBMISSION, (via, subject))]

    def add_submission(self, s: QrSubmission) -> None:
        self.c.execute("INSERT INTO qr_submissions (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)" % _SUBMISSION,
                       (s.nonce, s.via, s.subject, s.record_id, s.outcome, s.grade, s.tags, s.comment,
                        s.created_ms))

    # -- reports -------------------------------------------------------------------------------

    def ratings_by_channel(self, lo: int, hi: int) -> list[tuple[str, str, str, int, int]]:
        """(window, clerk, channel, assess number, ratings) of the invitations created in [lo, hi)
        and rated, by the channel of the record that rated them."""
        return [(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in self.c.rows(
            "SELECT i.window_id, i.staff_account, r.channel, i.assess_number, count(*)"
            " FROM invitations i JOIN records r ON r.record_id = i.record_id"
            " WHERE i.created_ms >= ? AND i.created_ms < ? AND i.status = 'rated'"
            " GROUP BY i.window_id, i.staff_account, r.channel, i.assess_number", (lo, hi))]
