"""一码一账号: windows, clerk accounts and device bindings, with history and audit.

A binding ties one device to one (window, clerk) from valid_from_ms until valid_to_ms
(None while active). The store enforces at most one active binding per device, per clerk and
per window, and an append-only history (migration 0002 of each backend); this module adds
clear errors, the `--force` move, the audit trail, and the device commands a change implies.
Every function takes the `Store` and runs its reads and writes as units of work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import fmt_ms, now_ms
from gateway.errors import BadInput, Conflict, DomainError, NotFound
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.errors import IntegrityError
from gateway.store.rows import Binding, Staff, Window

__all__ = ["AdminError", "BadInput", "Binding", "BindingChange", "Command", "Conflict", "NotFound",
           "SendCommand", "Staff", "Window", "now_ms", "fmt_ms"]

# The core's command publisher: signs with the device key, its current boot and counter.
SendCommand = Callable[[str, str, dict[str, Any]], Awaitable[None]]
Command = tuple[str, dict[str, Any]]
AdminError = DomainError   # the name the admin modules use for any refusal

WINDOW_NO_MAX_BYTES = 16    # protocol: paired.win
CLERK_NAME_MAX_BYTES = 48   # protocol: paired.clerk
CASE_MAX_BYTES = 64         # protocol: invite.case
ITEM_MAX_BYTES = 96         # protocol: invite.item
MIN_COUNTDOWN_S = 5         # protocol: invite.cd


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


def audit(tx: Tx, actor: str, action: str, subject: str, detail: dict[str, Any], at_ms: int) -> None:
    """One audit row: who, when, what, in the caller's unit of work."""
    tx.audit.add(at_ms, actor, action, {"subject": subject, **detail})


# ---- windows and staff ---------------------------------------------------------------------

async def add_window(store: Store, window_id: str, dept_code: str, name: str, actor: str,
                     hall_id: str | None = None) -> Window:
    """A new window (gateway.org.add_window: the department code is checked, the place kept)."""
    from gateway import org  # org builds on this module
    from gateway.config import HallConfig
    return await org.add_window(store, HallConfig(), window_id, dept_code, name, hall_id, actor)


async def list_windows(store: Store) -> list[Window]:
    return await store.read(lambda tx: tx.org.list_windows())


def get_window(tx: Tx, window_id: str) -> Window:
    w = tx.org.get_window(window_id)
    if w is None:
        raise NotFound("unknown window %s" % window_id, "unknown_window")
    return w


async def add_staff(store: Store, account: str, display_name: str, actor: str, dept_code: str = "") -> Staff:
    """A new clerk account (gateway.org.add_staff)."""
    from gateway import org
    return await org.add_staff(store, account, display_name, dept_code, actor)


async def list_staff(store: Store) -> list[Staff]:
    return await store.read(lambda tx: tx.org.list_staff())


def get_staff(tx: Tx, account: str) -> Staff:
    s = tx.org.get_staff(account)
    if s is None:
        raise NotFound("unknown staff account %s" % account, "unknown_staff")
    return s


# ---- bindings ------------------------------------------------------------------------------

async def active_binding(store: Store, device_id: str) -> Binding | None:
    return await store.read(lambda tx: tx.bindings.active_for_device(device_id))


async def binding_at(store: Store, device_id: str, at_ms: int) -> Binding | None:
    """The binding of device_id at the instant at_ms (a period is [from, to))."""
    return await store.read(lambda tx: tx.bindings.at(device_id, at_ms))


async def list_bindings(store: Store, history: bool = False) -> list[Binding]:
    return await store.read(lambda tx: tx.bindings.listing(history))


def _close(tx: Tx, b: Binding, at_ms: int, actor: str, why: str, change: BindingChange) -> None:
    # A binding closed in the same millisecond it opened keeps a zero-length period.
    end = max(at_ms, b.valid_from_ms)
    tx.bindings.close(b.id, end, actor)
    change.closed.append(Binding(b.id, b.device_id, b.window_id, b.staff_account, b.display_name,
                                 b.valid_from_ms, end, b.created_by, actor))
    audit(tx, actor, "binding.close", b.device_id,
          {"binding_id": b.id, "window": b.window_id, "staff": b.staff_account, "why": why}, at_ms)
    # A pending invitation belongs to the clerk who issued it: it cannot outlive the binding.
    reason = "binding closed: " + why
    for inv_id in close_pending_invitations(tx, b.device_id, "cancelled", reason, at_ms, actor,
                                            "invitation.cancel", {"why": reason}):
        change.cancelled_invitations.append((inv_id, b.device_id))


def close_pending_invitations(tx: Tx, device_id: str, status: str, reason: str, at_ms: int, actor: str,
                              action: str, detail: dict[str, Any]) -> list[str]:
    """Close the device's pending invitation(s) with `status` and `reason`, each audited as
    `action` with `detail`, in the caller's unit of work; return their ids."""
    pending = tx.invitations.pending_ids(device_id)
    for inv_id in pending:
        tx.invitations.close(inv_id, status, at_ms, reason)
        audit(tx, actor, action, inv_id, detail, at_ms)
    return pending


# Change-feed kinds for a binding change made where no device can be told (the CLI, another
# process): the leader among the running gateways tells the devices (deliver_noted).
NOTE_DEVICE = "device.binding"
NOTE_CANCEL = "invitation.cancel"


def _note(tx: Tx, change: BindingChange, at_ms: int) -> None:
    for inv_id, _ in change.cancelled_invitations:
        tx.changes.note(NOTE_CANCEL, inv_id, at_ms)
    for dev in change.devices:
        tx.changes.note(NOTE_DEVICE, dev, at_ms)


async def pair(store: Store, device_id: str, window_id: str, staff_account: str, actor: str, *,
               force: bool = False, at_ms: int | None = None, tell_later: bool = False) -> BindingChange:
    """Bind device_id to (window, clerk) from now on.

    Without force, any other active binding of the device, the clerk or the window is a
    Conflict; with force those bindings are closed at the same instant (audited).
    Re-pairing the exact same (device, window, clerk) is a no-op, not a new history row.
    tell_later: the caller cannot send device commands (the CLI): the change is noted in the
    change feed, in the same unit of work, and the running gateway's leader tells the devices.
    """
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> BindingChange:
        change = BindingChange()
        if not tx.devices.exists(device_id):
            raise NotFound("unknown device %s (register it first)" % device_id, "unknown_device")
        window = get_window(tx, window_id)
        staff = get_staff(tx, staff_account)
        from gateway.org import check_active
        check_active(tx, window.window_id, staff.account)   # no new binding for a retired one
        current = tx.bindings.active_for_device(device_id)
        if current and current.window_id == window.window_id and current.staff_account == staff.account:
            change.created = current
            change.unchanged = True
            return change
        clashes: list[tuple[str, Binding]] = []
        for what, b in (("device " + device_id, current),
                        ("window " + window.window_id, tx.bindings.active_for_window(window.window_id)),
                        ("staff " + staff.account, tx.bindings.active_for_staff(staff.account))):
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
            _close(tx, b, t, actor, "moved by pair of %s" % device_id, change)
        try:
            bid = tx.bindings.open(device_id, window.window_id, staff.account, t, actor)
        except IntegrityError as e:
            raise Conflict("binding refused: %s" % e, "binding_refused") from None
        audit(tx, actor, "binding.open", device_id,
              {"binding_id": bid, "window": window.window_id, "staff": staff.account,
               "forced": bool(clashes)}, t)
        change.created = Binding(bid, device_id, window.window_id, staff.account, staff.display_name,
                                 t, None, actor, None)
        if tell_later:
            _note(tx, change, t)
        return change
    return await store.write(unit)


async def unpair(store: Store, device_id: str, actor: str, *, at_ms: int | None = None,
                 tell_later: bool = False) -> BindingChange:
    """Close device_id's active binding (tell_later: as for pair)."""
    t = now_ms() if at_ms is None else at_ms

    def unit(tx: Tx) -> BindingChange:
        change = BindingChange()
        b = tx.bindings.active_for_device(device_id)
        if b is None:
            raise NotFound("device %s has no active binding" % device_id, "not_bound")
        _close(tx, b, t, actor, "unpair", change)
        if tell_later:
            _note(tx, change, t)
        return change
    return await store.write(unit)


# ---- device state --------------------------------------------------------------------------

def paired_command(b: Binding) -> Command:
    return ("paired", {"win": clip_utf8(b.window_id, WINDOW_NO_MAX_BYTES),
                       "clerk": clip_utf8(b.display_name, CLERK_NAME_MAX_BYTES)})


async def state_for_device(store: Store, device_id: str, at_ms: int | None = None) -> list[Command]:
    """The commands that restore a device's state after its hello: paired/unpaired, then the
    pending invitation (with the countdown that is left) if there is one."""
    t = now_ms() if at_ms is None else at_ms
    b, inv = await store.read(lambda tx: (tx.bindings.active_for_device(device_id),
                                          tx.invitations.latest_pending(device_id)))
    if b is None:
        return [("unpaired", {})]
    out: list[Command] = [paired_command(b)]
    if inv is not None:
        left_s = (inv.created_ms + inv.countdown_s * 1000 - t) // 1000
        if left_s >= MIN_COUNTDOWN_S:
            out.append(("invite", invite_fields(inv.id, inv.case_no, inv.task_name, int(left_s))))
    return out


def invite_fields(inv_id: str, case_no: str, task_name: str, countdown_s: int) -> dict[str, Any]:
    return {"i": inv_id, "case": clip_utf8(case_no, CASE_MAX_BYTES),
            "item": clip_utf8(task_name, ITEM_MAX_BYTES), "cd": countdown_s}


async def on_binding_change(store: Store, send_command: SendCommand, change: BindingChange) -> list[str]:
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
        b = await active_binding(store, dev)
        cmd = paired_command(b) if b else ("unpaired", {})
        try:
            await send_command(dev, cmd[0], cmd[1])
        except Exception:  # noqa: BLE001
            if dev not in failed:
                failed.append(dev)
    return failed


async def deliver_noted(store: Store, send_command: SendCommand, notes: list[tuple[str, str]]) -> list[str]:
    """Tell devices of the binding changes noted in the change feed (kind, subject): `cancel`
    for each cancelled invitation, then each device's state as it is now (paired/unpaired and
    a pending invitation, as after a hello). Returns the devices that could not be reached
    (they learn their state at their next hello)."""
    cancels = [s for k, s in notes if k == NOTE_CANCEL]
    devices = list(dict.fromkeys(s for k, s in notes if k == NOTE_DEVICE))
    failed: list[str] = []
    if cancels:
        invs = await store.read(lambda tx: [tx.invitations.get(i) for i in cancels])
        for inv in invs:
            if inv is None:
                continue
            try:
                await send_command(inv.device_id, "cancel", {"i": inv.id})
            except Exception:  # noqa: BLE001 - one unreachable device must not stop the others
                failed.append(inv.device_id)
    for dev in devices:
        try:
            for t, fields in await state_for_device(store, dev):
                await send_command(dev, t, fields)
        except Exception:  # noqa: BLE001
            if dev not in failed:
                failed.append(dev)
    return failed
