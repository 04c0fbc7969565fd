"""一次一评: invitations from the window system to the device bound at a window.

Lifecycle: pending -> rated | unrated (closed by the device's record, see attribution.py)
                   -> cancelled (DELETE by the window system, or the binding closed)
                   -> expired (countdown + grace passed with no record; a press made in time
                      that arrives later still rates it)
                   -> superseded (a new invitation at the same device replaced it: the window
                      system moved on to the next case; the old one is cancelled on the device)
A case (办件 number) is rated at most once: inviting a case that already has its rating, or
whose default rating already went to the platform, is a Conflict. A follow-up rating (追加评价,
assess_number 2) is invited with follow_up = true, within [complaints] follow_up_days working
days (5) after the first rating, once per case. A receipt invitation (receipt = true, the QR
channel: docs/qr.md) is printed on the 办件 receipt as a QR link instead of being shown on the
evaluator: it belongs to the window's QR point, stays open [qr] receipt_valid_min, supersedes
nothing and is superseded by nothing. At a window bound only to its QR point (no evaluator), an
invitation without receipt waits for the window's plate to be scanned, like an evaluator's
countdown. When the provincial platform needs case fields
(an [uplink] with require_project_no), an invitation without them is refused naming the field,
unless [invitations] gives defaults. The functions here change the store; the caller sends the
returned commands after the commit (a command must never announce something that was rolled
back).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import re
import secrets
import zoneinfo
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway import org
from gateway.bindings import (
    MIN_COUNTDOWN_S,
    BadInput,
    Command,
    Conflict,
    NotFound,
    audit,
    check_text,
    close_pending_invitations,
    get_window,
    invite_fields,
    now_ms,
)
from gateway.config import Config, ConfigError
from gateway.qr import points as qr_points
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.errors import IntegrityError
from gateway.store.rows import Invitation, NewInvitation
from gateway.workdays import UnknownYearError, WorkCalendar

log = logging.getLogger("gateway.invitations")

INVITATION_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # fullmatch: no trailing newline
MAX_COUNTDOWN_S = 600
STATUSES = ("pending", "rated", "unrated", "cancelled", "expired", "superseded")


# The case fields a provincial platform needs on every first rating (the adapters' schema
# with require_project_no); a department code may come from the window.
PROVINCE_FIELDS = ("task_code", "task_name", "applicant_type", "dept_code")


@dataclass(frozen=True)
class InvitationRules:
    default_countdown_s: int = 60
    grace_s: int = 30   # the device's journal may deliver the unrated/rated record a little late
    # Filled in when the window system leaves them out ([invitations] default_*).
    default_applicant_type: int | None = None
    default_task_code: str = ""
    default_task_name: str = ""
    # What the provincial platform needs (empty: no uplink, nothing required).
    required: tuple[str, ...] = ()
    dept_code_pattern: str = "[0-9A-Z]{18}"
    follow_up_days: int = 5
    timezone: str = "Asia/Shanghai"
    qr: bool = False                   # the QR channel is on ([qr]): receipt invitations possible
    receipt_valid_s: int = 86400       # [qr] receipt_valid_min

    @classmethod
    def from_config(cls, cfg: Config) -> InvitationRules:
        sec = cfg.raw.get("invitations", {})
        if not isinstance(sec, dict):
            raise ConfigError("[invitations] must be a table")
        cd = sec.get("default_countdown_s", 60)
        grace = sec.get("grace_s", 30)
        if type(cd) is not int or not MIN_COUNTDOWN_S <= cd <= MAX_COUNTDOWN_S:
            raise ConfigError("[invitations] default_countdown_s must be an integer in 5..600")
        if type(grace) is not int or not 0 <= grace <= 86400:
            raise ConfigError("[invitations] grace_s must be an integer in 0..86400")
        from gateway.uplink.settings import load_settings
        required: tuple[str, ...] = ()
        pattern = cls.dept_code_pattern
        if "uplink" in cfg.raw:
            try:
                up = load_settings(cfg)
            except ConfigError:
                up = None   # reported by the [uplink] builder
            if up is not None and up.enabled and up.require_project_no:
                required, pattern = PROVINCE_FIELDS, up.dept_code_pattern
        comp = cfg.raw.get("complaints", {})
        follow = comp.get("follow_up_days", 5) if isinstance(comp, dict) else 5
        qr = cfg.raw.get("qr")
        receipt_min = qr.get("receipt_valid_min", 1440) if isinstance(qr, dict) else 1440
        for key, limit in (("default_task_code", 64), ("default_task_name", 200)):
            v = sec.get(key, "")
            if not isinstance(v, str) or len(v) > limit:
                raise ConfigError("[invitations] %s must be a string of at most %d characters" % (key, limit))
        return cls(default_countdown_s=cd, grace_s=grace,
                   default_applicant_type=sec.get("default_applicant_type"),
                   default_task_code=sec.get("default_task_code", ""),
                   default_task_name=sec.get("default_task_name", ""), required=required,
                   dept_code_pattern=pattern, follow_up_days=follow if type(follow) is int else 5,
                   timezone=cfg.hall.timezone, qr=isinstance(qr, dict),
                   receipt_valid_s=60 * (receipt_min if type(receipt_min) is int else 1440))

    def fill(self, req: InvitationRequest) -> InvitationRequest:
        """The request with the configured defaults for what it leaves out, checked for what the
        province needs (BadInput naming the first missing field)."""
        req = dataclasses.replace(
            req, task_code=req.task_code or self.default_task_code,
            task_name=req.task_name or self.default_task_name,
            applicant_type=(req.applicant_type if req.applicant_type is not None
                            else self.default_applicant_type))
        for name in self.required:
            if name == "dept_code":
                continue   # may come from the window: checked with it
            if getattr(req, name) in (None, ""):
                raise BadInput("%s is required by the provincial platform%s; send it, or set [invitations] "
                               "default_%s" % (name, " (1 person, 2 legal entity)" if name == "applicant_type"
                                               else "", name), "missing_field")
        return req

    def check_dept(self, dept_code: str, window: str) -> None:
        if "dept_code" not in self.required:
            return
        if not dept_code:
            raise BadInput("dept_code is required by the provincial platform: the invitation gives none and "
                           "window %s has none (the department's unified social credit code)" % window,
                           "bad_dept_code")
        if not re.fullmatch(self.dept_code_pattern, dept_code):
            raise BadInput("dept_code %r does not match %s, as the provincial platform needs"
                           % (dept_code, self.dept_code_pattern), "bad_dept_code")


@dataclass(frozen=True)
class InvitationRequest:
    case_no: str
    window_id: str | None = None
    staff_account: str | None = None
    task_code: str = ""
    task_name: str = ""
    dept_code: str = ""
    applicant_type: int | None = None
    countdown_s: int | None = None
    invitation_id: str | None = None   # optional, client-chosen: makes a retried POST idempotent
    follow_up: bool = False            # a follow-up rating (追加评价, assessNumber 2) of a rated case
    receipt: bool = False              # printed on the receipt as a QR link, not shown on the device

    @classmethod
    def from_json(cls, body: Any) -> InvitationRequest:
        """Validate a POST body; BadInput names the first bad field."""
        if not isinstance(body, dict):
            raise BadInput("body must be a JSON object")
        known = {"window", "staff_account", "case_no", "task_code", "task_name", "dept_code",
                 "applicant_type", "countdown_s", "invitation_id", "follow_up", "receipt"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise BadInput("unknown field %s" % unknown[0], "unknown_field")
        window = body.get("window")
        staff = body.get("staff_account")
        if (window is None) == (staff is None):
            raise BadInput("give exactly one of window or staff_account", "bad_target")
        if window is not None:
            window = check_text("window", window, 1, 16)
        if staff is not None:
            staff = check_text("staff_account", staff, 1, 64)
        if "case_no" not in body:
            raise BadInput("case_no is required", "missing_field")
        case_no = check_text("case_no", body["case_no"], 1, 64, max_bytes=64)
        task_code = check_text("task_code", body.get("task_code", ""), 0, 64)
        task_name = check_text("task_name", body.get("task_name", ""), 0, 200)
        dept_code = check_text("dept_code", body.get("dept_code", ""), 0, 32)
        applicant = body.get("applicant_type")
        if applicant is not None and (type(applicant) is not int or applicant not in (1, 2)):
            raise BadInput("applicant_type must be 1 (person) or 2 (legal entity)")
        cd = body.get("countdown_s")
        if cd is not None and (type(cd) is not int or not MIN_COUNTDOWN_S <= cd <= MAX_COUNTDOWN_S):
            raise BadInput("countdown_s must be an integer in %d..%d" % (MIN_COUNTDOWN_S, MAX_COUNTDOWN_S))
        inv_id = body.get("invitation_id")
        if inv_id is not None and (not isinstance(inv_id, str) or not INVITATION_ID.fullmatch(inv_id)):
            raise BadInput("invitation_id must match [A-Za-z0-9_-]{1,32}")
        follow = body.get("follow_up", False)
        if type(follow) is not bool:
            raise BadInput("follow_up must be true or false")
        receipt = body.get("receipt", False)
        if type(receipt) is not bool:
            raise BadInput("receipt must be true or false")
        return cls(case_no=case_no, window_id=window, staff_account=staff, task_code=task_code,
                   task_name=task_name, dept_code=dept_code, applicant_type=applicant,
                   countdown_s=cd, invitation_id=inv_id, follow_up=follow, receipt=receipt)


@dataclass
class Outcome:
    invitation: Invitation
    commands: list[tuple[str, Command]]   # (device, command) to send after the commit
    created: bool = True                   # False: an idempotent retry returned the existing one
    superseded: list[str] | None = None


def new_invitation_id() -> str:
    return secrets.token_urlsafe(12)   # 16 characters of [A-Za-z0-9_-]


def _get(tx: Tx, inv_id: str) -> Invitation:
    if not INVITATION_ID.fullmatch(inv_id):
        raise BadInput("invitation id must match [A-Za-z0-9_-]{1,32}", "bad_invitation_id")
    inv = tx.invitations.get(inv_id)
    if inv is None:
        raise NotFound("unknown invitation %s" % inv_id, "unknown_invitation")
    return inv


async def get_invitation(store: Store, inv_id: str) -> Invitation:
    return await store.read(lambda tx: _get(tx, inv_id))


async def list_invitations(store: Store, status: str | None = None, since_ms: int | None = None,
                           until_ms: int | None = None, limit: int = 1000) -> list[Invitation]:
    """Oldest first; at most limit rows (the newest limit when there are more)."""
    return (await list_invitations_counted(store, status, since_ms, until_ms, limit))[0]


async def list_invitations_counted(store: Store, status: str | None = None, since_ms: int | None = None,
                                   until_ms: int | None = None,
                                   limit: int = 1000) -> tuple[list[Invitation], int]:
    """list_invitations and how many matched in all (a cut list says how many it hid)."""
    if status is not None and status not in STATUSES:
        raise BadInput("status must be one of %s" % ", ".join(STATUSES), "bad_status")
    return await store.read(lambda tx: tx.invitations.find(status, since_ms, until_ms, limit))


async def create(store: Store, req: InvitationRequest, actor: str, rules: InvitationRules,
                 at_ms: int | None = None, calendar: WorkCalendar | None = None) -> Outcome:
    """calendar: the working-day calendar for a follow-up's period (default: national only)."""
    t = now_ms() if at_ms is None else at_ms
    cd = req.countdown_s if req.countdown_s is not None else rules.default_countdown_s
    if not req.follow_up:
        req = rules.fill(req)
    if req.receipt and not rules.qr:
        raise BadInput("receipt invitations need the QR channel: add [qr] to the gateway's config", "qr_off")

    def unit(tx: Tx) -> Outcome:
        nonlocal req
        if req.invitation_id is not None:
            old = tx.invitations.get(req.invitation_id)
            if old is not None:
                if old.case_no != req.case_no:
                    raise Conflict("invitation id %s is already used for another case" % old.id, "id_in_use")
                return Outcome(old, [], created=False)
        if req.window_id is not None:
            window = get_window(tx, req.window_id)
            b = tx.bindings.active_for_window(window.window_id)
            if b is None:
                raise Conflict("no device is bound at window %s" % window.window_id, "no_device_bound")
        else:
            assert req.staff_account is not None
            b = tx.bindings.active_for_staff(req.staff_account)
            if b is None:
                raise Conflict("staff account %s is not bound to any device" % req.staff_account,
                               "no_device_bound")
        assess = 1
        if req.follow_up:
            req = follow_up_request(tx, req, rules, calendar or WorkCalendar(), t)
            assess = 2
        else:
            rated = tx.invitations.rated_for_case(req.case_no)
            if rated is not None:
                raise Conflict("case %s already has its rating (invitation %s)" % (req.case_no, rated),
                               "case_already_rated")
            uploaded = tx.uplink.first_upload_of_case(req.case_no)
            if uploaded is not None:
                raise Conflict("case %s already has its first rating at the platform (%s): a new invitation "
                               "would send a second one; invite a follow-up rating instead (follow_up: true, "
                               "within %d working days)" % (req.case_no, uploaded, rules.follow_up_days),
                               "case_has_default")
            w = tx.org.get_window(b.window_id)
            rules.check_dept(req.dept_code or (w.dept_code if w is not None else ""), b.window_id)
        # Where the invitation waits: the evaluator (shown, with its countdown), the window's QR
        # point in a QR-only window (its plate), or the receipt (a link, many open at once).
        on_point = tx.qr.is_point(b.device_id)
        target = qr_points.ensure_point(tx, b.window_id, t) if req.receipt else b.device_id
        superseded: list[str] = []
        if not req.receipt:
            superseded = close_pending_invitations(tx, target, "superseded",
                                                   "superseded by a new invitation", t, actor,
                                                   "invitation.supersede", {"device": target})
        shown = not req.receipt and not on_point   # a QR point has no display to tell
        commands: list[tuple[str, Command]] = (
            [(target, ("cancel", {"i": i})) for i in superseded] if shown else [])
        inv_id = req.invitation_id or new_invitation_id()
        expires = t + (rules.receipt_valid_s if req.receipt else cd + rules.grace_s) * 1000
        # The case belongs to the window's hall and (unless the window system names one) its
        # department, as they are now: bulletins group invitations by these.
        hall_id, window_dept = org.place_at(tx, b.window_id, t)
        try:
            tx.invitations.insert(NewInvitation(
                inv_id, target, b.window_id, b.staff_account, b.id, req.case_no, req.task_code,
                req.task_name, req.dept_code or window_dept, req.applicant_type, cd, t, expires, actor,
                assess, hall_id=hall_id, receipt=req.receipt))
        except IntegrityError as e:
            raise Conflict("invitation could not be stored: %s" % e, "conflict") from None
        audit(tx, actor, "invitation.create", inv_id,
              {"device": target, "window": b.window_id, "staff": b.staff_account,
               "case_no": req.case_no, "countdown_s": cd, "assess_number": assess, "receipt": req.receipt}, t)
        if shown:
            commands.append((target, ("invite", invite_fields(inv_id, req.case_no, req.task_name, cd))))
        return Outcome(_get(tx, inv_id), commands, created=True, superseded=superseded)
    return await store.write(unit)


def follow_up_period(tx: Tx, case_no: str, rules: InvitationRules,
                     calendar: WorkCalendar) -> tuple[Invitation, int]:
    """The invitation a follow-up of the case follows (its first rating, or the one whose default
    rating went to the platform) and the end of the follow-up period (epoch ms); Conflict when
    the case has none to follow, or has its follow-up already."""
    first = tx.invitations.first_rating(case_no)
    if first is None:
        uploaded = tx.uplink.first_upload_of_case(case_no)
        latest = tx.invitations.latest_of_case(case_no) if uploaded is not None else None
        if latest is None or latest.closed_ms is None:
            raise Conflict("case %s has no first rating to follow up" % case_no, "no_first_rating")
        first = latest   # its default rating went to the platform: the follow-up is the citizen's word
    if tx.invitations.rated_for_case(case_no, 2) is not None:
        raise Conflict("case %s already has its follow-up rating" % case_no, "case_already_followed_up")
    assert first.closed_ms is not None
    tz = zoneinfo.ZoneInfo(rules.timezone)
    try:
        due = calendar.add_working_days_ms(first.closed_ms, rules.follow_up_days, tz)
    except UnknownYearError as e:
        raise Conflict(str(e), "calendar_unknown_year") from None
    return first, due


def follow_up_request(tx: Tx, req: InvitationRequest, rules: InvitationRules, calendar: WorkCalendar,
                      t: int) -> InvitationRequest:
    """Check a follow-up invitation (追加评价) and fill its case fields from the first rating's."""
    first, due = follow_up_period(tx, req.case_no, rules, calendar)
    if t >= due:
        tz = zoneinfo.ZoneInfo(rules.timezone)
        end = dt.datetime.fromtimestamp((due - 1) / 1000, tz)
        raise Conflict("case %s: the follow-up period ended %s 24:00 (%d working days after the first rating)"
                       % (req.case_no, end.date().isoformat(), rules.follow_up_days), "follow_up_too_late")
    return dataclasses.replace(
        req, task_code=req.task_code or first.task_code, task_name=req.task_name or first.task_name,
        dept_code=req.dept_code or first.dept_code,
        applicant_type=req.applicant_type if req.applicant_type is not None else first.applicant_type)


async def cancel(store: Store, inv_id: str, actor: str, at_ms: int | None = None) -> Outcome:
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> Outcome:
        inv = _get(tx, inv_id)
        if inv.status != "pending":
            raise Conflict("invitation %s is already %s" % (inv_id, inv.status), "not_pending")
        tx.invitations.close(inv_id, "cancelled", t, "cancelled by the window system")
        audit(tx, actor, "invitation.cancel", inv_id, {"device": inv.device_id}, t)
        inv = _get(tx, inv_id)
        if tx.qr.is_point(inv.device_id):   # a receipt or plate invitation: no device to tell
            return Outcome(inv, [], created=False)
        return Outcome(inv, [(inv.device_id, ("cancel", {"i": inv_id}))], created=False)
    return await store.write(unit)


async def expire_due(store: Store, at_ms: int | None = None) -> list[str]:
    """Close every pending invitation whose countdown + grace has passed; returns their ids."""
    t = now_ms() if at_ms is None else at_ms
    due = await store.read(lambda tx: tx.invitations.due(t))
    if not due:
        return []

    def unit(tx: Tx) -> None:
        for inv_id in due:
            if tx.invitations.expire(inv_id, "no record before countdown + grace"):
                audit(tx, "gateway", "invitation.expire", inv_id, {}, t)
    await store.write(unit)
    return due


def expiry_job(store: Store, clock: Callable[[], int], every_s: float) -> Callable[[asyncio.Event],
                                                                                  Coroutine[Any, Any, None]]:
    """The leader's task: expire due invitations every every_s until the event is set."""
    async def job(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            try:
                done = await expire_due(store, clock())
                if done:
                    log.info("expired %d invitation(s): %s", len(done), ", ".join(done))
            except Exception:
                log.exception("invitation expiry failed; will retry")
    return job
