"""Invitations (一次一评) and their outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.rows import Invitation, NewInvitation
from gateway.store.sql.conn import Conn
from gateway.store.sql.uplink import CASE_ELSEWHERE

_COLUMNS = ("id, device_id, window_id, staff_account, binding_id, case_no, task_code, task_name, dept_code,"
            " applicant_type, countdown_s, status, created_ms, expires_ms, closed_ms, close_reason,"
            " record_id, grade, assess_number, hall_id, receipt")


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

    @staticmethod
    def _filter(status: str | None, since_ms: int | None, until_ms: int | None,
                windows: Sequence[str] | None) -> tuple[str, list[Any]]:
        where: list[str] = ["1=1"]
        args: list[Any] = []
        for cond, val in (("status = ?", status), ("created_ms >= ?", since_ms),
                          ("created_ms < ?", until_ms)):
            if val is not None:
                where.append(cond)
                args.append(val)
        if windows is not None:
            where.append("window_id IN (%s)" % ",".join("?" * len(windows)) if windows else "1=0")
            args.extend(windows)
        return " AND ".join(where), args

    def page(self, status: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
             windows: Sequence[str] | None = None, before: tuple[int, str] | None = None,
             limit: int = 50) -> list[Invitation]:
        """Newest first, strictly before `before` (created_ms, id): a keyset page."""
        w, args = self._filter(status, since_ms, until_ms, windows)
        if before is not None:
            w += " AND created_ms <= ? AND (created_ms < ? OR id < ?)"   # a seekable range first
            args += [before[0], before[0], before[1]]
        return [Invitation(*r) for r in self.c.rows(
            "SELECT %s FROM invitations WHERE %s ORDER BY created_ms DESC, id DESC LIMIT ?" % (_COLUMNS, w),
            [*args, limit])]

    def count_upto(self, cap: int, status: str | None = None, since_ms: int | None = None,
                   until_ms: int | None = None, windows: Sequence[str] | None = None) -> int:
        w, args = self._filter(status, since_ms, until_ms, windows)
        return int(self.c.scalar(
            "SELECT count(*) FROM (SELECT 1 FROM invitations WHERE " + w + " LIMIT ?) AS m", [*args, cap]))

    def for_case(self, case_no: str) -> list[Invitation]:
        """The case's invitations, oldest first."""
        return [Invitation(*r) for r in self.c.rows(
            "SELECT %s FROM invitations WHERE case_no = ? ORDER BY created_ms, id" % _COLUMNS, (case_no,))]

    def count(self, status: str) -> int:
        return int(self.c.scalar("SELECT count(*) FROM invitations WHERE status = ?", (status,)))

    # A receipt invitation (rated through its printed QR link only) is never shown on the
    # device, so neither of these sees it: it is not superseded by the next case at the window.
    def pending_ids(self, device_id: str) -> list[str]:
        return [r[0] for r in self.c.rows(
            "SELECT id FROM invitations WHERE device_id = ? AND status = 'pending' AND receipt = 0",
            (device_id,))]

    def latest_pending(self, device_id: str) -> Invitation | None:
        r = self.c.one("SELECT %s FROM invitations WHERE device_id = ? AND status = 'pending' AND receipt = 0"
                       " ORDER BY created_ms DESC LIMIT 1" % _COLUMNS, (device_id,))
        return None if r is None else Invitation(*r)

    def close(self, inv_id: str, status: str, at_ms: int, reason: str) -> None:
        self.c.execute("UPDATE invitations SET status = ?, closed_ms = ?, close_reason = ? WHERE id = ?",
                       (status, at_ms, reason, inv_id))

    def rated_for_case(self, case_no: str, assess_number: int = 1) -> str | None:
        v = self.c.scalar("SELECT id FROM invitations WHERE case_no = ? AND status = 'rated'"
                          " AND assess_number = ?", (case_no, assess_number))
        return None if v is None else str(v)

    def first_rating(self, case_no: str) -> Invitation | None:
        """The case's rated first-rating invitation (assess_number 1), if any."""
        r = self.c.one("SELECT %s FROM invitations WHERE case_no = ? AND status = 'rated'"
                       " AND assess_number = 1" % _COLUMNS, (case_no,))
        return None if r is None else Invitation(*r)

    def insert(self, n: NewInvitation) -> None:
        self.c.execute(
            "INSERT INTO invitations (id, device_id, window_id, staff_account, binding_id, case_no,"
            " task_code, task_name, dept_code, applicant_type, countdown_s, status, created_ms,"
            " expires_ms, created_by, assess_number, hall_id, receipt)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
            (n.id, n.device_id, n.window_id, n.staff_account, n.binding_id, n.case_no, n.task_code,
             n.task_name, n.dept_code, n.applicant_type, n.countdown_s, n.created_ms, n.expires_ms,
             n.created_by, n.assess_number, n.hall_id, int(n.receipt)))

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

    # A case is a first-rating invitation that was not withdrawn: a cancelled invitation (the
    # window system took it back, or the device was unpaired) asked no citizen, and a follow-up
    # invitation is the same case again.
    _CASE = "assess_number = 1 AND status != 'cancelled'"

    def cases_by_window_staff(self, lo: int, hi: int) -> list[tuple[str, str, int]]:
        return [(r[0], r[1], int(r[2])) for r in self.c.rows(
            "SELECT window_id, staff_account, COUNT(DISTINCT case_no) FROM invitations"
            " WHERE created_ms >= ? AND created_ms < ? AND " + self._CASE
            + " GROUP BY window_id, staff_account", (lo, hi))]

    def outcomes_by_window_staff(self, lo: int, hi: int,
                                 assess_number: int = 1) -> list[tuple[str, str, str, str | None, int]]:
        return [(r[0], r[1], r[2], r[3], int(r[4])) for r in self.c.rows(
            "SELECT window_id, staff_account, status, grade, COUNT(*) FROM invitations"
            " WHERE created_ms >= ? AND created_ms < ? AND assess_number = ?"
            " GROUP BY window_id, staff_account, status, grade", (lo, hi, assess_number))]

    def distinct_cases(self, lo: int, hi: int) -> int:
        return int(self.c.scalar("SELECT COUNT(DISTINCT case_no) FROM invitations"
                                 " WHERE created_ms >= ? AND created_ms < ? AND " + self._CASE, (lo, hi)))

    def latest_of_case(self, case_no: str) -> Invitation | None:
        """The case's latest first-rating invitation that was not withdrawn."""
        r = self.c.one("SELECT %s FROM invitations WHERE case_no = ? AND assess_number = 1"
                       " AND status != 'cancelled' ORDER BY created_ms DESC, id DESC LIMIT 1" % _COLUMNS,
                       (case_no,))
        return None if r is None else Invitation(*r)

    def follow_ups(self, case_no: str) -> list[Invitation]:
        return [Invitation(*r) for r in self.c.rows(
            "SELECT %s FROM invitations WHERE case_no = ? AND assess_number = 2"
            " ORDER BY created_ms" % _COLUMNS,
            (case_no,))]

    def closed_for_uplink(self, lo: int, hi: int, unrated_statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        """First-rating invitations closed in [lo, hi) without a rating, or whose default rating
        was queued or sent, with that uplink state, whether a device record stands for the
        invitation and whether another invitation or upload stands for the case."""
        statuses = self.c.placeholders(len(unrated_statuses))
        return self.c.dicts(
            "SELECT i.id, i.device_id, i.status AS inv_status, i.closed_ms,"
            " u.status, u.reject_origin, u.reject_code, u.reject_reason,"
            " CASE WHEN EXISTS (SELECT 1 FROM records r WHERE r.invitation_id = i.id"
            " AND r.device_id = i.device_id AND (r.kind = 'unrated' OR r.record_id = i.record_id))"
            " THEN 1 ELSE 0 END AS has_record,"
            " CASE WHEN " + CASE_ELSEWHERE + " THEN 1 ELSE 0 END AS case_elsewhere"
            " FROM invitations i LEFT JOIN uplink_items u ON u.invitation_id = i.id"
            " WHERE i.closed_ms >= ? AND i.closed_ms < ? AND i.assess_number = 1"
            " AND (i.status IN (" + statuses + ") OR u.status IS NOT NULL)"
            " ORDER BY i.device_id, i.id", (lo, hi, *unrated_statuses))
