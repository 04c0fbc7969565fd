"""Delivery state in SQLite (migrations 0100, 0101): what to send, what was acknowledged.

An uplink item is keyed by its upload id: a record id, or "inv:<invitation id>" for the
default rating of an invitation that closed without any device record. Every function takes
the gateway's Database; writes go through Database.transaction().
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from gateway.store.db import Database
from gateway.uplink.adapters import INVITATION_ID_PREFIX, UplinkRecord
from gateway.uplink.wire import RecordResult

# Invitation statuses that close a case without a rating (a 'cancelled' invitation was
# withdrawn by the window system or by unpairing: the case gets no default rating).
UNRATED_STATUSES = ("unrated", "expired", "superseded")
# Uplink states of an "inv:" item that mean the case's default rating is (being) uploaded.
DEFAULT_TAKEN = ("pending", "sent", "acked")

_ELIGIBLE = """
SELECT r.record_id, r.device_id, r.kind, r.grade, r.invitation_id, r.pressed_at_ms,
       r.received_at_ms, r.staff_account,
       i.case_no, i.task_code, i.task_name,
       COALESCE(NULLIF(i.dept_code, ''), w.dept_code) AS dept_code,
       i.applicant_type, i.staff_account AS invitation_staff,
       u.status AS item_status,
       (SELECT d.status FROM uplink_items d WHERE d.invitation_id = r.invitation_id) AS default_status
FROM records r
LEFT JOIN uplink_items u ON u.record_id = r.record_id
LEFT JOIN invitations i ON i.id = r.invitation_id
LEFT JOIN windows w ON w.window_id = COALESCE(i.window_id, r.window_id)
WHERE r.kind IN (%s)
  AND (u.status IS NULL OR u.status IN ('pending', 'sent'))
  AND r.record_id > ?
  %s
ORDER BY r.record_id
LIMIT ?
"""


def day_bounds(date: str, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) in UTC epoch ms of local date YYYY-MM-DD in the hall's zone."""
    d = dt.date.fromisoformat(date)
    start = dt.datetime.combine(d, dt.time(0), tz)
    end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(0), tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


async def select_eligible(db: Database, kinds: tuple[str, ...], after_id: str, limit: int,
                          bounds: tuple[int, int] | None = None) -> list[UplinkRecord]:
    date_sql = ""
    params: list[Any] = list(kinds) + [after_id]
    if bounds is not None:
        date_sql = "AND r.pressed_at_ms >= ? AND r.pressed_at_ms < ?"
        params += list(bounds)
    sql = _ELIGIBLE % (",".join("?" * len(kinds)), date_sql)
    rows = await db.fetchall(sql, tuple(params + [limit]))
    return [UplinkRecord(**{k: row[k] for k in row.keys()}) for row in rows]


# Invitations due for a default rating: already in flight ("inv:" items pending or sent:
# re-sent until answered, whatever happened to the invitation since), or closed without a
# rating, due (closed long enough ago), with no item yet and no device record that rates or
# unrates them (that record is uploaded instead).
_INVITATION_DEFAULTS = """
SELECT * FROM (
  SELECT u.record_id, i.id AS invitation_id, i.device_id, i.closed_ms, u.status AS item_status,
         i.case_no, i.task_code, i.task_name, COALESCE(NULLIF(i.dept_code, ''), w.dept_code) AS dept_code,
         i.applicant_type, i.staff_account
  FROM uplink_items u JOIN invitations i ON i.id = u.invitation_id
  LEFT JOIN windows w ON w.window_id = i.window_id
  WHERE u.status IN ('pending', 'sent') %(date)s
  UNION ALL
  SELECT '%(prefix)s' || i.id, i.id, i.device_id, i.closed_ms, NULL,
         i.case_no, i.task_code, i.task_name, COALESCE(NULLIF(i.dept_code, ''), w.dept_code),
         i.applicant_type, i.staff_account
  FROM invitations i
  LEFT JOIN windows w ON w.window_id = i.window_id
  WHERE i.status IN ('unrated', 'expired', 'superseded') AND i.closed_ms <= ? %(date)s
    AND NOT EXISTS (SELECT 1 FROM uplink_items u WHERE u.invitation_id = i.id)
    AND NOT EXISTS (SELECT 1 FROM records r WHERE r.invitation_id = i.id AND r.device_id = i.device_id
                    AND r.kind IN ('rated', 'unrated'))
)
WHERE record_id > ?
ORDER BY record_id
LIMIT ?
"""


async def select_invitation_defaults(db: Database, after_id: str, limit: int, due_before_ms: int,
                                     bounds: tuple[int, int] | None = None) -> list[UplinkRecord]:
    """Default ratings to send for invitations closed without a device record, as records
    of kind 'unrated' keyed "inv:<invitation id>", timed at the invitation's close."""
    date_sql = "AND i.closed_ms >= ? AND i.closed_ms < ?" if bounds is not None else ""
    b: list[Any] = list(bounds) if bounds is not None else []
    sql = _INVITATION_DEFAULTS % {"date": date_sql, "prefix": INVITATION_ID_PREFIX}
    rows = await db.fetchall(sql, tuple(b + [due_before_ms] + b + [after_id, limit]))
    return [UplinkRecord(
        record_id=row["record_id"], device_id=row["device_id"], kind="unrated", grade=None,
        invitation_id=row["invitation_id"], pressed_at_ms=row["closed_ms"], received_at_ms=row["closed_ms"],
        staff_account=row["staff_account"], case_no=row["case_no"], task_code=row["task_code"],
        task_name=row["task_name"], dept_code=row["dept_code"], applicant_type=row["applicant_type"],
        invitation_staff=row["staff_account"], item_status=row["item_status"]) for row in rows]


@dataclass(frozen=True)
class SendItem:
    """One record of a batch as the delivery state keeps it."""

    upload_id: str
    default_flag: int
    invitation_id: str | None = None   # set for "inv:" items only


async def mark_sent(db: Database, batch_id: str, checksum: str, items: list[SendItem], now_ms: int) -> None:
    """Record the batch and put its items in state 'sent'."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO uplink_batches (batch_id, created_ms, record_count, checksum, status)"
            " VALUES (?, ?, ?, ?, 'open')", (batch_id, now_ms, len(items), checksum))
        await conn.executemany(
            "INSERT INTO uplink_items (record_id, status, batch_id, attempts, first_sent_ms, last_sent_ms,"
            " default_flag, invitation_id) VALUES (?, 'sent', ?, 1, ?, ?, ?, ?)"
            " ON CONFLICT(record_id) DO UPDATE SET status = 'sent', batch_id = excluded.batch_id,"
            " attempts = attempts + 1, last_sent_ms = excluded.last_sent_ms,"
            " default_flag = excluded.default_flag",
            [(i.upload_id, batch_id, now_ms, now_ms, i.default_flag, i.invitation_id) for i in items])


async def mark_covered(db: Database, items: list[tuple[str, str]]) -> None:
    """(record_id, covered_by): a device `unrated` record whose invitation's default rating is
    already uploaded as covered_by ("inv:<id>"); kept, never sent (no second default)."""
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO uplink_items (record_id, status, default_flag, covered_by)"
            " VALUES (?, 'covered', 1, ?)"
            " ON CONFLICT(record_id) DO UPDATE SET status = 'covered', covered_by = excluded.covered_by",
            items)


async def note_attempt(db: Database, batch_id: str, error: str | None) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE uplink_batches SET attempts = attempts + 1, last_error = ?"
                           " WHERE batch_id = ?", (error, batch_id))


async def finish_batch(db: Database, batch_id: str, status: str, error: str | None, now_ms: int) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE uplink_batches SET status = ?, last_error = ?, finished_ms = ?"
                           " WHERE batch_id = ?", (status, error, now_ms, batch_id))


@dataclass
class Applied:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    unanswered: int = 0   # in the batch, no result: stays 'sent', re-sent next run
    foreign: int = 0      # results for ids not in the batch: ignored


async def apply_results(db: Database, batch_id: str, sent_ids: list[str], results: list[RecordResult],
                        now_ms: int) -> Applied:
    """Per-record outcome of an answered batch, in one transaction."""
    sent = set(sent_ids)
    out = Applied()
    acked: list[tuple[Any, ...]] = []
    rejected: list[tuple[Any, ...]] = []
    seen: set[str] = set()
    for r in results:
        if r.record_id not in sent or r.record_id in seen:
            out.foreign += 1
            continue
        seen.add(r.record_id)
        if r.acked:
            acked.append((now_ms, r.status, r.record_id))
            if r.status == "accepted":
                out.accepted += 1
            else:
                out.duplicates += 1
        else:
            rejected.append((r.code or "rejected", r.reason, now_ms, r.record_id))
            out.rejected += 1
    out.unanswered = len(sent - seen)
    async with db.transaction() as conn:
        await conn.executemany("UPDATE uplink_items SET status = 'acked', acked_ms = ?, ack_status = ?"
                               " WHERE record_id = ?", acked)
        await conn.executemany(
            "UPDATE uplink_items SET status = 'rejected', reject_origin = 'platform', reject_code = ?,"
            " reject_reason = ?, rejected_ms = ? WHERE record_id = ?", rejected)
        await conn.execute(
            "UPDATE uplink_batches SET status = 'answered', attempts = attempts + 1, accepted = ?,"
            " duplicates = ?, rejected = ?, finished_ms = ?, last_error = ? WHERE batch_id = ?",
            (out.accepted, out.duplicates, out.rejected, now_ms,
             ("%d records unanswered" % out.unanswered) if out.unanswered else None, batch_id))
    return out


async def reject(db: Database, items: list[tuple[str, str, str]], origin: str, now_ms: int) -> None:
    """Mark (record_id, code, reason) rejected: by the gateway (unmappable) or a refused batch."""
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO uplink_items (record_id, status, reject_origin, reject_code, reject_reason,"
            " rejected_ms) VALUES (?, 'rejected', ?, ?, ?, ?)"
            " ON CONFLICT(record_id) DO UPDATE SET status = 'rejected',"
            " reject_origin = excluded.reject_origin, reject_code = excluded.reject_code,"
            " reject_reason = excluded.reject_reason, rejected_ms = excluded.rejected_ms",
            [(rid, origin, code, reason, now_ms) for rid, code, reason in items])


async def list_rejections(db: Database, limit: int = 1000) -> list[dict[str, Any]]:
    # "inv:" items have no record: kind 'default' and the invitation's close time.
    rows = await db.fetchall(
        "SELECT u.record_id, COALESCE(r.kind, 'default') AS kind,"
        " COALESCE(r.pressed_at_ms, i.closed_ms) AS pressed_at_ms, u.reject_origin, u.reject_code,"
        " u.reject_reason, u.rejected_ms, u.batch_id, u.requeued FROM uplink_items u"
        " LEFT JOIN records r ON r.record_id = u.record_id LEFT JOIN invitations i ON i.id = u.invitation_id"
        " WHERE u.status = 'rejected' ORDER BY u.rejected_ms, u.record_id LIMIT ?", (limit,))
    return [{k: row[k] for k in row.keys()} for row in rows]


async def requeue(db: Database, record_ids: list[str] | None = None, code: str | None = None) -> int:
    """Admin: put rejected records back in the queue (all, by id, or by reject code)."""
    where, params = "status = 'rejected'", []
    if record_ids is not None:
        where += " AND record_id IN (%s)" % ",".join("?" * len(record_ids))
        params += record_ids
    if code is not None:
        where += " AND reject_code = ?"
        params.append(code)
    async with db.transaction() as conn:
        cur = await conn.execute(
            "UPDATE uplink_items SET status = 'pending', requeued = requeued + 1 WHERE " + where,
            tuple(params))
        return cur.rowcount


async def status_counts(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT status, count(*) AS n FROM uplink_items GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}


async def start_run(db: Database, trigger: str, date: str | None, now_ms: int) -> int:
    async with db.transaction() as conn:
        cur = await conn.execute("INSERT INTO uplink_runs (trigger, for_date, started_ms) VALUES (?, ?, ?)",
                                 (trigger, date, now_ms))
        return int(cur.lastrowid or 0)


async def finish_run(db: Database, run_id: int, outcome: str, batches: int, acked: int, rejected: int,
                     error: str | None, now_ms: int) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE uplink_runs SET finished_ms = ?, outcome = ?, batches = ?, acked = ?, rejected = ?,"
            " error = ? WHERE id = ?", (now_ms, outcome, batches, acked, rejected, error, run_id))


async def last_full_success(db: Database) -> dict[str, Any] | None:
    """The latest run that pushed everything pending (no date filter) and finished 'done'."""
    row = await db.fetchone("SELECT * FROM uplink_runs WHERE outcome = 'done' AND for_date IS NULL"
                            " ORDER BY started_ms DESC, id DESC LIMIT 1")
    return None if row is None else {k: row[k] for k in row.keys()}
