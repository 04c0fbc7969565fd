"""The case feed: window systems (综合受理系统) report every 办件 they handle, invited to a
rating or not, so that cases never offered a rating are counted. The seed's main complaint
is clerks who do not invite citizens; without the feed those cases are invisible.

A report is a case number with when it was accepted (受理) and, when known, finished (办结),
where (hall, window), by whom (clerk account), for which department and service item, and
its status (accepted | finished | withdrawn: a withdrawn case is not counted as handled).
Reports are idempotent by case number: the same case reported again is `unchanged`, or
`updated` in place when a fact changed (e.g. its finish time arrived). Nothing else is
derived here: bulletins (gateway/bulletin.py) and supervision (gateway/supervision.py) read
the cases table beside invitations and records.

Times: an ISO 8601 time with its offset ("2026-06-01T09:15:00+08:00"), a local time of the
case's hall ("2026-06-01 09:15:00", the provinces' yyyy-MM-dd HH:mm:ss), or epoch ms.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gateway import org
from gateway.bindings import audit, check_text
from gateway.clock import now_ms
from gateway.config import HallConfig
from gateway.errors import BadInput, NotFound
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.rows import CaseRow

STATUSES = ("accepted", "finished", "withdrawn")
MAX_BATCH = 1000
FIELDS = {"case_no", "accepted_at", "finished_at", "status", "hall", "window", "staff_account", "staff_name",
          "dept_code", "task_code", "task_name"}
_LOCAL = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?")
# Times outside this are a typo, not a case (the platform refuses them too).
EARLIEST_MS = int(dt.datetime(2015, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)


def parse_time(value: Any, tz: dt.tzinfo, name: str) -> int:
    """Epoch ms of a reported time (see the module docstring); BadInput naming the field."""
    if type(value) is int:
        ms = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            t = dt.datetime.fromisoformat(text)
        except ValueError:
            raise BadInput('%s must be a time like "2026-06-01 09:15:00" (hall local time), '
                           '"2026-06-01T09:15:00+08:00" or epoch ms, got %r' % (name, value[:40]),
                           "bad_time") from None
        if t.tzinfo is None:
            if not _LOCAL.fullmatch(text):
                raise BadInput("%s must have a time of day, got %r" % (name, value[:40]), "bad_time")
            t = t.replace(tzinfo=tz)
        ms = int(t.timestamp() * 1000)
    else:
        raise BadInput("%s must be a time string or epoch ms" % name, "bad_time")
    if not EARLIEST_MS <= ms <= now_ms() + 86_400_000:
        raise BadInput("%s is out of range (2015 until tomorrow)" % name, "bad_time")
    return ms


@dataclass(frozen=True)
class CaseReport:
    """One case as given (validated shape; references are resolved by `report_cases`)."""

    case_no: str
    accepted_at: Any
    finished_at: Any = None
    status: str = "finished"
    hall: str | None = None
    window: str | None = None
    staff_account: str | None = None
    staff_name: str = ""
    dept_code: str = ""
    task_code: str = ""
    task_name: str = ""

    @classmethod
    def from_json(cls, body: Any, where: str = "") -> CaseReport:
        p = where + ": " if where else ""
        if not isinstance(body, dict):
            raise BadInput(p + "a case must be a JSON object", "bad_case")
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise BadInput(p + "unknown field %s" % unknown[0], "unknown_field")
        for k in ("case_no", "accepted_at"):
            if body.get(k) is None:
                raise BadInput(p + "%s is required" % k, "missing_field")
        try:
            status = body.get("status", "finished")
            if status not in STATUSES:
                raise BadInput("status must be one of %s" % ", ".join(STATUSES), "bad_status")
            text = {k: check_text(k, body[k], 0 if k != "case_no" else 1, lim, max_bytes=lim)
                    for k, lim in (("case_no", 64), ("hall", 32), ("window", 16), ("staff_account", 64),
                                   ("staff_name", 64), ("dept_code", 18), ("task_code", 64),
                                   ("task_name", 200)) if body.get(k) is not None}
        except BadInput as e:
            raise BadInput(p + str(e), e.code) from None
        return cls(case_no=text["case_no"], accepted_at=body["accepted_at"],
                   finished_at=body.get("finished_at"),
                   status=status, hall=text.get("hall") or None, window=text.get("window") or None,
                   staff_account=text.get("staff_account") or None, staff_name=text.get("staff_name", ""),
                   dept_code=text.get("dept_code", ""), task_code=text.get("task_code", ""),
                   task_name=text.get("task_name", ""))


def parse_batch(body: Any) -> list[CaseReport]:
    """One case object, or {"cases": [...]} with 1..MAX_BATCH cases (each checked; the first bad
    one is named by its index)."""
    if isinstance(body, dict) and "cases" in body:
        if set(body) != {"cases"}:
            raise BadInput("a batch is {\"cases\": [...]} and nothing else", "unknown_field")
        items = body["cases"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise BadInput("cases must be a list of 1..%d cases" % MAX_BATCH, "bad_batch")
        reports = [CaseReport.from_json(c, "cases[%d]" % i) for i, c in enumerate(items)]
        seen: set[str] = set()
        for i, r in enumerate(reports):
            if r.case_no in seen:
                raise BadInput("cases[%d]: case %s twice in one batch" % (i, r.case_no), "duplicate_case")
            seen.add(r.case_no)
        return reports
    return [CaseReport.from_json(body)]


@dataclass
class FeedResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"created": len(self.created), "updated": len(self.updated), "unchanged": len(self.unchanged)}


def _resolve(tx: Tx, default: HallConfig, r: CaseReport, halls: org.HallDirectory, where: str,
             t: int, actor: str) -> CaseRow:
    p = where + ": " if where else ""
    try:
        hall_id = r.hall
        window_dept = ""
        if r.window is not None:
            w = tx.org.get_window(r.window)
            if w is not None:
                place_hall, window_dept = org.place_at(tx, w.window_id, t)
                if hall_id is None:
                    hall_id = place_hall
        if hall_id is not None and org.find_hall(tx, default, hall_id) is None:
            raise BadInput("unknown hall %s" % hall_id, "unknown_hall")
        tz = halls.get(tx, hall_id).tz
        accepted = parse_time(r.accepted_at, tz, "accepted_at")
        finished = None if r.finished_at is None else parse_time(r.finished_at, tz, "finished_at")
        if finished is not None and finished < accepted:
            raise BadInput("finished_at is before accepted_at", "bad_time")
        dept = org.check_dept_code(r.dept_code) if r.dept_code else window_dept
    except BadInput as e:
        raise BadInput(p + str(e), e.code) from None
    return CaseRow(r.case_no, hall_id, r.window, r.staff_account, r.staff_name, dept, r.task_code,
                   r.task_name,
                   r.status, accepted, finished, t, t, actor)


async def report_cases(store: Store, default: HallConfig, reports: Sequence[CaseReport], actor: str,
                       at_ms: int | None = None) -> FeedResult:
    """Store the reported cases in one unit of work (all or none: a bad case refuses the batch,
    named by its index), idempotent by case number; one audit row per call."""
    t = now_ms() if at_ms is None else at_ms
    many = len(reports) > 1

    def unit(tx: Tx) -> FeedResult:
        halls = org.HallDirectory(default)
        rows = [_resolve(tx, default, r, halls, "cases[%d]" % i if many else "", t, actor)
                for i, r in enumerate(reports)]
        known = tx.cases.get_many([r.case_no for r in rows])
        out = FeedResult()
        new: list[CaseRow] = []
        changed: list[CaseRow] = []
        for row in rows:
            old = known.get(row.case_no)
            if old is None:
                new.append(row)
                out.created.append(row.case_no)
            elif old.same_report(row):
                out.unchanged.append(row.case_no)
            else:
                changed.append(replace(row, reported_ms=old.reported_ms, reported_by=old.reported_by))
                out.updated.append(row.case_no)
        tx.cases.insert_many(new)
        tx.cases.update_many(changed)
        if new or changed:
            audit(tx, actor, "case.report", rows[0].case_no if len(rows) == 1 else "(batch)",
                  {**out.counts(), "first": rows[0].case_no, "last": rows[-1].case_no}, t)
        return out
    return await store.write(unit)


async def get_case(store: Store, case_no: str) -> dict[str, Any]:
    """A case with its invitations (ids, status, created) — what the window system may check."""
    def read(tx: Tx) -> dict[str, Any] | None:
        c = tx.cases.get(case_no)
        if c is None:
            return None
        invs = tx.invitations.for_case(case_no)
        return {**c.as_dict(), "invitations": [{"invitation_id": i.id, "status": i.status,
                                                 "created_ms": i.created_ms} for i in invs]}
    found = await store.read(read)
    if found is None:
        raise NotFound("unknown case %s" % case_no, "unknown_case")
    return found
