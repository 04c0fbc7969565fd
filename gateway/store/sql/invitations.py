"""Invitations (一次一评) and their outcomes."""

from __future__ import annotations

from typing import Any

from gateway.store.rows import Invitation, NewInvitation
from gateway.store.sql.conn import Conn

_COLUMNS = ("id, device_id, window_id, staff_account, binding_id, case_no, task_code, task_name, dept_code,"
            " applicant_type, countdown_s, status, created_ms, expires_ms, closed_ms, close_reason,"
            " record_id, grade, hall_id")


class SqlInvitations:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def get(self, inv_id: str) -> Invitation | None:
        r = self.c.one("SELECT %s FROM invitations WHERE id = ?" % _COLUMNS, (inv_id,))
        return None if r is None else Invitation(*r)

    def find(self, status: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
             limit: int = 1000) -> tuple[list[Invitation], int]:
        """Oldest first, at most limit rows (the newest limit), and how many matched."""
        where: list[str] = ["1=1"]
        args: list[Any] = []
        for cond, val in (("status = ?", status), ("created_ms >= ?", since_ms),
                          ("created_ms < ?", until_ms)):
            if val is not None:
                where.append(cond)
                args.append(val)
        w = " AND ".join(where)
        total = int(self.c.scalar("SELECT count(*) FROM invitations WHERE " + w, args))
        rows = [Invitation(*r) for r in self.c.rows(
            "SELECT %s FROM invitations WHERE %s ORDER BY created_ms DESC, id DESC LIMIT ?" % (_COLUMNS, w),
            [*args, max(1, limit)])]
        rows.reverse()
        return rows, total

    def for_case(self, case_no: str) -> list[Invitation]:
        """The case's invitations, oldest first."""
        return [Invitation(*r) for r in self.c.rows(
            "SELECT %s FROM invitations WHERE case_no = ? ORDER BY created_ms, id" % _COLUMNS, (case_no,))]

    def count(self, status: str) -> int:
        return int(self.c.scalar("SELECT count(*) FROM invitations WHERE status = ?", (status,)))

    def pending_ids(self, device_id: str) -> list[str]:
        return [r[0] for r in self.c.rows(
            "SELECT id FROM invitations WHERE device_id = ? AND status = 'pending'", (device_id,))]

    def latest_pending(self, device_id: str) -> Invitation | None:
        r = self.c.one("SELECT %s FROM invitations WHERE device_id = ? AND status = 'pending'"
                       " ORDER BY created_ms DESC LIMIT 1" % _COLUMNS, (device_id,))
        return None if r is None else Invitation(*r)

    def close(self, inv_id: str, status: str, at_ms: int, reason: str) -> None:
        self.c.execute("UPDATE invitations SET status = ?, closed_ms = ?, close_reason = ? WHERE id = ?",
                       (status, at_ms, reason, inv_id))

    def rated_for_case(self, case_no: str) -> str | None:
        v = self.c.scalar("SELECT id FROM invitations WHERE case_no = ? AND status = 'rated'", (case_no,))
        return None if v is None else str(v)

    def insert(self, n: NewInvitation) -> None:
        self.c.execute(
            "INSERT INTO invitations (id, device_id, window_id, staff_account, binding_id, case_no,"
            " task_code, task_name, dept_code, applicant_type, countdown_s, status, created_ms,"
            " expires_ms, created_by, hall_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
            (n.id, n.device_id, n.window_id, n.staff_account, n.binding_id, n.case_no, n.task_code,
             n.task_name, n.dept_code, n.applicant_type, n.countdown_s, n.created_ms, n.expires_ms,
             n.created_by, n.hall_id))

    def due(self, at_ms: int) -> list[str]:
        return [r[0] for r in self.c.rows(
            "SELECT id FROM invitations WHERE status = 'pending' AND expires_ms <= ?", (at_ms,))]

    def expire(self, inv_id: str, reason: str) -> bool:
        """pending -> expired at its expiry time; False if it was no longer pending."""
        return self.c.execute(
            "UPDATE invitations SET status = 'expired', closed_ms = expires_ms, close_reason = ?"
            " WHERE id = ? AND status = 'pending'", (reason, inv_id)) > 0

    def set_outcome(self, inv_id: str, status: str, closed_ms: int, reason: str | None, record_id: str,
                    grade: str | None) -> None:
        """Closed by a device record: 'rated' (with its grade) or 'unrated'."""
        if grade is None:
            self.c.execute("UPDATE invitations SET status = ?, closed_ms = ?, close_reason = ?, record_id = ?"
                           " WHERE id = ?", (status, closed_ms, reason, record_id, inv_id))
        else:
            self.c.execute("UPDATE invitations SET status = ?, closed_ms = ?, close_reason = ?,"
                           " record_id = ?, grade = ? WHERE id = ?",
                           (status, closed_ms, reason, record_id, grade, inv_id))

    # -- reports -------------------------------------------------------------------------------

    def cases_by_window_staff(self, lo: int, hi: int) -> list[tuple[str, str, int]]:
        return [(r[0], r[1], int(r[2])) for r in self.c.rows(
            "SELECT window_id, staff_account, COUNT(DISTINCT case_no) FROM invitations"
            " WHERE created_ms >= ? AND created_ms < ? GROUP BY window_id, staff_account", (lo, hi))]

    def outcomes_by_window_staff(self, lo: int, hi: int) -> list[tuple[str, str, str, str | None, int]]:
        return [(r[0], r[1], r[2], r[3], int(r[4])) for r in self.c.rows(
            "SELECT window_id, staff_account, status, grade, COUNT(*) FROM invitations"
            " WHERE created_ms >= ? AND created_ms < ? GROUP BY window_id, staff_account, status, grade",
            (lo, hi))]

    def distinct_cases(self, lo: int, hi: int) -> int:
        return int(self.c.scalar("SELECT COUNT(DISTINCT case_no) FROM invitations"
                                 " WHERE created_ms >= ? AND created_ms < ?", (lo, hi)))

    def closed_for_uplink(self, lo: int, hi: int, unrated_statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        """Invitations closed in [lo, hi) without a rating, or whose default rating was queued
        or sent, with that uplink state and whether a device record stands for the case."""
        return self.c.dicts(
            "SELECT i.id, i.device_id, i.status AS inv_status, i.closed_ms,"
            " u.status, u.reject_origin, u.reject_code, u.reject_reason,"
            " EXISTS (SELECT 1 FROM records r WHERE r.invitation_id = i.id AND r.device_id = i.device_id"
            " AND r.kind IN ('rated', 'unrated')) AS has_record"
            " FROM invitations i LEFT JOIN uplink_items u ON u.invitation_id = i.id"
            " WHERE i.closed_ms >= ? AND i.closed_ms < ? AND (i.status IN (%s) OR u.status IS NOT NULL)"
            " ORDER BY i.device_id, i.id" % self.c.placeholders(len(unrated_statuses)),
            (lo, hi, *unrated_statuses))
