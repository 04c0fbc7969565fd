"""一次一评: invitations from the window system to the device bound at a window.

Lifecycle: pending -> rated | unrated (closed by the device's record, see attribution.py)
                   -> cancelled (DELETE by the window system, or the binding closed)
                   -> expired (countdown + grace passed with no record; a press made in time
                      that arrives later still rates it)
                   -> superseded (a new invitation at the same device replaced it: the window
                      system moved on to the next case; the old one is cancelled on the device)
A case (办件 number) is rated at most once: inviting a case that already has its rating is a
Conflict. The functions here change the database; the caller sends the returned commands
after the commit (a command must never announce something that was rolled back).
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

import aiosqlite

from gateway.bindings import (
    MIN_COUNTDOWN_S,
    BadInput,
    Command,
    Conflict,
    NotFound,
    active_binding_for_staff,
    active_binding_for_window,
    audit,
    check_text,
    close_pending_invitations,
    get_window,
    invite_fields,
    now_ms,
)
from gateway.config import Config, ConfigError
from gateway.store.db import Database

INVITATION_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # fullmatch: no trailing newline
MAX_COUNTDOWN_S = 600
STATUSES = ("pending", "rated", "unrated", "cancelled", "expired", "superseded")


@dataclass(frozen=True)
class InvitationRules:
    default_countdown_s: int = 60
    grace_s: int = 30   # the device's journal may deliver the unrated/rated record a little late

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
        return cls(default_countdown_s=cd, grace_s=grace)


@dataclass(frozen=True)
class Invitation:
    id: str
    device_id: str
    window_id: str
    staff_account: str
    binding_id: int
    case_no: str
    task_code: str
    task_name: str
    dept_code: str
    applicant_type: int | None
    countdown_s: int
    status: str
    created_ms: int
    expires_ms: int
    closed_ms: int | None
    close_reason: str | None
    record_id: str | None
    grade: str | None

    def public(self) -> dict[str, Any]:
        """The API's view (no internal ids beyond what the window system needs)."""
        d = asdict(self)
        d["invitation_id"] = d.pop("id")
        d.pop("binding_id")
        if self.status != "rated":
            d.pop("grade")
        return d


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

    @classmethod
    def from_json(cls, body: Any) -> InvitationRequest:
        """Validate a POST body; BadInput names the first bad field."""
        if not isinstance(body, dict):
            raise BadInput("body must be a JSON object")
        known = {"window", "staff_account", "case_no", "task_code", "task_name", "dept_code",
                 "applicant_type", "countdown_s", "invitation_id"}
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
        return cls(case_no=case_no, window_id=window, staff_account=staff, task_code=task_code,
                   task_name=task_name, dept_code=dept_code, applicant_type=applicant,
                   countdown_s=cd, invitation_id=inv_id)


@dataclass
class Outcome:
    invitation: Invitation
    commands: list[tuple[str, Command]]   # (device, command) to send after the commit
    created: bool = True                   # False: an idempotent retry returned the existing one
    superseded: list[str] | None = None


_COLUMNS = ("id, device_id, window_id, staff_account, binding_id, case_no, task_code, task_name, dept_code,"
            " applicant_type, countdown_s, status, created_ms, expires_ms, closed_ms, close_reason,"
            " record_id, grade")


def new_invitation_id() -> str:
    return secrets.token_urlsafe(12)   # 16 characters of [A-Za-z0-9_-]


async def get_invitation(conn: aiosqlite.Connection, inv_id: str) -> Invitation:
    if not INVITATION_ID.fullmatch(inv_id):
        raise BadInput("invitation id must match [A-Za-z0-9_-]{1,32}", "bad_invitation_id")
    async with conn.execute("SELECT %s FROM invitations WHERE id = ?" % _COLUMNS, (inv_id,)) as cur:
        r = await cur.fetchone()
    if r is None:
        raise NotFound("unknown invitation %s" % inv_id, "unknown_invitation")
    return Invitation(*r)


async def list_invitations(conn: aiosqlite.Connection, status: str | None = None,
                           since_ms: int | None = None, until_ms: int | None = None,
                           limit: int = 1000) -> list[Invitation]:
    """Oldest first; at most limit rows (the newest limit when there are more)."""
    where: list[str] = ["1"]
    args: list[Any] = []
    if status is not None:
        if status not in STATUSES:
            raise BadInput("status must be one of %s" % ", ".join(STATUSES), "bad_status")
        where.append("status = ?")
        args.append(status)
    if since_ms is not None:
        where.append("created_ms >= ?")
        args.append(since_ms)
    if until_ms is not None:
        where.append("created_ms < ?")
        args.append(until_ms)
    sql = "SELECT %s FROM invitations WHERE %s ORDER BY created_ms DESC, id DESC LIMIT %d" % (
        _COLUMNS, " AND ".join(where), max(1, limit))
    async with conn.execute(sql, tuple(args)) as cur:
        rows = [Invitation(*r) async for r in cur]
    rows.reverse()
    return rows


async def create(db: Database, req: InvitationRequest, actor: str, rules: InvitationRules,
                 at_ms: int | None = None) -> Outcome:
    t = now_ms() if at_ms is None else at_ms
    cd = req.countdown_s if req.countdown_s is not None else rules.default_countdown_s
    async with db.transaction() as conn:
        if req.invitation_id is not None:
            try:
                old = await get_invitation(conn, req.invitation_id)
            except NotFound:
                pass
            else:
                if old.case_no != req.case_no:
                    raise Conflict("invitation id %s is already used for another case" % old.id, "id_in_use")
                return Outcome(old, [], created=False)
        if req.window_id is not None:
            window = await get_window(conn, req.window_id)
            b = await active_binding_for_window(conn, window.window_id)
            if b is None:
                raise Conflict("no device is bound at window %s" % window.window_id, "no_device_bound")
        else:
            assert req.staff_account is not None
            b = await active_binding_for_staff(conn, req.staff_account)
            if b is None:
                raise Conflict("staff account %s is not bound to any device" % req.staff_account,
                               "no_device_bound")
        async with conn.execute(
            "SELECT id FROM invitations WHERE case_no = ? AND status = 'rated'", (req.case_no,)
        ) as cur:
            rated = await cur.fetchone()
        if rated is not None:
            raise Conflict("case %s already has its rating (invitation %s)" % (req.case_no, rated[0]),
                           "case_already_rated")
        superseded = await close_pending_invitations(conn, b.device_id, "superseded",
                                                     "superseded by a new invitation", t, actor,
                                                     "invitation.supersede", {"device": b.device_id})
        commands: list[tuple[str, Command]] = [(b.device_id, ("cancel", {"i": i})) for i in superseded]
        inv_id = req.invitation_id or new_invitation_id()
        expires = t + (cd + rules.grace_s) * 1000
        try:
            await conn.execute(
                "INSERT INTO invitations (id, device_id, window_id, staff_account, binding_id, case_no,"
                " task_code, task_name, dept_code, applicant_type, countdown_s, status, created_ms,"
                " expires_ms, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                (inv_id, b.device_id, b.window_id, b.staff_account, b.id, req.case_no, req.task_code,
                 req.task_name, req.dept_code, req.applicant_type, cd, t, expires, actor))
        except sqlite3.IntegrityError as e:
            raise Conflict("invitation could not be stored: %s" % e, "conflict") from None
        await audit(conn, actor, "invitation.create", inv_id,
                    {"device": b.device_id, "window": b.window_id, "staff": b.staff_account,
                     "case_no": req.case_no, "countdown_s": cd}, t)
        commands.append((b.device_id, ("invite", invite_fields(inv_id, req.case_no, req.task_name, cd))))
        inv = await get_invitation(conn, inv_id)
    return Outcome(inv, commands, created=True, superseded=superseded)


async def cancel(db: Database, inv_id: str, actor: str, at_ms: int | None = None) -> Outcome:
    t = now_ms() if at_ms is None else at_ms
    async with db.transaction() as conn:
        inv = await get_invitation(conn, inv_id)
        if inv.status != "pending":
            raise Conflict("invitation %s is already %s" % (inv_id, inv.status), "not_pending")
        await conn.execute(
            "UPDATE invitations SET status = 'cancelled', closed_ms = ?, close_reason = ? WHERE id = ?",
            (t, "cancelled by the window system", inv_id))
        await audit(conn, actor, "invitation.cancel", inv_id, {"device": inv.device_id}, t)
        inv = await get_invitation(conn, inv_id)
    return Outcome(inv, [(inv.device_id, ("cancel", {"i": inv_id}))], created=False)


async def expire_due(db: Database, at_ms: int | None = None) -> list[str]:
    """Close every pending invitation whose countdown + grace has passed; returns their ids."""
    t = now_ms() if at_ms is None else at_ms
    async with db.conn.execute(
        "SELECT id FROM invitations WHERE status = 'pending' AND expires_ms <= ?", (t,)
    ) as cur:
        due = [r[0] async for r in cur]
    if not due:
        return []
    async with db.transaction() as conn:
        for inv_id in due:
            cur = await conn.execute(
                "UPDATE invitations SET status = 'expired', closed_ms = expires_ms, close_reason = ?"
                " WHERE id = ? AND status = 'pending'", ("no record before countdown + grace", inv_id))
            if cur.rowcount:
                await audit(conn, "gateway", "invitation.expire", inv_id, {}, t)
    return due
