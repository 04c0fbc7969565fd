"""Uplink delivery state: items (one per upload id), batches and push runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.sql.conn import Conn

# One rule for what is a rating (docs/uplink.md, "What is uploaded"): a `rated` record that
# names a known invitation is a rating only if it is that invitation's one rating (a press
# after the invitation closed is flagged `late`, a second press `extra`: both are kept and
# counted apart, in the report and here alike); a device `unrated` record of a follow-up
# invitation is no rating at all (a follow-up that was not given is not a default rating).
NOT_A_RATING = ("((r.kind = 'rated' AND i.id IS NOT NULL AND COALESCE(i.record_id, '') != r.record_id)"
                " OR (r.kind = 'unrated' AND COALESCE(i.assess_number, 1) = 2))")

# A case has one first rating at the platform. For the invitation aliased `i` (a candidate for
# the case's default rating): another invitation of the same case stands for it -- one that is
# rated, or still pending, or a later one that was not withdrawn -- or another upload for the
# case already went to the platform.
_OTHER_OF_CASE = ("FROM invitations o WHERE o.case_no = i.case_no AND o.assess_number = 1 AND o.id != i.id")
_LATER = "(o.created_ms > i.created_ms OR (o.created_ms = i.created_ms AND o.id > i.id))"
CASE_ELSEWHERE = (
    "(EXISTS (SELECT 1 " + _OTHER_OF_CASE + " AND (o.status IN ('rated', 'pending')"
    " OR (o.status != 'cancelled' AND " + _LATER + ")))"
    " OR EXISTS (SELECT 1 FROM uplink_items u2 WHERE u2.case_no = i.case_no AND u2.assess_number = 1"
    " AND u2.status IN ('sent', 'acked')))")

_ELIGIBLE = """
SELECT r.record_id, r.device_id, r.kind, r.grade, r.invitation_id, r.pressed_at_ms,
       r.received_at_ms, r.staff_account, r.channel,
       i.case_no, i.task_code, i.task_name,
       COALESCE(NULLIF(i.dept_code, ''), w.dept_code) AS dept_code,
       i.applicant_type, i.staff_account AS invitation_staff,
       COALESCE(i.assess_number, 1) AS assess_number,
       NULLIF(c.tags, '') AS tags, NULLIF(c.comment, '') AS comment, c.tag_version,
       u.status AS item_status,
       (SELECT d.status FROM uplink_items d WHERE d.invitation_id = r.invitation_id) AS default_status,
       (SELECT o.record_id %(other)s AND o.status = 'rated') AS case_rated_by,
       CASE WHEN EXISTS (SELECT 1 %(other)s AND o.status = 'pending') THEN 1 ELSE 0 END AS case_pending,
       CASE WHEN EXISTS (SELECT 1 %(other)s AND o.status NOT IN ('cancelled', 'pending') AND %(later)s)
            THEN 1 ELSE 0 END AS case_later,
       (SELECT MIN(u2.record_id) FROM uplink_items u2 WHERE u2.case_no = i.case_no
          AND u2.assess_number = i.assess_number AND u2.status IN ('sent', 'acked')
          AND u2.record_id != r.record_id) AS case_taken_by
FROM records r
LEFT JOIN uplink_items u ON u.record_id = r.record_id
LEFT JOIN invitations i ON i.id = r.invitation_id
LEFT JOIN windows w ON w.window_id = COALESCE(i.window_id, r.window_id)
LEFT JOIN complaints c ON c.record_id = r.record_id
WHERE r.kind IN (%(kinds)s)
  AND (u.status IS NULL OR u.status IN ('pending', 'sent'))
  AND NOT %(not_a_rating)s
  AND r.record_id > ?
  %(date)s
ORDER BY r.record_id
LIMIT ?
"""

# Invitations due for a default rating: already in flight ("inv:" items pending or sent:
# re-sent until answered), or closed without a rating, due, with no item yet, no device
# record that stands for them (their rating, or their unrated record), and no other
# invitation or upload of the case standing for the case (CASE_ELSEWHERE). Follow-up
# invitations never get a default.
_INVITATION_DEFAULTS = """
SELECT * FROM (
  SELECT u.record_id, i.id AS invitation_id, i.device_id, i.closed_ms, u.status AS item_status,
         i.case_no, i.task_code, i.task_name, COALESCE(NULLIF(i.dept_code, ''), w.dept_code) AS dept_code,
         i.applicant_type, i.staff_account
  FROM uplink_items u JOIN invitations i ON i.id = u.invitation_id
  LEFT JOIN windows w ON w.window_id = i.window_id
  WHERE u.status IN ('pending', 'sent') %(date)s
  UNION ALL
  SELECT ? || i.id, i.id, i.device_id, i.closed_ms, NULL,
         i.case_no, i.task_code, i.task_name, COALESCE(NULLIF(i.dept_code, ''), w.dept_code),
         i.applicant_type, i.staff_account
  FROM invitations i
  LEFT JOIN windows w ON w.window_id = i.window_id
  WHERE i.status IN ('unrated', 'expired', 'superseded') AND i.assess_number = 1 AND i.closed_ms <= ? %(date)s
    AND NOT EXISTS (SELECT 1 FROM uplink_items u WHERE u.invitation_id = i.id)
    AND NOT EXISTS (SELECT 1 FROM records r WHERE r.invitation_id = i.id AND r.device_id = i.device_id
                    AND (r.kind = 'unrated' OR r.record_id = i.record_id))
    AND NOT %(elsewhere)s
) AS due
WHERE record_id > ?
ORDER BY record_id
LIMIT ?
"""


class SqlUplink:
    def __init__(self, conn: Conn) -> None:
        self.c = conn

    def eligible(self, kinds: Sequence[str], after_id: str, limit: int,
                 bounds: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        date_sql = ""
        params: list[Any] = [*kinds, after_id]
        if bounds is not None:
            date_sql = "AND r.pressed_at_ms >= ? AND r.pressed_at_ms < ?"
            params += list(bounds)
        sql = _ELIGIBLE % {"kinds": self.c.placeholders(len(kinds)), "date": date_sql,
                           "not_a_rating": NOT_A_RATING, "other": _OTHER_OF_CASE, "later": _LATER}
        return self.c.dicts(sql, [*params, limit])

    def invitation_defaults(self, prefix: str, after_id: str, limit: int, due_before_ms: int,
                            bounds: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        date_sql = "AND i.closed_ms >= ? AND i.closed_ms < ?" if bounds is not None else ""
        b: list[Any] = list(bounds) if bounds is not None else []
        return self.c.dicts(_INVITATION_DEFAULTS % {"date": date_sql, "elsewhere": CASE_ELSEWHERE},
                            [*b, prefix, due_before_ms, *b, after_id, limit])

    def mark_sent(self, batch_id: str, checksum: str,
                  items: Sequence[tuple[str, int, str | None, str | None, int]], now_ms: int) -> None:
        """Record the batch; its items (upload id, default flag, invitation id, case number,
        assess number) go to 'sent'."""
        self.c.execute("INSERT INTO uplink_batches (batch_id, created_ms, record_count, checksum, status)"
                       " VALUES (?, ?, ?, ?, 'open')", (batch_id, now_ms, len(items), checksum))
        self.c.executemany(
            "INSERT INTO uplink_items (record_id, status, batch_id, attempts, first_sent_ms, last_sent_ms,"
            " default_flag, invitation_id, case_no, assess_number) VALUES (?, 'sent', ?, 1, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(record_id) DO UPDATE SET status = 'sent', batch_id = excluded.batch_id,"
            " attempts = uplink_items.attempts + 1, last_sent_ms = excluded.last_sent_ms,"
            " default_flag = excluded.default_flag, case_no = excluded.case_no,"
            " assess_number = excluded.assess_number",
            [(uid, batch_id, now_ms, now_ms, flag, inv, case, assess)
             for uid, flag, inv, case, assess in items])

    def first_upload_of_case(self, case_no: str) -> str | None:
        """The upload id carrying the case's first rating (queued, sent or acknowledged), if any."""
        v = self.c.scalar("SELECT MIN(record_id) FROM uplink_items WHERE case_no = ? AND assess_number = 1"
                          " AND status IN ('pending', 'sent', 'acked')", (case_no,))
        return None if v is None else str(v)

    def item_status(self, upload_id: str) -> str | None:
        v = self.c.scalar("SELECT status FROM uplink_items WHERE record_id = ?", (upload_id,))
        return None if v is None else str(v)

    def mark_covered(self, items: Sequence[tuple[str, str]]) -> None:
        self.c.executemany(
            "INSERT INTO uplink_items (record_id, status, default_flag, covered_by)"
            " VALUES (?, 'covered', 1, ?)"
            " ON CONFLICT(record_id) DO UPDATE SET status = 'covered', covered_by = excluded.covered_by",
            items)

    def note_attempt(self, batch_id: str, error: str | None) -> None:
        self.c.execute("UPDATE uplink_batches SET attempts = attempts + 1, last_error = ? WHERE batch_id = ?",
                       (error, batch_id))

    def finish_batch(self, batch_id: str, status: str, error: str | None, now_ms: int) -> None:
        self.c.execute("UPDATE uplink_batches SET status = ?, last_error = ?, finished_ms = ?"
                       " WHERE batch_id = ?",
                       (status, error, now_ms, batch_id))

    def apply_results(self, batch_id: str, acked: Sequence[tuple[int, str, str]],
                      rejected: Sequence[tuple[str, str | None, int, str]], counts: tuple[int, int, int],
                      now_ms: int, error: str | None) -> None:
        """acked: (acked_ms, ack_status, id); rejected: (code, reason, rejected_ms, id)."""
        self.c.executemany("UPDATE uplink_items SET status = 'acked', acked_ms = ?, ack_status = ?"
                           " WHERE record_id = ?", acked)
        self.c.executemany(
            "UPDATE uplink_items SET status = 'rejected', reject_origin = 'platform', reject_code = ?,"
            " reject_reason = ?, rejected_ms = ? WHERE record_id = ?", rejected)
        self.c.execute(
            "UPDATE uplink_batches SET status = 'answered', attempts = attempts + 1, accepted = ?,"
            " duplicates = ?, rejected = ?, finished_ms = ?, last_error = ? WHERE batch_id = ?",
            (*counts, now_ms, error, batch_id))

    def reject(self, items: Sequence[tuple[str, str, str]], origin: str, now_ms: int) -> None:
        self.c.executemany(
            "INSERT INTO uplink_items (record_id, status, reject_origin, reject_code, reject_reason,"
            " rejected_ms) VALUES (?, 'rejected', ?, ?, ?, ?)"
            " ON CONFLICT(record_id) DO UPDATE SET status = 'rejected',"
            " reject_origin = excluded.reject_origin, reject_code = excluded.reject_code,"
            " reject_reason = excluded.reject_reason, rejected_ms = excluded.rejected_ms",
            [(rid, origin, code, reason, now_ms) for rid, code, reason in items])

    def rejections(self, limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        """Rejected items ("inv:" items: kind 'default', the invitation's close time), and how many."""
        total = int(self.c.scalar("SELECT count(*) FROM uplink_items WHERE status = 'rejected'"))
        rows = self.c.dicts(
            "SELECT u.record_id, COALESCE(r.kind, 'default') AS kind,"
            " COALESCE(r.pressed_at_ms, i.closed_ms) AS pressed_at_ms, u.reject_origin, u.reject_code,"
            " u.reject_reason, u.rejected_ms, u.batch_id, u.requeued FROM uplink_items u"
            " LEFT JOIN records r ON r.record_id = u.record_id"
            " LEFT JOIN invitations i ON i.id = u.invitation_id"
            " WHERE u.status = 'rejected' ORDER BY u.rejected_ms, u.record_id LIMIT ?", (limit,))
        return rows, total

    def requeue(self, record_ids: Sequence[str] | None = None, code: str | None = None) -> int:
        where, params = "status = 'rejected'", []  # type: tuple[str, list[Any]]
        if record_ids is not None:
            where += " AND record_id IN (%s)" % self.c.placeholders(len(record_ids))
            params += list(record_ids)
        if code is not None:
            where += " AND reject_code = ?"
            params.append(code)
        return self.c.execute("UPDATE uplink_items SET status = 'pending', requeued = requeued + 1 WHERE "
                              + where, params)

    def status_counts_upto(self, cap: int, statuses: Sequence[str]) -> dict[str, int]:
        """Items per status, each counted no further than cap: a few index probes, where
        status_counts reads every item (the web console's page; 1,000,000 items take
        hundreds of milliseconds to group on PostgreSQL)."""
        return {st: int(self.c.scalar("SELECT count(*) FROM (SELECT 1 FROM uplink_items WHERE status = ?"
                                      " LIMIT ?) AS m", (st, cap))) for st in statuses}

    def status_counts(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self.c.rows(
            "SELECT status, count(*) FROM uplink_items GROUP BY status")}

    def start_run(self, trigger: str, date: str | None, now_ms: int) -> int:
        return int(self.c.scalar("INSERT INTO uplink_runs (trigger, for_date, started_ms) VALUES (?, ?, ?)"
                                 " RETURNING id", (trigger, date, now_ms)))

    def finish_run(self, run_id: int, outcome: str, batches: int, acked: int, rejected: int,
                   error: str | None, now_ms: int) -> None:
        self.c.execute("UPDATE uplink_runs SET finished_ms = ?, outcome = ?, batches = ?, acked = ?,"
                       " rejected = ?, error = ? WHERE id = ?",
                       (now_ms, outcome, batches, acked, rejected, error, run_id))

    def last_full_success(self) -> dict[str, Any] | None:
        return self.c.one_dict("SELECT * FROM uplink_runs WHERE outcome = 'done' AND for_date IS NULL"
                               " ORDER BY started_ms DESC, id DESC LIMIT 1")

    def recent_runs(self, limit: int = 5) -> list[dict[str, Any]]:
        return self.c.dicts("SELECT * FROM uplink_runs ORDER BY id DESC LIMIT ?", (limit,))

    def runs_for(self, trigger: str, date: str | None) -> list[dict[str, Any]]:
        """Push runs of a trigger (and local date): the leader test counts the daily push."""
        if date is None:
            return self.c.dicts("SELECT * FROM uplink_runs WHERE trigger = ? ORDER BY id", (trigger,))
        return self.c.dicts("SELECT * FROM uplink_runs WHERE trigger = ? AND for_date = ? ORDER BY id",
                            (trigger, date))
