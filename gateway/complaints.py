"""差评 work orders (issue 16): every 不满意 / 非常不满意 rating is worked to its end, on time,
and every step can be proven.

One service (`ComplaintService`) for the CLI (`gateway/cli_complaints.py`), the HTTP API
(`gateway/api/complaints.py`), the web console and the QR channel; nothing else writes
complaints. The actor of every action is recorded (complaint history + audit log).

The work order (`state`), the verification (`verdict`) and the clerk's appeal
(`appeal_state`) are three fields, each with its own rules:

    state:   opened -> contacted -> rectifying -> rectified -> callback_done -> closed
             (rectifying starts once the citizen was contacted AND the 差评 verified valid, in
             either order; a 差评 verified not valid, or a rating excluded, closes the order)
    verdict: pending -> valid | invalid (with a reason: mistaken press, malicious, not this
             department's matter, other)
    appeal:  none -> appealed -> under_review -> upheld (the 差评 stands) | overturned (the
             rating was mistaken or malicious: excluded from statistics, kept, the platform told)

Deadlines are working days in the hall's zone (gateway/workdays.py; docs/complaints.md): contact
1 and rectify 5 (15 when complex) from the rating, appeal 3 from the clerk being notified (the
opening), review 7 from the appeal. A deadline a calendar cannot compute (a year it does not
know) is stored as missing with the calendar's error: the complaint still opens, the gap is
shown and announced, and the leader's job fills it in once the calendar knows the year.

How a complaint opens, never lost and never doubled: ingest calls `ComplaintHook` inside its
batch's unit of work, after the batch's new records are inserted (gateway/ingest.py). Only new
records reach it (ingest dedupes re-sent ones by record id before), and `complaints.record_id`
is UNIQUE, so a re-sent record or a second path never opens a second complaint; the complaint
commits with its record or not at all (then nothing was acked and the device re-sends). We
chose the in-transaction hook over a follow-up job so a complaint exists the moment its rating
does. The hook runs in a savepoint: a bug in it cannot stop ingest (the record is stored), and
the leader's periodic job sweeps for any 差评 rating without its complaint (`sweep`), so a
failed hook, or a rating stored by another path, still gets its complaint. Telling people
(the duty manager) happens after the commit, in the same job: it announces every complaint
not yet announced, records that it did (`complaint_notices`), and uses a stable notification
id so a webhook receiver drops a repeat after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from gateway.clock import now_ms
from gateway.config import Config, ConfigError, HallConfig
from gateway.errors import BadInput, Conflict, NotFound
from gateway.notify import Notification, Notifier, Severity
from gateway.org import HallDirectory, org_at_press_time
from gateway.sectioncheck import Section, SettingsError
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.rows import Complaint, Correction, NewComplaint
from gateway.workdays import UnknownYearError, WorkCalendar
from protocol.grades import BAD, GRADES, NAMES_ZH

log = logging.getLogger("gateway.complaints")

STATES = ("opened", "contacted", "rectifying", "rectified", "callback_done", "closed")
VERDICTS = ("pending", "valid", "invalid")
APPEAL_STATES = ("none", "appealed", "under_review", "upheld", "overturned")
# Why a 差评 is not valid (核实), with the words the hall uses.
INVALID_REASONS = {
    "mistaken_press": "误评（按错）",
    "malicious": "恶意评价",
    "not_our_matter": "非本部门事项",
    "other": "其他",
}
# Why a rating is excluded from statistics (never deleted).
EXCLUDE_REASONS = {"mistaken_press": "误评", "malicious": "恶意评价"}
CHANNELS = ("device", "qr")
REASON_SOURCES = ("liaison", "callback", "qr")
STATE_ZH = {
    "opened": "待联系",
    "contacted": "已联系",
    "rectifying": "整改中",
    "rectified": "已整改",
    "callback_done": "已回访",
    "closed": "已办结",
}
DEADLINES = ("contact", "rectify", "appeal", "review")
DEADLINE_ZH = {"contact": "联系群众", "rectify": "整改反馈", "appeal": "申诉", "review": "复核"}
ANNOUNCE_WITHIN_MS = 7 * 86_400_000
_TAG_CODE = re.compile(r"[0-9A-Za-z_-]{1,32}")
_NOTE_MAX = 1000
TEXT_MAX = 500  # writingEvaluation: the adapters' schema allows 500 characters


# ---- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tag:
    code: str
    name: str


@dataclass(frozen=True)
class TagSet:
    """One version of the province's 差评 tags (evalDetail codes), per grade."""

    version: str
    source: str
    by_grade: Mapping[str, tuple[Tag, ...]]

    def find(self, grade: str, code: str) -> Tag | None:
        return next((t for t in self.by_grade.get(grade, ()) if t.code == code), None)


@dataclass(frozen=True)
class ComplaintSettings:
    """The [complaints] section (docs/complaints.md)."""

    contact_days: int = 1
    rectify_days: int = 5
    complex_days: int = 15
    appeal_days: int = 3
    review_days: int = 7
    follow_up_days: int = 5
    due_soon_h: int = 24  # a deadline this close is "due soon" (notified once)
    check_every_s: float = 2.0  # the leader's job: announce, sweep, due-soon / overdue
    tag_version: str | None = None  # the tag set in force for new reasons
    tag_sets: Mapping[str, TagSet] = field(default_factory=dict)

    @property
    def tags_in_force(self) -> TagSet | None:
        return self.tag_sets.get(self.tag_version) if self.tag_version else None

    @classmethod
    def from_config(cls, cfg: Config) -> ComplaintSettings:
        try:
            return cls.from_mapping(cfg.raw.get("complaints"))
        except SettingsError as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def from_mapping(cls, data: object) -> ComplaintSettings:
        """Check a whole [complaints] table; SettingsError names every problem::

        [complaints]
        tag_version = "2026.1"
        [complaints.tag_sets."2026.1"]
        source = "the province's notice naming the tags"
        d  = [ { code = "D01", name = "服务态度差" } ]
        vd = [ { code = "V01", name = "推诿扯皮" } ]
        """
        sec = Section("complaints", data)
        vals = {
            k: sec.get_int(k, d, lo, hi)
            for k, d, lo, hi in (
                ("contact_days", 1, 1, 60),
                ("rectify_days", 5, 1, 60),
                ("complex_days", 15, 1, 120),
                ("appeal_days", 3, 1, 60),
                ("review_days", 7, 1, 60),
                ("follow_up_days", 5, 1, 60),
                ("due_soon_h", 24, 0, 720),
            )
        }
        every = sec.get_float("check_every_s", 2.0, 0.05, 3600.0)
        version = sec.get_str("tag_version", "", nonempty=True) or None
        sets: dict[str, TagSet] = {}
        tsec = sec.sub("tag_sets")
        for key in list(tsec.data):
            vsec = tsec.sub(str(key))
            source = vsec.get_str("source", "", nonempty=True)
            if not vsec.has("source"):
                vsec.problem("source", "is required: name the document the tags come from")
            by_grade: dict[str, tuple[Tag, ...]] = {}
            for grade in BAD:
                raw = vsec.raw(grade)
                if raw is None:
                    vsec.problem(grade, "is required (a list of { code, name } tables)")
                    continue
                if not isinstance(raw, list):
                    vsec.problem(grade, "must be a list of { code = ..., name = ... } tables")
                    continue
                tags: list[Tag] = []
                for i, item in enumerate(raw):
                    it = vsec.item(f"{vsec.prefix}{grade}[{i}]", item)
                    code = it.get_str("code", "", nonempty=True)
                    name = it.get_str("name", "", nonempty=True)
                    if not it.has("code") or not it.has("name"):
                        it.problem("code", "and name are required")
                    elif code and not _TAG_CODE.fullmatch(code):
                        it.problem("code", f"'{code}' must be 1-32 of [0-9A-Za-z_-] (an evalDetail code)")
                    elif any(t.code == code for t in tags):
                        it.problem("code", f"'{code}' appears twice")
                    it.check_unknown()
                    if code and name:
                        tags.append(Tag(code, name))
                by_grade[grade] = tuple(tags)
            vsec.check_unknown()
            sets[str(key)] = TagSet(str(key), source, by_grade)
        tsec.check_unknown()
        if version is not None and version not in sets:
            sec.problem(
                "tag_version", f"'{version}' is not one of the tag_sets ({', '.join(sets) or 'none'})"
            )
        if sets and version is None:
            sec.problem("tag_version", "is required when tag_sets are given (the set in force)")
        if vals["complex_days"] < vals["rectify_days"]:
            sec.problem("complex_days", "must not be shorter than rectify_days")
        sec.finish()
        return cls(tag_version=version, tag_sets=sets, check_every_s=every, **vals)


# ---- the organisation at press time ---------------------------------------------------------


@dataclass(frozen=True)
class OrgSnapshot:
    hall_id: str
    hall_name: str
    hall_tz: str
    dept_code: str
    dept_name: str
    window_id: str
    window_name: str
    staff_account: str
    staff_name: str


def org_at_press(tx: Tx, rec: Mapping[str, Any], invitation_dept: str, hall: HallConfig) -> OrgSnapshot:
    """The hall, department, window and clerk a rating belongs to, at its press: the district's
    press-time attribution (gateway.org.org_at_press_time: the binding at the press gave the
    window and clerk, the window's place at the press the hall and department; names as they
    are today), so a work order sits where the bulletins count its rating. The invitation's
    department only fills in when the press has none; hall: the config's default hall."""
    p = org_at_press_time(tx, str(rec["record_id"]), hall)
    h = HallDirectory(hall).get(tx, p.hall_id)
    dept, dept_name = p.dept_code, p.dept_name
    if not dept and invitation_dept:
        d = tx.org.get_department(invitation_dept)
        dept, dept_name = invitation_dept, d.name if d is not None else invitation_dept
    return OrgSnapshot(
        p.hall_id,
        p.hall_name,
        h.timezone,
        dept,
        dept_name,
        p.window_id or "",
        p.window_name,
        p.staff_account or "",
        p.staff_name,
    )


# ---- time ------------------------------------------------------------------------------------


def fmt_time(ms: int | None, tz: ZoneInfo) -> str | None:
    """A time with its zone, e.g. '2026-09-30 16:00+08:00'."""
    if ms is None:
        return None
    return _iso(dt.datetime.fromtimestamp(ms / 1000, tz))


def _iso(t: dt.datetime) -> str:
    return t.isoformat(sep=" ", timespec="minutes")


def fmt_deadline(ms: int | None, tz: ZoneInfo) -> str | None:
    """A deadline (the local midnight ending its last day) as 'YYYY-MM-DD 24:00+08:00'."""
    if ms is None:
        return None
    last = dt.datetime.fromtimestamp((ms - 1) / 1000, tz)
    off = _iso(last)[-6:]
    return "%s 24:00%s" % (last.date().isoformat(), off)


@dataclass(frozen=True)
class DeadlineStatus:
    kind: str
    due_ms: int | None
    status: str  # open | due_soon | overdue | met | late | n/a | unknown | expired | used

    @property
    def live(self) -> bool:
        return self.status in ("open", "due_soon", "overdue", "unknown")


def deadline_statuses(c: Complaint, now: int, due_soon_ms: int) -> list[DeadlineStatus]:
    """Each deadline of c at `now`: met / late once done; open / due_soon / overdue while it
    runs; n/a when it no longer applies; unknown when the calendar could not compute it. The
    appeal period is a right, not a duty: expired (not overdue) when unused, used once used."""
    out = []
    closed = c.state == "closed"

    def running(due: int | None) -> str:
        if due is None:
            return "unknown"
        if now >= due:
            return "overdue"
        return "due_soon" if now >= due - due_soon_ms else "open"

    def done(at: int, due: int | None) -> str:
        return "met" if due is None or at < due else "late"

    # contact
    if c.contacted_ms is not None:
        st = done(c.contacted_ms, c.contact_due_ms)
    else:
        st = "n/a" if closed else running(c.contact_due_ms)
    out.append(DeadlineStatus("contact", c.contact_due_ms, st))
    # rectify
    if c.rectified_ms is not None:
        st = done(c.rectified_ms, c.rectify_due_ms)
    else:
        st = "n/a" if closed or c.verdict == "invalid" else running(c.rectify_due_ms)
    out.append(DeadlineStatus("rectify", c.rectify_due_ms, st))
    # appeal (the clerk's right)
    if c.appealed_ms is not None:
        st = "used"
    elif c.verdict == "invalid" or c.appeal_state != "none":
        st = "n/a"
    elif c.appeal_due_ms is None:
        st = "unknown"
    else:
        st = "expired" if now >= c.appeal_due_ms else "open"
    out.append(DeadlineStatus("appeal", c.appeal_due_ms, st))
    # review
    if c.decided_ms is not None:
        st = done(c.decided_ms, c.review_due_ms)
    elif c.appeal_state in ("appealed", "under_review"):
        st = running(c.review_due_ms)
    else:
        st = "n/a"
    out.append(DeadlineStatus("review", c.review_due_ms, st))
    return out


# ---- the service -----------------------------------------------------------------------------

Change = dict[str, Any]


@dataclass(frozen=True)
class Opened:
    complaint: Complaint
    created: bool


class ComplaintService:
    """Every complaint action, as units of work on the store. Times default to the service's
    clock (injectable: tests live through a holiday in a second)."""

    def __init__(
        self,
        store: Store,
        settings: ComplaintSettings,
        calendar: WorkCalendar,
        hall: HallConfig,
        *,
        corrections: str | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """corrections: how the platform learns of an exclusion or of reasons given after the
        rating went up: "send" (the adapter can: gateway.uplink.adapters.Adapter.can_correct),
        "manual" (listed for someone to do in the platform's back office), None (no uplink)."""
        self.store = store
        self.settings = settings
        self.calendar = calendar
        self.hall = hall
        self.corrections_mode = corrections
        self.clock = clock

    @classmethod
    def from_config(cls, store: Store, cfg: Config, clock: Callable[[], int] = now_ms) -> ComplaintService:
        from gateway.uplink.adapters import corrections_mode

        settings = cfg.sections.get("complaints") or ComplaintSettings.from_config(cfg)
        calendar = WorkCalendar(cfg.sections.get("calendar"))
        return cls(
            store,
            settings,
            calendar,
            cfg.hall,
            corrections=corrections_mode(cfg.sections.get("uplink")),
            clock=clock,
        )

    @property
    def due_soon_ms(self) -> int:
        return self.settings.due_soon_h * 3_600_000

    # -- deadlines ---------------------------------------------------------------------------

    def _due(self, start_ms: int, days: int, tz: str, errors: list[str]) -> int | None:
        try:
            return self.calendar.add_working_days_ms(start_ms, days, ZoneInfo(tz))
        except UnknownYearError as e:
            if str(e) not in errors:
                errors.append(str(e))
            return None

    def _rectify_days(self, complex_: bool) -> int:
        return self.settings.complex_days if complex_ else self.settings.rectify_days

    # -- opening -----------------------------------------------------------------------------

    def open_in_tx(
        self,
        tx: Tx,
        record_id: str,
        channel: str = "device",
        at_ms: int | None = None,
        actor: str = "gateway",
    ) -> Opened | None:
        """Open the complaint of a rating inside the caller's unit of work (ingest's batch, the
        QR channel's submission, the sweep). None when the record is not a 差评 rating (not its
        invitation's one rating, or not graded d / vd); the existing complaint (created False)
        when it has one already."""
        if channel not in CHANNELS:
            raise ValueError("unknown channel %r" % channel)
        old = tx.complaints.by_record(record_id)
        if old is not None:
            return Opened(old, False)
        rec = tx.records.get(record_id)
        if rec is None or rec.get("grade") not in BAD or not rec.get("invitation_id"):
            return None
        inv = tx.invitations.get(rec["invitation_id"])
        if inv is None or inv.status != "rated" or inv.record_id != record_id:
            return None
        t = self.clock() if at_ms is None else at_ms
        org = org_at_press(tx, rec, inv.dept_code, self.hall)
        rated = int(rec["pressed_at_ms"])
        errors: list[str] = []
        n = NewComplaint(
            record_id=record_id,
            channel=channel,
            grade=str(rec["grade"]),
            assess_number=inv.assess_number,
            invitation_id=inv.id,
            case_no=inv.case_no,
            task_code=inv.task_code,
            task_name=inv.task_name,
            rated_ms=rated,
            opened_ms=t,
            hall_id=org.hall_id,
            hall_name=org.hall_name,
            hall_tz=org.hall_tz,
            dept_code=org.dept_code,
            dept_name=org.dept_name,
            window_id=org.window_id,
            window_name=org.window_name,
            staff_account=org.staff_account,
            staff_name=org.staff_name,
            notified_ms=t,
            contact_due_ms=self._due(rated, self.settings.contact_days, org.hall_tz, errors),
            rectify_due_ms=self._due(rated, self.settings.rectify_days, org.hall_tz, errors),
            appeal_due_ms=self._due(t, self.settings.appeal_days, org.hall_tz, errors),
            calendar_error="; ".join(errors) or None,
        )
        cid = tx.complaints.open(n)
        if cid is None:  # opened meanwhile by another path in this transaction's view
            old = tx.complaints.by_record(record_id)
            return None if old is None else Opened(old, False)
        tx.complaints.add_event(
            cid,
            t,
            actor,
            "open",
            None,
            "opened",
            "",
            {"grade": n.grade, "case_no": n.case_no, "channel": channel, "assess_number": n.assess_number},
        )
        tx.audit.add(
            t,
            actor,
            "complaint.open",
            {"subject": str(cid), "record_id": record_id, "case_no": n.case_no, "grade": n.grade},
        )
        c = tx.complaints.get(cid)
        assert c is not None
        return Opened(c, True)

    async def open_for_record(
        self, record_id: str, channel: str = "device", actor: str = "gateway", at_ms: int | None = None
    ) -> Opened | None:
        return await self.store.write(lambda tx: self.open_in_tx(tx, record_id, channel, at_ms, actor))

    async def sweep(self, limit: int = 100) -> list[Complaint]:
        """Open the complaint of every 差评 rating that has none (the hook failed, or the rating
        came by another path): the safety net behind the ingest hook."""
        missing = await self.store.read(lambda tx: tx.complaints.bad_ratings_without_complaint(limit))
        opened: list[Complaint] = []
        for rid in missing:
            got = await self.open_for_record(rid)
            if got is not None and got.created:
                log.warning(
                    "complaint %d opened by the sweep for rating %s (its hook did not)", got.complaint.id, rid
                )
                opened.append(got.complaint)
        return opened

    # -- reading -----------------------------------------------------------------------------

    async def get(self, complaint_id: int) -> Complaint:
        return await self.store.read(lambda tx: self._get(tx, complaint_id))

    @staticmethod
    def _get(tx: Tx, complaint_id: int) -> Complaint:
        if isinstance(complaint_id, bool) or not isinstance(complaint_id, int) or complaint_id < 1:
            raise BadInput("complaint id must be a positive integer", "bad_complaint_id")
        c = tx.complaints.get(complaint_id)
        if c is None:
            raise NotFound("unknown complaint %d" % complaint_id, "unknown_complaint")
        return c

    async def show(self, complaint_id: int) -> dict[str, Any]:
        """One complaint with its deadlines, history, exclusion and corrections (the view)."""

        def read(tx: Tx) -> tuple[Complaint, list[dict[str, Any]], dict[str, Any] | None, list[Correction]]:
            c = self._get(tx, complaint_id)
            return (
                c,
                tx.complaints.events(c.id),
                tx.complaints.exclusion(c.record_id),
                tx.complaints.corrections(complaint_id=c.id)[0],
            )

        c, events, excl, corr = await self.store.read(read)
        view = self.view(c)
        tz = ZoneInfo(c.hall_tz)
        view["history"] = [{**e, "at": fmt_time(e["at_ms"], tz)} for e in events]
        view["exclusion"] = None if excl is None else {**excl, "at": fmt_time(excl["at_ms"], tz)}
        view["corrections"] = [self.correction_view(k, tz) for k in corr]
        return view

    async def search(
        self,
        states: Sequence[str] | None = None,
        open_only: bool = False,
        due: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
        halls: Sequence[str] | None = None,
        depts: Sequence[str] | None = None,
        before: tuple[int, int] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Complaints (newest first) as views, and how many matched; due = "soon" | "overdue"
        keeps those with a deadline in that state (every live one is considered); halls /
        depts keep those of these halls / departments (the console's scopes and filters);
        before = (opened_ms, id) of the last one shown: the next (older) page."""
        for s in states or ():
            if s not in STATES:
                raise BadInput("state must be one of %s" % ", ".join(STATES), "bad_state")
        if due not in (None, "soon", "overdue"):
            raise BadInput("due must be soon or overdue", "bad_due")
        if not 1 <= limit <= 100000:
            raise BadInput("limit must be in 1..100000", "bad_limit")
        if due is None:
            rows, total = await self.store.read(
                lambda tx: tx.complaints.find(
                    states, open_only, since_ms, until_ms, limit, halls, depts, before
                )
            )
            return [self.view(c) for c in rows], total
        want = "due_soon" if due == "soon" else "overdue"
        now = self.clock()
        live = await self.store.read(lambda tx: tx.complaints.with_live_deadlines())
        hits = [
            c
            for c in live
            if (not states or c.state in states)
            and (halls is None or c.hall_id in halls)
            and (depts is None or c.dept_code in depts)
            and any(d.status == want for d in deadline_statuses(c, now, self.due_soon_ms))
        ]
        hits.sort(key=lambda c: (c.opened_ms, c.id), reverse=True)
        shown = [c for c in hits if before is None or (c.opened_ms, c.id) < before]
        return [self.view(c, now) for c in shown[:limit]], len(hits)

    def view(self, c: Complaint, now: int | None = None) -> dict[str, Any]:
        """A complaint for people and programs: every field, times with their zone, deadlines."""
        tz = ZoneInfo(c.hall_tz)
        t = self.clock() if now is None else now
        d = c.as_dict()
        d["grade_zh"] = NAMES_ZH.get(c.grade, c.grade)
        d["state_zh"] = STATE_ZH[c.state]
        d["tags"] = [x for x in c.tags.split(",") if x]
        for k in (
            "rated",
            "opened",
            "notified",
            "contacted",
            "verified",
            "rectified",
            "callback",
            "closed",
            "appealed",
            "review_started",
            "decided",
        ):
            d[k + "_at"] = fmt_time(getattr(c, k + "_ms"), tz)
        d["deadlines"] = {
            s.kind: {
                "due": fmt_deadline(s.due_ms, tz),
                "due_ms": s.due_ms,
                "status": s.status,
                "label": DEADLINE_ZH[s.kind],
            }
            for s in deadline_statuses(c, t, self.due_soon_ms)
        }
        ts = self.settings.tag_sets.get(c.tag_version or "")
        names = []
        for code in d["tags"]:
            tag = ts.find(c.grade, code) if ts is not None else None
            names.append(tag.name if tag is not None else code)
        d["tag_names"] = names
        return d

    @staticmethod
    def correction_view(k: Correction, tz: ZoneInfo) -> dict[str, Any]:
        v = k.as_dict()
        v["created_at"] = fmt_time(k.created_ms, tz)
        v["done_at"] = fmt_time(k.done_ms, tz)
        return v

    # -- transitions -------------------------------------------------------------------------

    async def _act(
        self,
        complaint_id: int,
        action: str,
        actor: str,
        note: str,
        change: Callable[[Tx, Complaint, int], Change],
        at_ms: int | None,
        detail: Mapping[str, Any] | None = None,
    ) -> Complaint:
        actor = _check_actor(actor)
        t = self.clock() if at_ms is None else at_ms
        return await self.store.write(
            lambda tx: self._act_in_tx(tx, complaint_id, action, actor, note, change, t, detail)
        )

    def _act_in_tx(
        self,
        tx: Tx,
        complaint_id: int,
        action: str,
        actor: str,
        note: str,
        change: Callable[[Tx, Complaint, int], Change],
        t: int,
        detail: Mapping[str, Any] | None = None,
    ) -> Complaint:
        c = self._get(tx, complaint_id)
        changes = change(tx, c, t)
        if not tx.complaints.update(c.id, c.version, changes, t):
            raise Conflict(
                "complaint %d was changed by someone else meanwhile; look again and retry" % c.id,
                "changed_meanwhile",
            )
        to = changes.get("state", c.state)
        extra = {k: v for k, v in changes.items() if not k.endswith("_ms") and k != "state"}
        full = {**extra, **(detail or {})}
        tx.complaints.add_event(c.id, t, actor, action, c.state, to, note, full)
        tx.audit.add(
            t,
            actor,
            "complaint." + action,
            {"subject": str(c.id), "from": c.state, "to": to, "note": note, **full},
        )
        out = tx.complaints.get(c.id)
        assert out is not None
        return out

    def contact(
        self, complaint_id: int, actor: str, note: str, at_ms: int | None = None
    ) -> Coroutine[Any, Any, Complaint]:
        """The citizen was contacted (联系): how, and what was learned."""
        note = _note(note, required=True)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            _need(c, "contact", state=("opened",))
            return {"state": "rectifying" if c.verdict == "valid" else "contacted", "contacted_ms": t}

        return self._act(complaint_id, "contact", actor, note, change, at_ms)

    def verify(
        self,
        complaint_id: int,
        actor: str,
        valid: bool,
        reason: str | None = None,
        note: str = "",
        complex_: bool = False,
        at_ms: int | None = None,
    ) -> Coroutine[Any, Any, Complaint]:
        """核实: a valid 差评 (complex: rectify within complex_days), or not valid with a reason."""
        if valid and reason is not None:
            raise BadInput(
                "a valid 差评 takes no reason (reasons are for a 差评 found not valid)", "bad_reason"
            )
        if not valid:
            if reason not in INVALID_REASONS:
                raise BadInput("reason must be one of %s" % ", ".join(INVALID_REASONS), "bad_reason")
            if complex_:
                raise BadInput("only a valid 差评 can be marked complex", "bad_complex")
        note = _note(note, required=not valid)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            _need(c, "verify", state=("opened", "contacted"), verdict=("pending",))
            if not valid:
                return {
                    "verdict": "invalid",
                    "invalid_reason": reason,
                    "verified_ms": t,
                    "state": "closed",
                    "closed_ms": t,
                }
            ch: Change = {"verdict": "valid", "verified_ms": t, "complex": complex_}
            if c.state == "contacted":
                ch["state"] = "rectifying"
            if complex_:
                errors: list[str] = []
                ch["rectify_due_ms"] = self._due(c.rated_ms, self.settings.complex_days, c.hall_tz, errors)
                # Keep an earlier gap (another deadline may still be missing): the leader's job
                # recomputes every missing deadline and clears the error once none is.
                ch["calendar_error"] = "; ".join(errors) or c.calendar_error
            return ch

        return self._act(complaint_id, "verify", actor, note, change, at_ms)

    def rectify(
        self, complaint_id: int, actor: str, note: str, at_ms: int | None = None
    ) -> Coroutine[Any, Any, Complaint]:
        """Rectification done and reported (整改反馈): what was done."""
        note = _note(note, required=True)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            _need(c, "rectify", state=("rectifying",))
            return {"state": "rectified", "rectified_ms": t}

        return self._act(complaint_id, "rectify", actor, note, change, at_ms)

    def callback(
        self,
        complaint_id: int,
        actor: str,
        grade: str,
        note: str = "",
        tags: Sequence[str] = (),
        text: str = "",
        at_ms: int | None = None,
    ) -> Coroutine[Any, Any, Complaint]:
        """回访: the citizen's satisfaction with the rectification (a re-rating, kept here for the
        rectification-satisfaction figure; not uploaded as a rating), and any reasons the
        citizen gave."""
        if grade not in GRADES:
            raise BadInput("grade must be one of %s" % ", ".join(GRADES), "bad_grade")
        note = _note(note, required=False)
        tags = list(tags)
        text = _text(text)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            _need(c, "callback", state=("rectified",))
            ch: Change = {"state": "callback_done", "callback_ms": t, "callback_grade": grade}
            if tags or text:
                ch.update(self._reasons_changes(tx, c, tags, text, "callback", t))
            return ch

        return self._act(complaint_id, "callback", actor, note, change, at_ms)

    def close(
        self, complaint_id: int, actor: str, note: str = "", at_ms: int | None = None
    ) -> Coroutine[Any, Any, Complaint]:
        note = _note(note, required=False)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            _need(c, "close", state=("callback_done",))
            return {"state": "closed", "closed_ms": t}

        return self._act(complaint_id, "close", actor, note, change, at_ms)

    def appeal(
        self, complaint_id: int, actor: str, note: str, at_ms: int | None = None
    ) -> Coroutine[Any, Any, Complaint]:
        """The rated clerk's appeal (申诉), within appeal_days working days of being notified."""
        note = _note(note, required=True)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            _need(c, "appeal", appeal=("none",))
            if c.verdict == "invalid":
                raise Conflict(
                    "complaint %d: the 差评 was found not valid; there is nothing to appeal" % c.id,
                    "bad_transition",
                )
            if tx.complaints.exclusion(c.record_id) is not None:
                raise Conflict("complaint %d: the rating is already excluded" % c.id, "bad_transition")
            if c.appeal_due_ms is None:
                raise Conflict(
                    "complaint %d: the appeal period cannot be checked: %s"
                    % (c.id, c.calendar_error or "no deadline"),
                    "calendar_unknown_year",
                )
            tz = ZoneInfo(c.hall_tz)
            if t >= c.appeal_due_ms:
                raise Conflict(
                    "complaint %d: the appeal period ended %s (%d working days after the clerk "
                    "was notified %s)"
                    % (
                        c.id,
                        fmt_deadline(c.appeal_due_ms, tz),
                        self.settings.appeal_days,
                        fmt_time(c.notified_ms, tz),
                    ),
                    "appeal_too_late",
                )
            errors: list[str] = []
            due = self._due(t, self.settings.review_days, c.hall_tz, errors)
            ch: Change = {"appeal_state": "appealed", "appealed_ms": t, "review_due_ms": due}
            if errors:
                ch["calendar_error"] = "; ".join(errors)
            return ch

        return self._act(complaint_id, "appeal", actor, note, change, at_ms)

    def review_start(
        self, complaint_id: int, actor: str, note: str = "", at_ms: int | None = None
    ) -> Coroutine[Any, Any, Complaint]:
        note = _note(note, required=False)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            _need(c, "review --start", appeal=("appealed",))
            return {"appeal_state": "under_review", "review_started_ms": t}

        return self._act(complaint_id, "review_start", actor, note, change, at_ms)

    def review_decide(
        self,
        complaint_id: int,
        actor: str,
        overturn: bool,
        reason: str | None,
        note: str,
        at_ms: int | None = None,
    ) -> Coroutine[Any, Any, Complaint]:
        """The review's decision: upheld (the 差评 stands), or overturned (the rating was
        mistaken or malicious: excluded from statistics, kept, the platform told)."""
        if overturn and reason not in EXCLUDE_REASONS:
            raise BadInput("an overturned 差评 needs reason %s" % " or ".join(EXCLUDE_REASONS), "bad_reason")
        if not overturn and reason is not None:
            raise BadInput("an upheld 差评 takes no reason", "bad_reason")
        note = _note(note, required=True)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            _need(c, "review --uphold/--overturn", appeal=("under_review",))
            ch: Change = {"appeal_state": "overturned" if overturn else "upheld", "decided_ms": t}
            if overturn:
                assert reason is not None
                ch["overturn_reason"] = reason
                ch.update(self._exclude_changes(tx, c, reason, note, actor, t))
            return ch

        return self._act(complaint_id, "review", actor, note, change, at_ms)

    def exclude(
        self, complaint_id: int, actor: str, reason: str, note: str, at_ms: int | None = None
    ) -> Coroutine[Any, Any, Complaint]:
        """Exclude the rating from statistics (mistaken press or malicious), never delete it;
        an open work order closes with it."""
        if reason not in EXCLUDE_REASONS:
            raise BadInput("reason must be one of %s" % ", ".join(EXCLUDE_REASONS), "bad_reason")
        note = _note(note, required=True)

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            if tx.complaints.exclusion(c.record_id) is not None:
                raise Conflict("complaint %d: the rating is already excluded" % c.id, "already_excluded")
            if c.appeal_state in ("appealed", "under_review"):
                raise Conflict(
                    "complaint %d: an appeal is under way; the review decides (review --overturn)" % c.id,
                    "bad_transition",
                )
            return self._exclude_changes(tx, c, reason, note, actor, t)

        return self._act(complaint_id, "exclude", actor, note, change, at_ms)

    def attach_reasons(
        self,
        complaint_id: int,
        actor: str,
        tags: Sequence[str] = (),
        text: str = "",
        source: str = "liaison",
        at_ms: int | None = None,
    ) -> Coroutine[Any, Any, Complaint]:
        """The 差评's reasons: tag codes of the set in force for its grade and/or free text,
        from the liaison, the callback or the QR page (source). Replaces earlier reasons;
        uploaded as evalDetail / writingEvaluation, or sent as a correction when the rating
        is already at the platform."""
        if source not in REASON_SOURCES:
            raise BadInput("source must be one of %s" % ", ".join(REASON_SOURCES), "bad_source")
        tags = list(tags)
        text = _text(text)
        if not tags and not text:
            raise BadInput("give at least one tag or some text", "missing_field")

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            return self._reasons_changes(tx, c, tags, text, source, t)

        return self._act(complaint_id, "reasons", actor, "", change, at_ms)

    def reasons_in_tx(
        self,
        tx: Tx,
        complaint_id: int,
        actor: str,
        tags: Sequence[str] = (),
        text: str = "",
        source: str = "qr",
        at_ms: int | None = None,
    ) -> Complaint:
        """attach_reasons inside the caller's unit of work (the QR page stores the rating, opens
        its complaint and gives its reasons in one transaction)."""
        if source not in REASON_SOURCES:
            raise BadInput("source must be one of %s" % ", ".join(REASON_SOURCES), "bad_source")
        tag_list = list(tags)
        clean = _text(text)
        if not tag_list and not clean:
            raise BadInput("give at least one tag or some text", "missing_field")
        t = self.clock() if at_ms is None else at_ms

        def change(tx: Tx, c: Complaint, t: int) -> Change:
            return self._reasons_changes(tx, c, tag_list, clean, source, t)

        return self._act_in_tx(tx, complaint_id, "reasons", _check_actor(actor), "", change, t)

    async def reasons_for_record(
        self,
        record_id: str,
        actor: str,
        tags: Sequence[str] = (),
        text: str = "",
        source: str = "qr",
        at_ms: int | None = None,
    ) -> Complaint:
        """attach_reasons by the rating's record id (the QR page knows its record, not the complaint)."""
        c = await self.store.read(lambda tx: tx.complaints.by_record(record_id))
        if c is None:
            raise NotFound("no complaint for rating %s" % record_id, "unknown_complaint")
        return await self.attach_reasons(c.id, actor, tags, text, source, at_ms)

    # -- helpers inside a unit -----------------------------------------------------------------

    def _reasons_changes(
        self, tx: Tx, c: Complaint, tags: list[str], text: str, source: str, t: int
    ) -> Change:
        version = None
        if tags:
            ts = self.settings.tags_in_force
            if ts is None:
                raise BadInput(
                    "no 差评 tag set is configured ([complaints] tag_version and tag_sets)", "no_tag_set"
                )
            seen: list[str] = []
            for code in tags:
                if not isinstance(code, str) or ts.find(c.grade, code) is None:
                    known = ", ".join(x.code for x in ts.by_grade.get(c.grade, ()))
                    raise BadInput(
                        "tag %r is not a %s tag of set %s (known: %s)"
                        % (code, NAMES_ZH[c.grade], ts.version, known or "none"),
                        "unknown_tag",
                    )
                if code not in seen:
                    seen.append(code)
            tags, version = seen, ts.version
        ch: Change = {
            "tags": ",".join(tags),
            "comment": text,
            "tag_version": version,
            "reasons_source": source,
        }
        self._correct(tx, c, "reasons", {"tags": ch["tags"], "text": text, "tag_version": version}, t)
        return ch

    def _exclude_changes(self, tx: Tx, c: Complaint, reason: str, note: str, actor: str, t: int) -> Change:
        tx.complaints.exclude(c.record_id, c.id, reason, note, actor, t)
        self._correct(tx, c, "exclude", {"reason": reason}, t)
        return {} if c.state == "closed" else {"state": "closed", "closed_ms": t}

    def _correct(self, tx: Tx, c: Complaint, action: str, payload: Mapping[str, Any], t: int) -> None:
        """Tell the platform, when the rating is there (or on its way) already; otherwise the
        upload itself carries the news (reasons) or the rating goes up and is corrected after."""
        if self.corrections_mode is None:
            return
        status = tx.uplink.item_status(c.record_id)
        # An exclusion always needs telling once the rating is uploaded (it will be); reasons
        # only when the rating already left without them (a push that read the rating before
        # and marks it sent after this commits notices the change itself: state.mark_sent).
        if action == "reasons" and status not in ("sent", "acked"):
            return
        tx.complaints.add_correction(
            c.record_id, c.id, action, payload, "pending" if self.corrections_mode == "send" else "manual", t
        )

    # -- corrections for people ---------------------------------------------------------------

    async def corrections(
        self, statuses: Sequence[str] | None = None, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self.store.read(lambda tx: tx.complaints.corrections(statuses, None, limit))
        tz = self.hall.tz
        return [self.correction_view(k, tz) for k in rows], total

    async def correction_done(
        self, correction_id: int, actor: str, note: str = "", at_ms: int | None = None
    ) -> dict[str, Any]:
        """Someone made a 'manual' correction in the platform's back office: say so (audited)."""
        actor = _check_actor(actor)
        note = _note(note, required=False)
        t = self.clock() if at_ms is None else at_ms

        def unit(tx: Tx) -> Correction:
            k = tx.complaints.get_correction(correction_id)
            if k is None:
                raise NotFound("unknown correction %d" % correction_id, "unknown_correction")
            if k.status != "manual":
                raise Conflict(
                    "correction %d is %s, not waiting for manual action" % (k.id, k.status), "bad_transition"
                )
            tx.complaints.set_correction([k.id], "manual_done", t, None, actor)
            if k.complaint_id is not None:
                tx.complaints.add_event(
                    k.complaint_id,
                    t,
                    actor,
                    "correction_done",
                    None,
                    None,
                    note,
                    {"correction": k.id, "action": k.action},
                )
            tx.audit.add(t, actor, "complaint.correction_done", {"subject": str(k.id), "note": note})
            out = tx.complaints.get_correction(k.id)
            assert out is not None
            return out

        return self.correction_view(await self.store.write(unit), self.hall.tz)

    # -- the leader's periodic work ------------------------------------------------------------

    async def fill_deadlines(self) -> int:
        """Compute the deadlines a calendar could not compute before (a year it now knows)."""
        live = await self.store.read(lambda tx: tx.complaints.with_live_deadlines())
        done = 0
        for c in live:
            if c.calendar_error is None:
                continue
            errors: list[str] = []
            ch: Change = {}
            if c.contact_due_ms is None:
                ch["contact_due_ms"] = self._due(c.rated_ms, self.settings.contact_days, c.hall_tz, errors)
            if c.rectify_due_ms is None:
                ch["rectify_due_ms"] = self._due(c.rated_ms, self._rectify_days(c.complex), c.hall_tz, errors)
            if c.appeal_due_ms is None:
                ch["appeal_due_ms"] = self._due(c.notified_ms, self.settings.appeal_days, c.hall_tz, errors)
            if c.review_due_ms is None and c.appealed_ms is not None:
                ch["review_due_ms"] = self._due(c.appealed_ms, self.settings.review_days, c.hall_tz, errors)
            ch["calendar_error"] = "; ".join(errors) or None
            if ch["calendar_error"] == c.calendar_error and all(
                v is None for k, v in ch.items() if k != "calendar_error"
            ):
                continue  # still nothing the calendar can tell
            done += await self._fill(c, ch, self.clock())
        return done

    async def _fill(self, c: Complaint, ch: Change, t: int) -> bool:
        return await self.store.write(lambda tx: _fill(tx, c, ch, t))

    async def notices_due(self) -> list[tuple[Complaint, str, Notification]]:
        """What to tell people now: new complaints, deadlines due soon or overdue, deadlines the
        calendar cannot compute; each (complaint, notice key) at most once."""
        now = self.clock()

        def read(tx: Tx) -> tuple[list[Complaint], list[Complaint], dict[int, set[str]]]:
            # A new complaint is announced within seconds; one a week old was missed only if no
            # leader ran for that long, and is then old news (the lists show it).
            new = tx.complaints.unannounced(now - ANNOUNCE_WITHIN_MS, 200)
            live = tx.complaints.with_live_deadlines()
            return new, live, tx.complaints.notices([c.id for c in live])

        new, live, sent = await self.store.read(read)
        out: list[tuple[Complaint, str, Notification]] = [(c, "opened", self._opened_notice(c)) for c in new]
        for c in live:
            have = sent.get(c.id, set())
            if c.calendar_error and "calendar" not in have:
                out.append(
                    (
                        c,
                        "calendar",
                        self._notice(
                            c,
                            "calendar",
                            Severity.WARNING,
                            "差评工单 #%d 的期限无法计算" % c.id,
                            "工作日历缺少所需年份：%s" % c.calendar_error,
                        ),
                    )
                )
            for d in deadline_statuses(c, now, self.due_soon_ms):
                if d.kind == "appeal" or d.status not in ("due_soon", "overdue"):
                    continue
                key = "%s:%s" % ("overdue" if d.status == "overdue" else "due_soon", d.kind)
                if key in have or (d.status == "due_soon" and "overdue:" + d.kind in have):
                    continue
                out.append((c, key, self._deadline_notice(c, d)))
        return out

    async def mark_notice(self, c: Complaint, key: str) -> bool:
        t = self.clock()
        return await self.store.write(lambda tx: tx.complaints.note_notice(c.id, key, t))

    def _notice(self, c: Complaint, what: str, sev: Severity, subject: str, body: str) -> Notification:
        kind = "complaint." + what.split(":")[0]
        return Notification(
            kind=kind,
            severity=sev,
            subject=subject,
            body=body,
            payload={
                "complaint_id": c.id,
                "record_id": c.record_id,
                "case_no": c.case_no,
                "grade": c.grade,
                "window": c.window_id,
                "staff": c.staff_account,
                "dept_code": c.dept_code,
                "hall": c.hall_id,
                "notice": what,
            },
            # Stable: a repeat after a crash is dropped by the receiver (X-HCP-Delivery).
            id="complaint-%d-%s" % (c.id, what.replace(":", "-")),
        )

    def _opened_notice(self, c: Complaint) -> Notification:
        tz = ZoneInfo(c.hall_tz)
        who = "%s窗口 %s%s" % (
            c.window_id or "?",
            c.staff_name or c.staff_account or "?",
            "（%s）" % c.staff_account if c.staff_name else "",
        )
        due = fmt_deadline(c.contact_due_ms, tz) or "无法计算（%s）" % (c.calendar_error or "")
        rect = fmt_deadline(c.rectify_due_ms, tz) or "无法计算"
        body = (
            "%s 办件 %s（%s）获评“%s”。评价时间 %s。请在 %s 前联系办事群众，在 %s 前完成整改反馈；"
            "被评价人可在 %s 前申诉。工单号 #%d。"
            % (
                who,
                c.case_no or "-",
                c.task_name or c.task_code or "-",
                NAMES_ZH[c.grade],
                fmt_time(c.rated_ms, tz),
                due,
                rect,
                fmt_deadline(c.appeal_due_ms, tz) or "无法计算",
                c.id,
            )
        )
        return self._notice(
            c,
            "opened",
            Severity.WARNING,
            "新差评：%s窗口 · %s" % (c.window_id or "?", NAMES_ZH[c.grade]),
            body,
        )

    def _deadline_notice(self, c: Complaint, d: DeadlineStatus) -> Notification:
        tz = ZoneInfo(c.hall_tz)
        label = DEADLINE_ZH[d.kind]
        if d.status == "overdue":
            return self._notice(
                c,
                "overdue:" + d.kind,
                Severity.CRITICAL,
                "差评工单 #%d 已超期：%s" % (c.id, label),
                "办件 %s（%s窗口 %s）的“%s”期限 %s 已过，工单状态：%s。"
                % (
                    c.case_no,
                    c.window_id,
                    c.staff_name or c.staff_account,
                    label,
                    fmt_deadline(d.due_ms, tz),
                    STATE_ZH[c.state],
                ),
            )
        return self._notice(
            c,
            "due_soon:" + d.kind,
            Severity.WARNING,
            "差评工单 #%d 即将到期：%s" % (c.id, label),
            "办件 %s（%s窗口 %s）的“%s”须在 %s 前完成，工单状态：%s。"
            % (
                c.case_no,
                c.window_id,
                c.staff_name or c.staff_account,
                label,
                fmt_deadline(d.due_ms, tz),
                STATE_ZH[c.state],
            ),
        )

    async def tick(self, notifier: Notifier | None) -> int:
        """One round of the leader's job: sweep, fill deadlines, send due notices."""
        await self.sweep()
        await self.fill_deadlines()
        n = 0
        for c, key, note in await self.notices_due():
            if notifier is not None:
                await notifier.send(note)  # never blocks, never raises
            if await self.mark_notice(c, key):
                n += 1
        return n


def _fill(tx: Tx, c: Complaint, ch: Change, t: int) -> bool:
    if not tx.complaints.update(c.id, c.version, ch, t):
        return False
    tx.complaints.add_event(
        c.id,
        t,
        "gateway",
        "deadlines",
        c.state,
        c.state,
        "",
        {k: v for k, v in ch.items() if k != "calendar_error"} | {"calendar_error": ch.get("calendar_error")},
    )
    return True


def complaints_job(
    service: ComplaintService, notifier: Notifier | None, every_s: float | None = None
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """The leader's task (gateway/leader.py): every few seconds, announce new complaints,
    open missed ones, fill deadlines and notify due-soon / overdue ones, until stopped."""
    period = service.settings.check_every_s if every_s is None else every_s

    async def job(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await service.tick(notifier)
            except Exception:
                log.exception("complaints job failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    return job


class ComplaintHook:
    """What ingest calls inside its batch's unit of work, after inserting the batch's new
    records (see the module docstring for why here). Cheap for the common case: only rated
    d / vd records with an invitation get a look."""

    def __init__(self, service: ComplaintService) -> None:
        self.service = service

    def __call__(self, tx: Tx, rows: Sequence[Mapping[str, Any]]) -> None:
        bad = [
            r for r in rows if r.get("kind") == "rated" and r.get("grade") in BAD and r.get("invitation_id")
        ]
        for r in bad:
            try:
                with tx.savepoint():
                    self.service.open_in_tx(tx, str(r["record_id"]), "device")
            except Exception:  # the record stays stored; the leader's sweep opens its complaint
                log.exception(
                    "complaint not opened for %s in its batch; the sweep will open it", r.get("record_id")
                )


# ---- small checks ------------------------------------------------------------------------------


def _need(
    c: Complaint,
    action: str,
    state: tuple[str, ...] | None = None,
    verdict: tuple[str, ...] | None = None,
    appeal: tuple[str, ...] | None = None,
) -> None:
    if state is not None and c.state not in state:
        raise Conflict(
            "complaint %d is %s: %s is possible only when it is %s"
            % (c.id, c.state, action, " or ".join(state)),
            "bad_transition",
        )
    if verdict is not None and c.verdict not in verdict:
        raise Conflict(
            "complaint %d is verified %s already: %s is possible only once" % (c.id, c.verdict, action),
            "bad_transition",
        )
    if appeal is not None and c.appeal_state not in appeal:
        raise Conflict(
            "complaint %d's appeal is %s: %s is possible only when it is %s"
            % (c.id, c.appeal_state, action, " or ".join(appeal)),
            "bad_transition",
        )


def _has_control(text: str) -> bool:
    return any((ord(ch) < 0x20 and ch not in "\n\t") or ch == "\x7f" for ch in text)


def _note(note: Any, required: bool) -> str:
    if not isinstance(note, str):
        raise BadInput("note must be a string", "bad_note")
    out = note.strip()
    if required and not out:
        raise BadInput("a note is required (what was done, or why)", "missing_note")
    if len(out) > _NOTE_MAX or _has_control(out):
        raise BadInput(
            "note must be at most %d characters without control characters" % _NOTE_MAX, "bad_note"
        )
    return out


def _text(text: Any) -> str:
    if not isinstance(text, str):
        raise BadInput("text must be a string", "bad_text")
    out = text.strip()
    if len(out) > TEXT_MAX or _has_control(out):
        raise BadInput("text must be at most %d characters without control characters" % TEXT_MAX, "bad_text")
    return out


def _check_actor(actor: Any) -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 128 or _has_control(actor):
        raise BadInput("actor must be a name of 1..128 characters", "bad_actor")
    return actor.strip()
