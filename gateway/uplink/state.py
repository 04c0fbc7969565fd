"""Delivery state (the store's uplink repository, migrations 0100, 0101): what to send,
what was acknowledged.

An uplink item is keyed by its upload id: a record id, or "inv:<invitation id>" for the
default rating of an invitation that closed without any device record. Every function takes
the gateway's Store and runs one unit of work.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.rows import Correction
from gateway.uplink.adapters import INVITATION_ID_PREFIX, UplinkRecord
from gateway.uplink.wire import RecordResult

# Invitation statuses that close a case without a rating (a 'cancelled' invitation was
# withdrawn by the window system or by unpairing: the case gets no default rating).
UNRATED_STATUSES = ("unrated", "expired", "superseded")
# Every delivery state an uplink item can be in (migrations 0100, 0101).
ITEM_STATUSES = ("pending", "sent", "acked", "rejected", "covered")
# Uplink states of an "inv:" item that mean the case's default rating is (being) uploaded.
DEFAULT_TAKEN = ("pending", "sent", "acked")

def day_bounds(date: str, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) in UTC epoch ms of local date YYYY-MM-DD in the hall's zone."""
    d = dt.date.fromisoformat(date)
    start = dt.datetime.combine(d, dt.time(0), tz)
    end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(0), tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


async def select_eligible(store: Store, kinds: tuple[str, ...], after_id: str, limit: int,
                          bounds: tuple[int, int] | None = None) -> list[UplinkRecord]:
    rows = await store.read(lambda tx: tx.uplink.eligible(kinds, after_id, limit, bounds))
    return [UplinkRecord(**row) for row in rows]


async def select_invitation_defaults(store: Store, after_id: str, limit: int, due_before_ms: int,
                                     bounds: tuple[int, int] | None = None) -> list[UplinkRecord]:
    """Default ratings to send for invitations closed without a device record, as records
    of kind 'unrated' keyed "inv:<invitation id>", timed at the invitation's close."""
    rows = await store.read(lambda tx: tx.uplink.invitation_defaults(INVITATION_ID_PREFIX, after_id, limit,
                                                                     due_before_ms, bounds))
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
    case_no: str | None = None         # the case whose rating it carries (None: no case)
    assess_number: int = 1
    # A 差评's reasons as mapped into this batch (tags, text); None: not a 差评 with a complaint.
    reasons: tuple[str, str] | None = None


async def mark_sent(store: Store, batch_id: str, checksum: str, items: list[SendItem], now_ms: int,
                    correction_status: str = "manual") -> None:
    """Record the batch and put its items in state 'sent'. In the same unit: a 差评 whose reasons
    changed since the batch was mapped (the liaison attached them meanwhile) gets a 'reasons'
    correction (correction_status: pending where the adapter can send it, else manual), so
    reasons given at any moment reach the platform."""
    rows = [(i.upload_id, i.default_flag, i.invitation_id, i.case_no, i.assess_number) for i in items]

    def unit(tx: Tx) -> None:
        tx.uplink.mark_sent(batch_id, checksum, rows, now_ms)
        for i in items:
            if i.reasons is None:
                continue
            c = tx.complaints.by_record(i.upload_id)
            if c is not None and (c.tags, c.comment) != i.reasons:
                now = {"tags": c.tags, "text": c.comment, "tag_version": c.tag_version}
                tx.complaints.add_correction(i.upload_id, c.id, "reasons", now, correction_status, now_ms)
    await store.write(unit)


async def mark_covered(store: Store, items: list[tuple[str, str]]) -> None:
    """(record_id, covered_by): a device `unrated` record whose invitation's default rating is
    already uploaded as covered_by ("inv:<id>"); kept, never sent (no second default)."""
    await store.write(lambda tx: tx.uplink.mark_covered(items))


async def note_attempt(store: Store, batch_id: str, error: str | None) -> None:
    await store.write(lambda tx: tx.uplink.note_attempt(batch_id, error))


async def finish_batch(store: Store, batch_id: str, status: str, error: str | None, now_ms: int) -> None:
    await store.write(lambda tx: tx.uplink.finish_batch(batch_id, status, error, now_ms))


@dataclass
class Applied:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    unanswered: int = 0   # in the batch, no result: stays 'sent', re-sent next run
    foreign: int = 0      # results for ids not in the batch: ignored


async def apply_results(store: Store, batch_id: str, sent_ids: list[str], results: list[RecordResult],
                        now_ms: int) -> Applied:
    """Per-record outcome of an answered batch, in one transaction."""
    sent = set(sent_ids)
    out = Applied()
    acked: list[tuple[int, str, str]] = []
    rejected: list[tuple[str, str | None, int, str]] = []
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
    error = ("%d records unanswered" % out.unanswered) if out.unanswered else None
    counts = (out.accepted, out.duplicates, out.rejected)
    await store.write(lambda tx: tx.uplink.apply_results(batch_id, acked, rejected, counts, now_ms, error))
    return out


async def reject(store: Store, items: list[tuple[str, str, str]], origin: str, now_ms: int) -> None:
    """Mark (record_id, code, reason) rejected: by the gateway (unmappable) or a refused batch."""
    await store.write(lambda tx: tx.uplink.reject(items, origin, now_ms))


async def corrections_ready(store: Store, limit: int) -> list[Correction]:
    """Corrections (exclusions, late reasons) whose rating the platform holds, to send now."""
    return await store.read(lambda tx: tx.complaints.corrections_ready(limit))


async def corrections_sent(store: Store, ids: list[int], now_ms: int) -> None:
    await store.write(lambda tx: tx.complaints.set_correction(ids, "sent", now_ms))


async def corrections_done(store: Store, done: list[tuple[int, str, str | None]], now_ms: int) -> None:
    """(correction id, acked | rejected, error) as the platform answered."""
    def unit(tx: Tx) -> None:
        for cid, status, error in done:
            tx.complaints.set_correction([cid], status, now_ms, error)
    await store.write(unit)


async def list_rejections(store: Store, limit: int = 1000) -> list[dict[str, Any]]:
    return (await list_rejections_counted(store, limit))[0]


async def list_rejections_counted(store: Store, limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
    """The rejected items (at most limit) and how many there are in all."""
    return await store.read(lambda tx: tx.uplink.rejections(limit))


async def requeue(store: Store, record_ids: list[str] | None = None, code: str | None = None,
                  actor: str | None = None, at_ms: int | None = None) -> int:
    """Admin: put rejected records back in the queue (all, by id, or by reject code); audited
    under actor when one is given (the console's and the CLI's person)."""
    def unit(tx: Tx) -> int:
        n = tx.uplink.requeue(record_ids, code)
        if actor is not None:
            tx.audit.add(at_ms if at_ms is not None else int(time.time() * 1000), actor, "uplink.requeue",
                         {"records": (record_ids or [])[:50], "selected": len(record_ids or []),
                          "code": code, "requeued": n})
        return n
    return await store.write(unit)


async def status_counts(store: Store) -> dict[str, int]:
    return await store.read(lambda tx: tx.uplink.status_counts())


async def status_counts_upto(store: Store, cap: int) -> dict[str, int]:
    """Items per delivery state, each counted up to cap (a bounded read for the console)."""
    return await store.read(lambda tx: tx.uplink.status_counts_upto(cap, ITEM_STATUSES))


async def start_run(store: Store, trigger: str, date: str | None, now_ms: int) -> int:
    return await store.write(lambda tx: tx.uplink.start_run(trigger, date, now_ms))


async def finish_run(store: Store, run_id: int, outcome: str, batches: int, acked: int, rejected: int,
                     error: str | None, now_ms: int) -> None:
    await store.write(lambda tx: tx.uplink.finish_run(run_id, outcome, batches, acked, rejected, error,
                                                      now_ms))


async def last_full_success(store: Store) -> dict[str, Any] | None:
    """The latest run that pushed everything pending (no date filter) and finished 'done'."""
    return await store.read(lambda tx: tx.uplink.last_full_success())


async def recent_runs(store: Store, limit: int = 5) -> list[dict[str, Any]]:
    return await store.read(lambda tx: tx.uplink.recent_runs(limit))
