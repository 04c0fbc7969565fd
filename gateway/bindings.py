"""一码一账号: windows, clerk accounts and device bindings, with history and audit.

A binding ties one device to one (window, clerk) from valid_from_ms until valid_to_ms
(NULL while active). The database enforces at most one active binding per device, per
clerk and per window (partial unique indexes, migration 0002); this module adds clear
errors, the `--force` move, the audit trail, and the device commands a change implies.
Writes take the core's `Database` and run in `Database.transaction()` (one writer per
connection at a time); reads take a plain connection.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiosqlite

from gateway.store.db import Database

# The core's command publisher: signs with the device key, its current boot and counter.
SendCommand = Callable[[str, str, dict[str, Any]], Awaitable[None]]
Command = tuple[str, dict[str, Any]]

WINDOW_NO_MAX_BYTES = 16    # protocol: paired.win
CLERK_NAME_MAX_BYTES = 48   # protocol: paired.clerk
CASE_MAX_BYTES = 64         # protocol: invite.case
ITEM_MAX_BYTES = 96         # protocol: invite.item
MIN_COUNTDOWN_S = 5         # protocol: invite.cd


class AdminError(Exception):
    """A refused admin operation; `code` is stable, str() is one readable line."""

    code = "admin_error"
    http_status = 400

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotFound(AdminError):
    code = "not_found"
    http_status = 404


class Conflict(AdminError):
    code = "conflict"
    http_status = 409


class BadInput(AdminError):
    code = "bad_input"
    http_status = 400


@dataclass(frozen=True)
class Window:
    window_id: str
    dept_code: str
    name: str


@dataclass(frozen=True)
class Staff:
    account: str
    display_name: str


@dataclass(frozen=True)
class Binding:
    id: int
    device_id: str
    window_id: str
    staff_account: str
    display_name: str
    valid_from_ms: int
    valid_to_ms: int | None
    created_by: str
    ended_by: str | None

    @property
    def active(self) -> bool:
        return self.valid_to_ms is None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BindingChange:
    """What one pair/unpair did; on_binding_change turns it into device commands."""

    created: Binding | None = None
    closed: list[Binding] = field(default_factory=list)
    cancelled_invitations: list[tuple[str, str]] = field(default_factory=list)  # (id, device)
    unchanged: bool = False  # the same binding was already active

    @property
    def devices(self) -> list[str]:
        seen: list[str] = []
        for d in [b.device_id for b in self.closed] + ([self.created.device_id] if self.created else []):
            if d not in seen:
                seen.append(d)
        return seen


def now_ms() -> int:
    return int(time.time() * 1000)


def clip_utf8(text: str, max_bytes: int) -> str:
    """Cut text to at most max_bytes of UTF-8 without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or c == "\x7f" for c in text)


def check_text(name: str, value: Any, lo: int, hi: int, *, max_bytes: int | None = None) -> str:
    if not isinstance(value, str):
        raise BadInput("%s must be a string" % name)
    text: str = value.strip()
    if not lo <= len(text) <= hi:
        raise BadInput("%s must be %d..%d characters" % (name, lo, hi))
    if max_bytes is not None and len(text.encode("utf-8")) > max_bytes:
        raise BadInput("%s must be at most %d bytes of UTF-8" % (name, max_bytes))
    if _has_control(text):
        raise BadInput("%s contains a control character" % name)
    return text


async def audit(conn: aiosqlite.Connection, actor: str, action: str, subject: str,
                detail: dict[str, Any], at_ms: int) -> None:
    """One audit_log row (core table): who, when, what. Runs in the caller's transaction."""
    body = {"subject": subject, **detail}
    await conn.execute(
        "INSERT INTO audit_log (at_ms, actor, action, detail_json) VALUES (?, ?, ?, ?)",
        (at_ms, actor, action, json.dumps(body, ensure_ascii=False, sort_keys=True)),
    )


# ---- windows and staff ---------------------------------------------------------------------

async def add_window(db: Database, window_id: str, dept_code: str, name: str, actor: str) -> Window:
    window_id = check_text("window", window_id, 1, 16, max_bytes=WINDOW_NO_MAX_BYTES)
    dept_code = check_text("dept_code", dept_code, 0, 32)
    name = check_text("name", name, 0, 64)
    t = now_ms()
    async with db.transaction() as conn:
        try:
            await conn.execute(
                "INSERT INTO windows (window_id, dept_code, name, created_ms) VALUES (?, ?, ?, ?)",
                (window_id, dept_code, name, t),
            )
        except sqlite3.IntegrityError:
            raise Conflict("window %s already exists" % window_id, "window_exists") from None
        await audit(conn, actor, "window.add", window_id, {"dept_code": dept_code, "name": name}, t)
    return Window(window_id, dept_code, name)


async def list_windows(conn: aiosqlite.Connection) -> list[Window]:
    async with conn.execute("SELECT window_id, dept_code, name FROM windows ORDER BY window_id") as cur:
        return [Window(r[0], r[1], r[2]) async for r in cur]


async def get_window(conn: aiosqlite.Connection, window_id: str) -> Window:
    async with conn.execute(
        "SELECT window_id, dept_code, name FROM windows WHERE window_id = ?", (window_id,)
    ) as cur:
        r = await cur.fetchone()
    if r is None:
        raise NotFound("unknown window %s" % window_id, "unknown_window")
    return Window(r[0], r[1], r[2])


async def add_staff(db: Database, account: str, display_name: str, actor: str) -> Staff:
    account = check_text("account", account, 1, 64)
    display_name = check_text("display name", display_name, 1, 64)
    t = now_ms()
    async with db.transaction() as conn:
        try:
            await conn.execute(
                "INSERT INTO staff (account, display_name, created_ms) VALUES (?, ?, ?)",
                (account, display_name, t),
            )
        except sqlite3.IntegrityError:
            raise Conflict("staff account %s already exists" % account, "staff_exists") from None
        await audit(conn, actor, "staff.add", account, {"display_name": display_name}, t)
    return Staff(account, display_name)


async def list_staff(conn: aiosqlite.Connection) -> list[Staff]:
    async with conn.execute("SELECT account, display_name FROM staff ORDER BY account") as cur:
        return [Staff(r[0], r[1]) async for r in cur]


async def get_staff(conn: aiosqlite.Connection, account: str) -> Staff:
    async with conn.execute("SELECT account, display_name FROM staff WHERE account = ?", (account,)) as cur:
        r = await cur.fetchone()
    if r is None:
        raise NotFound("unknown staff account %s" % account, "unknown_staff")
    return Staff(r[0], r[1])


async def device_exists(conn: aiosqlite.Connection, device_id: str) -> bool:
    async with conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)) as cur:
        return await cur.fetchone() is not None


# ---- bindings ------------------------------------------------------------------------------

_BINDING_SELECT = (
    "SELECT b.id, b.device_id, b.window_id, b.staff_account, s.display_name,"
    " b.valid_from_ms, b.valid_to_ms, b.created_by, b.ended_by"
    " FROM bindings b JOIN staff s ON s.account = b.staff_account"
)


def _binding(r: Any) -> Binding:
    return Binding(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])


async def _bindings(conn: aiosqlite.Connection, where: str, args: tuple[Any, ...]) -> list[Binding]:
    async with conn.execute(_BINDING_SELECT + " WHERE " + where, args) as cur:
        return [_binding(r) async for r in cur]


async def active_binding(conn: aiosqlite.Connection, device_id: str) -> Binding | None:
    rows = await _bindings(conn, "b.device_id = ? AND b.valid_to_ms IS NULL", (device_id,))
    return rows[0] if rows else None


async def active_binding_for_window(conn: aiosqlite.Connection, window_id: str) -> Binding | None:
    rows = await _bindings(conn, "b.window_id = ? AND b.valid_to_ms IS NULL", (window_id,))
    return rows[0] if rows else None


async def active_binding_for_staff(conn: aiosqlite.Connection, account: str) -> Binding | None:
    rows = await _bindings(conn, "b.staff_account = ? AND b.valid_to_ms IS NULL", (account,))
    return rows[0] if rows else None


async def binding_at(conn: aiosqlite.Connection, device_id: str, at_ms: int) -> Binding | None:
    """The binding of device_id at the instant at_ms (a period is [from, to))."""
    rows = await _bindings(
        conn,
        "b.device_id = ? AND b.valid_from_ms <= ? AND (b.valid_to_ms IS NULL OR b.valid_to_ms > ?)"
        " ORDER BY b.valid_from_ms DESC LIMIT 1",
        (device_id, at_ms, at_ms),
    )
    return rows[0] if rows else None


async def list_bindings(conn: aiosqlite.Connection, history: bool = False) -> list[Binding]:
    if history:
        return await _bindings(conn, "1 ORDER BY b.device_id, b.valid_from_ms, b.id", ())
    return await _bindings(conn, "b.valid_to_ms IS NULL ORDER BY b.window_id", ())


async def _close(conn: aiosqlite.Connection, b: Binding, at_ms: int, actor: str, why: str,
                 change: BindingChange) -> None:
    # A binding closed in the same millisecond it opened keeps a zero-length period.
    end = max(at_ms, b.valid_from_ms)
    await conn.execute("UPDATE bindings SET valid_to_ms = ?, ended_by = ? WHERE id = ?", (end, actor, b.id))
    change.closed.append(Binding(b.id, b.device_id, b.window_id, b.staff_account, b.display_name,
                                 b.valid_from_ms, end, b.created_by, actor))
    await audit(conn, actor, "binding.close", b.device_id,
                {"binding_id": b.id, "window": b.window_id, "staff": b.staff_account, "why": why}, at_ms)
    # A pending invitation belongs to the clerk who issued it: it cannot outlive the binding.
    reason = "binding closed: " + why
    for inv_id in await close_pending_invitations(conn, b.device_id, "cancelled", reason, at_ms, actor,
                                                  "invitation.cancel", {"why": reason}):
        change.cancelled_invitations.append((inv_id, b.device_id))


async def close_pending_invitations(conn: aiosqlite.Connection, device_id: str, status: str, reason: str,
                                    at_ms: int, actor: str, action: str, detail: dict[str, Any]) -> list[str]:
    """Close the device's pending invitation(s) with `status` and `reason`, each audited as
    `action` with `detail`, in the caller's transaction; return their ids."""
    async with conn.execute(
        "SELECT id FROM invitations WHERE device_id = ? AND status = 'pending'", (device_id,)
    ) as cur:
        pending = [r[0] async for r in cur]
    for inv_id in pending:
        await conn.execute(
            "UPDATE invitations SET status = ?, closed_ms = ?, close_reason = ? WHERE id = ?",
            (status, at_ms, reason, inv_id),
        )
        await audit(conn, actor, action, inv_id, detail, at_ms)
    return pending


async def pair(db: Database, device_id: str, window_id: str, staff_account: str, actor: str, *,
               force: bool = False, at_ms: int | None = None) -> BindingChange:
    """Bind device_id to (window, clerk) from now on.

    Without force, any other active binding of the device, the clerk or the window is a
    Conflict; with force those bindings are closed at the same instant (audited).
    Re-pairing the exact same (device, window, clerk) is a no-op, not a new history row.
    """
    t = now_ms() if at_ms is None else at_ms
    change = BindingChange()
    async with db.transaction() as conn:
        if not await device_exists(conn, device_id):
            raise NotFound("unknown device %s (register it first)" % device_id, "unknown_device")
        window = await get_window(conn, window_id)
        staff = await get_staff(conn, staff_account)
        current = await active_binding(conn, device_id)
        if current and current.window_id == window.window_id and current.staff_account == staff.account:
            change.created = current
            change.unchanged = True
            return change
        clashes: list[tuple[str, Binding]] = []
        for what, b in (("device " + device_id, current),
                        ("window " + window.window_id,
                         await active_binding_for_window(conn, window.window_id)),
                        ("staff " + staff.account, await active_binding_for_staff(conn, staff.account))):
            if b is not None and all(b.id != c.id for _, c in clashes):
                clashes.append((what, b))
        if clashes and not force:
            what, b = clashes[0]
            raise Conflict(
                "%s is already bound (device %s, window %s, staff %s since %s); use --force to move it"
                % (what, b.device_id, b.window_id, b.staff_account, fmt_ms(b.valid_from_ms)),
                "already_bound",
            )
        for _, b in clashes:
            await _close(conn, b, t, actor, "moved by pair of %s" % device_id, change)
        cur = await conn.execute(
            "INSERT INTO bindings (device_id, window_id, staff_account, valid_from_ms, created_by)"
            " VALUES (?, ?, ?, ?, ?)",
            (device_id, window.window_id, staff.account, t, actor),
        )
        bid = cur.lastrowid
        assert bid is not None
        await audit(conn, actor, "binding.open", device_id,
                    {"binding_id": bid, "window": window.window_id, "staff": staff.account,
                     "forced": bool(clashes)}, t)
        change.created = Binding(bid, device_id, window.window_id, staff.account, staff.display_name,
                                 t, None, actor, None)
    return change


async def unpair(db: Database, device_id: str, actor: str, *, at_ms: int | None = None) -> BindingChange:
    t = now_ms() if at_ms is None else at_ms
    change = BindingChange()
    async with db.transaction() as conn:
        b = await active_binding(conn, device_id)
        if b is None:
            raise NotFound("device %s has no active binding" % device_id, "not_bound")
        await _close(conn, b, t, actor, "unpair", change)
    return change


def fmt_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


# ---- device state --------------------------------------------------------------------------

def paired_command(b: Binding) -> Command:
    return ("paired", {"win": clip_utf8(b.window_id, WINDOW_NO_MAX_BYTES),
                       "clerk": clip_utf8(b.display_name, CLERK_NAME_MAX_BYTES)})


async def state_for_device(conn: aiosqlite.Connection, device_id: str,
                           at_ms: int | None = None) -> list[Command]:
    """The commands that restore a device's state after its hello: paired/unpaired, then the
    pending invitation (with the countdown that is left) if there is one."""
    t = now_ms() if at_ms is None else at_ms
    b = await active_binding(conn, device_id)
    if b is None:
        return [("unpaired", {})]
    out: list[Command] = [paired_command(b)]
    async with conn.execute(
        "SELECT id, case_no, task_name, created_ms, countdown_s FROM invitations"
        " WHERE device_id = ? AND status = 'pending' ORDER BY created_ms DESC LIMIT 1", (device_id,)
    ) as cur:
        r = await cur.fetchone()
    if r is not None:
        left_s = (r[3] + r[4] * 1000 - t) // 1000
        if left_s >= MIN_COUNTDOWN_S:
            out.append(("invite", invite_fields(r[0], r[1], r[2], int(left_s))))
    return out


def invite_fields(inv_id: str, case_no: str, task_name: str, countdown_s: int) -> dict[str, Any]:
    return {"i": inv_id, "case": clip_utf8(case_no, CASE_MAX_BYTES),
            "item": clip_utf8(task_name, ITEM_MAX_BYTES), "cd": countdown_s}


async def on_binding_change(conn: aiosqlite.Connection, send_command: SendCommand,
                            change: BindingChange) -> list[str]:
    """Tell every device a pair/unpair touched: `cancel` for invitations the change closed,
    then `paired` or `unpaired` as the device is now. Returns the devices that could not be
    reached (they learn their state at their next hello via state_for_device)."""
    failed: list[str] = []
    for inv_id, dev in change.cancelled_invitations:
        try:
            await send_command(dev, "cancel", {"i": inv_id})
        except Exception:  # noqa: BLE001 - one unreachable device must not stop the others
            failed.append(dev)
    for dev in change.devices:
        b = await active_binding(conn, dev)
        cmd = paired_command(b) if b else ("unpaired", {})
        try:
            await send_command(dev, cmd[0], cmd[1])
        except Exception:  # noqa: BLE001
            if dev not in failed:
                failed.append(dev)
    return failed
