"""The QR channel's domain service (issue 19): plates, case links, and ratings given on the page.

One service for the CLI (gateway/cli_qr.py), the admin API (gateway/api/qr.py), the public page
(gateway/qr/page.py) and, later, the web console. Everything it changes is a unit of work on the
store; ratings go the way a device's press goes:

- A rating is a `records` row (channel 'qr') of the window's QR point (gateway/qr/points.py),
  credited to a binding, and, when it answers an open invitation, that invitation's one rating:
  the invitation is claimed with a guarded UPDATE (pending -> rated), so whichever of the
  evaluator and the phone comes first is the case's rating, and a later one is stored as a
  flagged extra, never a second rating. Its 差评 opens a complaint through ComplaintService in
  the same transaction, with the reasons the citizen chose; the uplink then uploads the record
  like any other (pf from [uplink] qr_pf).
- Every submission is keyed by its form's one-time id (qr_submissions): a retried or doubled
  POST finds its own row and answers the same, nothing is stored twice.

Plates (static, one per window and clerk): a plate is issued for the binding active at its window
and names that clerk. A rating through it is credited to the binding active at the window at the
moment of the rating, if that binding is still the same clerk's at the same window (a device
swapped under the same clerk keeps the plate working: it follows the binding's history); once the
clerk is no longer bound there the plate credits nobody: the page says it is out of use and the
rating is refused (counted). A leaked plate is revoked (`qr revoke`); reprinting a plate
(`qr plate`) gives the same code until it is revoked.

Case links (dynamic, per invitation, for the receipt): "<public_url>/q/c/<invitation id>.<sig>".
The link rates its invitation once while the invitation is open (a receipt invitation for [qr]
receipt_valid_min; an evaluator's invitation during its countdown, for a display device to show
it), then offers the case's follow-up rating (追加评价, assessNumber 2) within [complaints]
follow_up_days working days, once.

The hall a window belongs to is taken by `hall_of_window`, from the district's organisation
(gateway/org.py); a QR record carries the window's hall and department at its time like a
device's record (gateway/attribution.py).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from gateway import bindings, org
from gateway.attribution import AttributionRules
from gateway.bindings import BindingChange, SendCommand
from gateway.clock import now_ms
from gateway.complaints import TEXT_MAX, ComplaintService, Tag, fmt_deadline, fmt_time
from gateway.config import Config, ConfigError, HallConfig
from gateway.errors import BadInput, Conflict, DomainError, NotFound
from gateway.flags import add_flag
from gateway.invitations import InvitationRules, follow_up_period, new_invitation_id
from gateway.qr import tokens
from gateway.qr.limits import Refusals
from gateway.qr.points import ensure_point
from gateway.qr.settings import QrSettings
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.errors import IntegrityError
from gateway.store.rows import Binding, Invitation, NewInvitation, QrPlate, QrSubmission
from gateway.workdays import WorkCalendar
from protocol.grades import BAD, GRADES, NAMES_ZH

log = logging.getLogger("gateway.qr")

ACTOR = "qr"           # what the page's citizen is called in complaint histories
PLATE_ID = re.compile(r"[A-Za-z0-9_-]{8,32}")


class QrRefusal(DomainError):
    """What the page tells the citizen instead of taking a rating: a stable code, the HTTP
    status, and the words (Chinese) for the page; the English line for logs and the API."""

    def __init__(self, code: str, status: int, zh: str, message: str) -> None:
        super().__init__(message, code)
        self.status = status
        self.zh = zh


def _refuse(code: str) -> QrRefusal:
    status, zh, en = REFUSALS[code]
    return QrRefusal(code, status, zh, en)


_UNRECOGNISED = "无法识别此评价码，请重新扫描窗口或回执上的二维码。"
REFUSALS: dict[str, tuple[int, str, str]] = {
    "malformed": (404, _UNRECOGNISED, "not a QR token"),
    "forged": (404, _UNRECOGNISED, "forged QR token"),
    # A retired key's tokens cannot be told from forged ones (retire only after reprinting).
    "unknown_key": (404, _UNRECOGNISED, "token of an unknown or retired key"),
    "unknown": (404, _UNRECOGNISED, "no such plate or case"),
    "revoked": (410, "此评价码已停用，请扫描窗口现有的评价码或向工作人员咨询。", "plate revoked"),
    "inactive": (410, "此评价码对应的工作人员已不在本窗口，评价码已停用。请扫描窗口现有的评价码。",
                 "the plate's clerk is no longer bound at its window"),
    "expired": (410, "此评价链接已过期。", "the case link has expired"),
    "used": (409, "此评价链接已使用过，本办件已评价。", "the case link was used already"),
    "followed_up": (409, "本办件已追加评价，感谢您的参与。", "the case has its follow-up rating"),
    "follow_up_closed": (410, "本办件的追加评价期限已过。", "the follow-up period is over"),
    "no_follow_up": (409, "本办件暂不能追加评价。", "the case has no rating to follow up"),
    "calendar": (503, "暂时无法计算追加评价的期限，请稍后再试或向窗口工作人员反映。",
                 "the working-day calendar does not know the year of the follow-up period"),
    "bad_grade": (400, "请选择一个评价等级。", "grade must be one of vs s bs d vd"),
    "need_tags": (400, "选择“不满意”或“非常不满意”时，请至少选择一项原因。",
                  "a 差评 needs at least one reason tag"),
    "bad_tag": (400, "所选原因无效，请重新选择。", "unknown reason tag"),
    "bad_text": (400, "补充说明最多 %d 字，且不能含控制字符。" % TEXT_MAX, "bad free text"),
    "form_expired": (400, "页面已过期，请重新评价。", "the form is too old or not ours"),
}


@dataclass(frozen=True)
class HallView:
    id: str
    name: str
    config: org.Hall       # its zone, opening hours and days (China's working-day calendar)

    @property
    def tz(self) -> ZoneInfo:
        return self.config.tz


def hall_of_window(tx: Tx, window_id: str, hall: HallConfig, settings: QrSettings,
                   at_ms: int | None = None) -> HallView:
    """The hall a window is in, in the district's organisation (gateway/org.py): its place at
    at_ms (a rating's time), else now; a window with no hall is the default hall's ([hall]),
    whose name on the page is [qr] hall_name when set."""
    if at_ms is not None:
        hall_id, _ = org.place_at(tx, window_id, at_ms)
    else:
        w = tx.org.get_window(window_id)
        hall_id = w.hall_id if w is not None else None
    h = org.find_hall(tx, hall, hall_id) or org.default_hall(hall)
    name = (settings.hall_name or h.name) if h.hall_id == hall.id else h.name
    return HallView(h.hall_id, name, h)


@dataclass(frozen=True)
class CaseView:
    case_no_tail: str      # the case number's end only: the page is public
    task_name: str


@dataclass
class Page:
    """What the page shows for a plate or a case link (gateway/qr/page.py renders it)."""

    state: str             # rate | follow_up | done (after a submission) | closed
    via: str               # plate | case
    hall_name: str
    window_id: str
    window_name: str
    clerk_name: str
    clerk_account: str
    form: str = ""         # the form token (rate, follow_up)
    case: CaseView | None = None
    purpose: str = "first"   # first | follow_up
    follow_up_due: str | None = None    # "2026-10-13 24:00+08:00"
    note_zh: str = ""      # an extra line (already rated elsewhere, ...)
    follow_up_url: str = ""   # after a plate rating of a case: the case's link, for its follow-up
    grade: str | None = None
    grade_zh: str = ""
    rated_at: str | None = None
    outcome: str = ""      # rated | follow_up | extra | walkup
    tags: dict[str, list[Tag]] = field(default_factory=dict)
    chosen_tags: list[str] = field(default_factory=list)
    text: str = ""
    error_zh: str = ""


@dataclass(frozen=True)
class Submitted:
    submission: QrSubmission
    repeat: bool                       # the same form again: nothing new was stored
    commands: list[tuple[str, str, dict[str, Any]]]   # (device, type, fields) to send after the commit


def mask_case(case_no: str) -> str:
    return case_no if len(case_no) <= 4 else "…" + case_no[-4:]


class QrService:
    def __init__(self, store: Store, settings: QrSettings, ring: tokens.KeyRing, complaints: ComplaintService,
                 rules: InvitationRules, attribution: AttributionRules, calendar: WorkCalendar,
                 hall: HallConfig, send_command: SendCommand | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.settings = settings
        self.ring = ring
        self.complaints = complaints
        self.rules = rules
        self.attribution = attribution
        self.calendar = calendar
        self.hall = hall
        self.send_command = send_command
        self.clock = clock
        self.refusals = Refusals()   # the page's refusals by reason (saved by limits.refusals_job)

    @classmethod
    def from_config(cls, store: Store, cfg: Config, complaints: ComplaintService | None = None,
                    send_command: SendCommand | None = None,
                    clock: Callable[[], int] = now_ms) -> QrService | None:
        """The service of a config with [qr] (None without); the key file is made on first use."""
        settings = cfg.sections.get("qr")
        if settings is None:
            return None
        try:
            ring = tokens.KeyRing.open(settings.key_file, create=True)
        except tokens.KeyFileError as e:
            raise ConfigError("[qr] key_file: %s" % e) from None
        except OSError as e:
            raise ConfigError("[qr] key_file %s: %s" % (settings.key_file, e.strerror or e)) from None
        return cls(store, settings, ring, complaints or ComplaintService.from_config(store, cfg, clock),
                   InvitationRules.from_config(cfg), AttributionRules.from_config(cfg),
                   WorkCalendar(cfg.sections.get("calendar")), cfg.hall, send_command, clock)

    # -- links -------------------------------------------------------------------------------

    def plate_url(self, plate_id: str) -> str:
        return "%s/q/p/%s" % (self.settings.base, tokens.sign(self.ring, "p", plate_id))

    def case_url(self, invitation_id: str) -> str:
        return "%s/q/c/%s" % (self.settings.base, tokens.sign(self.ring, "c", invitation_id))

    def check_subject(self, kind: str, token: str) -> str:
        """The plate id or invitation id of a genuine token; QrRefusal otherwise."""
        return self._subject(kind, token)

    def _subject(self, kind: str, token: str) -> str:
        try:
            return tokens.verify(self.ring, kind, token)
        except tokens.BadToken as e:
            raise _refuse(e.code) from None

    async def case_link(self, invitation_id: str) -> dict[str, Any]:
        """The receipt link of an invitation: its URL and until when it takes the first rating."""
        inv = await self.store.read(lambda tx: tx.invitations.get(invitation_id))
        if inv is None:
            raise NotFound("unknown invitation %s" % invitation_id, "unknown_invitation")
        return self.link_view(inv)

    def link_view(self, inv: Invitation) -> dict[str, Any]:
        return {"url": self.case_url(inv.id), "valid_until_ms": inv.expires_ms,
                "valid_until": fmt_time(inv.expires_ms, self.hall.tz), "receipt": inv.receipt}

    # -- QR points and plates (hall admins) ---------------------------------------------------

    async def bind(self, window_id: str, staff_account: str, actor: str,
                   force: bool = False) -> BindingChange:
        """Bind the window's QR point to a clerk (a QR-only window: no evaluator there)."""
        t = self.clock()
        window_id = bindings.check_text("window", window_id, 1, 16, max_bytes=bindings.WINDOW_NO_MAX_BYTES)
        point = await self.store.write(
            lambda tx: ensure_point(tx, bindings.get_window(tx, window_id).window_id, t, actor))
        change = await bindings.pair(self.store, point, window_id, staff_account, actor, force=force, at_ms=t)
        await self._tell_devices(change)
        return change

    async def unbind(self, window_id: str, actor: str) -> BindingChange:
        point = await self.store.read(lambda tx: tx.qr.point_of_window(window_id))
        if point is None:
            raise NotFound("window %s has no QR point" % window_id, "not_bound")
        change = await bindings.unpair(self.store, point, actor, at_ms=self.clock())
        await self._tell_devices(change)
        return change

    async def _tell_devices(self, change: BindingChange) -> None:
        """An evaluator moved off the window by `bind --force` gets its commands; points get none."""
        if self.send_command is None or change.unchanged:
            return
        points = await self.store.read(lambda tx: {d for d in change.devices if tx.qr.is_point(d)})
        real = BindingChange(
            change.created if change.created is not None and change.created.device_id not in points else None,
            [b for b in change.closed if b.device_id not in points],
            [(i, d) for i, d in change.cancelled_invitations if d not in points])
        await bindings.on_binding_change(self.store, self.send_command, real)

    async def issue_plate(self, window_id: str, actor: str, new: bool = False) -> tuple[QrPlate, Binding]:
        """The plate of the window's current (window, clerk): the active one again (a reprint is
        the same code), or a new one (new=True revokes the old ones: a lost or leaked plate)."""
        t = self.clock()

        def unit(tx: Tx) -> tuple[QrPlate, Binding]:
            w = bindings.get_window(tx, window_id)
            b = tx.bindings.active_for_window(w.window_id)
            if b is None:
                raise Conflict("no clerk is bound at window %s: pair its evaluator, or bind its QR code"
                               " (hcp-gateway qr bind --window %s --staff ACCOUNT)"
                               % (w.window_id, w.window_id), "no_clerk_bound")
            old = tx.qr.active_plate(w.window_id, b.staff_account)
            if old is not None and not new:
                return old, b
            for p in tx.qr.plates(False, w.window_id):
                if p.staff_account == b.staff_account and tx.qr.revoke_plate(p.id, t, actor, "replaced"):
                    tx.audit.add(t, actor, "qr.plate.revoke", {"subject": p.id, "window": p.window_id,
                                                                "reason": "replaced"})
            ensure_point(tx, w.window_id, t, actor)
            pid = secrets.token_urlsafe(9)    # 12 characters
            tx.qr.add_plate(pid, self.ring.current.kid, w.window_id, b.staff_account, b.id, t, actor)
            tx.audit.add(t, actor, "qr.plate.issue", {"subject": pid, "window": w.window_id,
                                                       "staff": b.staff_account, "binding_id": b.id})
            plate = tx.qr.get_plate(pid)
            assert plate is not None
            return plate, b

        return await self.store.write(unit)

    async def render_plate(self, window_id: str, fmt: str, size: str, actor: str,
                           new: bool = False) -> tuple[QrPlate, bytes]:
        """The plate file (pdf | png | svg, A4 | A5) of a window's current clerk."""
        from gateway.qr.plate import PaperSize, PlateError, PlateInfo, render_plate
        if fmt not in ("pdf", "png", "svg"):
            raise BadInput("format must be pdf, png or svg", "bad_format")
        if size not in ("A4", "A5"):
            raise BadInput("size must be A4 or A5", "bad_size")
        plate, b = await self.issue_plate(window_id, actor, new)

        def read(tx: Tx) -> tuple[str, HallView]:
            w = tx.org.get_window(plate.window_id)
            return (w.name if w is not None else ""), hall_of_window(tx, plate.window_id, self.hall,
                                                                     self.settings)
        wname, hall = await self.store.read(read)
        info = PlateInfo(hall_name=hall.name, window_number=plate.window_id, window_name=wname,
                         clerk_name=b.display_name, clerk_number=plate.staff_account,
                         url=self.plate_url(plate.id), size=PaperSize(size))
        try:
            return plate, await render_plate(info, fmt, self.settings.plate)
        except PlateError as e:
            raise BadInput("plate not drawn: %s" % e, "plate_error") from None

    async def plates(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        """Every plate with its state now (active / revoked / inactive) and how often it was used."""

        def read(tx: Tx) -> list[dict[str, Any]]:
            rows = tx.qr.plates(include_revoked)
            used = tx.qr.plate_ratings([p.id for p in rows])
            out = []
            for p in rows:
                d = p.as_dict()
                b = tx.bindings.active_for_window(p.window_id)
                live = b is not None and b.staff_account == p.staff_account
                d["state"] = "revoked" if p.revoked else "active" if live else "inactive"
                d["ratings"], last = used.get(p.id, (0, None))
                d["last_rating_ms"] = last
                for k in ("issued", "revoked", "last_rating"):
                    d[k + "_at"] = fmt_time(d[k + "_ms"], self.hall.tz)
                out.append(d)
            return out

        return await self.store.read(read)

    async def revoke(self, plate_id: str, actor: str, reason: str) -> QrPlate:
        if not isinstance(plate_id, str) or not PLATE_ID.fullmatch(plate_id):
            raise BadInput("plate id must be 8..32 of [A-Za-z0-9_-] (see qr list)", "bad_plate_id")
        reason = bindings.check_text("reason", reason, 1, 200)
        t = self.clock()

        def unit(tx: Tx) -> QrPlate:
            p = tx.qr.get_plate(plate_id)
            if p is None:
                raise NotFound("unknown plate %s" % plate_id, "unknown_plate")
            if not tx.qr.revoke_plate(plate_id, t, actor, reason):
                raise Conflict("plate %s was revoked already" % plate_id, "already_revoked")
            tx.audit.add(t, actor, "qr.plate.revoke", {"subject": plate_id, "window": p.window_id,
                                                        "reason": reason})
            out = tx.qr.get_plate(plate_id)
            assert out is not None
            return out

        return await self.store.write(unit)

    async def points(self) -> list[dict[str, Any]]:
        return await self.store.read(lambda tx: tx.qr.points())

    # -- the page: what to show ---------------------------------------------------------------

    def _tags(self) -> dict[str, list[Tag]]:
        ts = self.complaints.settings.tags_in_force
        return {g: list(ts.by_grade.get(g, ())) for g in BAD} if ts is not None else {g: [] for g in BAD}

    def _form(self, kind: str, subject: str) -> str:
        return tokens.form_token(self.ring, kind, subject, self.clock() // 1000)

    def _page(self, tx: Tx, via: str, b_window: str, staff: str, hall: HallView) -> Page:
        w = tx.org.get_window(b_window)
        s = tx.org.get_staff(staff)
        return Page("rate", via, hall.name, b_window, w.name if w is not None else "",
                    s.display_name if s is not None else staff, staff, tags=self._tags())

    async def view_plate(self, token: str) -> Page:
        plate_id = self._subject("p", token)
        t = self.clock()

        def read(tx: Tx) -> Page:
            plate, b = self._plate_binding(tx, plate_id)
            hall = hall_of_window(tx, plate.window_id, self.hall, self.settings)
            page = self._page(tx, "plate", plate.window_id, plate.staff_account, hall)
            inv = self._waiting(tx, b, t)
            if inv is not None:
                page.case = CaseView(mask_case(inv.case_no), inv.task_name)
            return page

        page = await self.store.read(read)
        page.form = self._form("p", plate_id)
        return page

    def _plate_binding(self, tx: Tx, plate_id: str) -> tuple[QrPlate, Binding]:
        plate = tx.qr.get_plate(plate_id)
        if plate is None:
            raise _refuse("unknown")
        if plate.revoked:
            raise _refuse("revoked")
        b = tx.bindings.active_for_window(plate.window_id)
        if b is None or b.staff_account != plate.staff_account:
            raise _refuse("inactive")
        return plate, b

    @staticmethod
    def _waiting(tx: Tx, b: Binding, t: int) -> Invitation | None:
        """The case waiting at the window for its rating: the invitation shown on its evaluator,
        or, at a QR-only window, the one waiting for its plate."""
        inv = tx.invitations.latest_pending(b.device_id)
        return inv if inv is not None and inv.expires_ms > t else None

    async def view_case(self, token: str) -> Page:
        inv_id = self._subject("c", token)
        t = self.clock()

        def read(tx: Tx) -> Page:
            inv = tx.invitations.get(inv_id)
            if inv is None:
                raise _refuse("unknown")
            hall = hall_of_window(tx, inv.window_id, self.hall, self.settings)
            page = self._page(tx, "case", inv.window_id, inv.staff_account, hall)
            page.case = CaseView(mask_case(inv.case_no), inv.task_name)
            if inv.status == "pending" and inv.expires_ms > t:
                return page
            return self._follow_up_page(tx, inv, page, t, hall)

        page = await self.store.read(read)
        if page.state in ("rate", "follow_up"):
            page.form = self._form("c", inv_id)
        return page

    def _follow_up_page(self, tx: Tx, inv: Invitation, page: Page, t: int, hall: HallView) -> Page:
        """After the first rating (or its time): the follow-up, if the case can have one now."""
        if inv.assess_number == 2:
            raise _refuse("followed_up" if inv.status == "rated" else "expired")
        mine = [s for s in tx.qr.submissions_of("case", inv.id) if s.outcome == "rated"]
        try:
            _, due = follow_up_period(tx, inv.case_no, self.rules, self.calendar)
        except Conflict as e:
            if e.code == "case_already_followed_up":
                raise _refuse("followed_up") from None
            if e.code == "calendar_unknown_year":
                raise _refuse("calendar") from None
            if inv.status == "rated":
                raise _refuse("used") from None
            raise _refuse("expired") from None
        if t >= due:
            raise _refuse("follow_up_closed" if inv.status == "rated" or mine else "expired")
        page.state, page.purpose = "follow_up", "follow_up"
        page.follow_up_due = fmt_deadline(due, hall.tz)
        if mine:
            page.note_zh = "您已于 %s 评价本办件（%s）。" % (fmt_time(mine[0].created_ms, hall.tz),
                                                     NAMES_ZH[mine[0].grade])
        elif inv.status == "rated":
            page.note_zh = "本办件已评价。"
        else:
            page.note_zh = "本办件未在规定时间内评价，已按默认评价处理。"
        return page

    # -- the page: a rating --------------------------------------------------------------------

    def check_answer(self, grade: Any, tags: Sequence[Any], text: Any) -> tuple[str, list[str], str]:
        """A grade, its reasons (required for a 差评) and the free text, checked: QrRefusal otherwise."""
        if grade not in GRADES:
            raise _refuse("bad_grade")
        if not isinstance(text, str):
            raise _refuse("bad_text")
        clean = text.strip()
        if len(clean) > TEXT_MAX or any((ord(c) < 0x20 and c not in "\n\t") or c == "\x7f" for c in clean):
            raise _refuse("bad_text")
        if grade not in BAD:
            return grade, [], ""   # reasons (tags and words) are asked of a 差评 only
        known = [tag.code for tag in self._tags().get(grade, [])]
        chosen: list[str] = []
        for code in tags:
            if not isinstance(code, str) or code not in known:
                raise _refuse("bad_tag")
            if code not in chosen:
                chosen.append(code)
        if not chosen:
            raise _refuse("need_tags")
        return grade, chosen, clean

    def check_form(self, kind: str, subject: str, form: str) -> str:
        """The submission's one-time id from a form this gateway made for this page."""
        try:
            return tokens.check_form(self.ring, kind, subject, form, self.clock() // 1000,
                                     self.settings.form_valid_min * 60).nonce
        except tokens.BadToken:
            raise _refuse("form_expired") from None

    async def submit_plate(self, token: str, form: str, grade: Any, tags: Sequence[Any] = (),
                           text: Any = "") -> Submitted:
        plate_id = self._subject("p", token)
        nonce = self.check_form("p", plate_id, form)
        grade, chosen, clean = self.check_answer(grade, tags, text)
        t = self.clock()

        def unit(tx: Tx) -> Submitted:
            old = tx.qr.submission(nonce)
            if old is not None:
                return Submitted(old, True, [])
            plate, b = self._plate_binding(tx, plate_id)
            inv = self._waiting(tx, b, t)
            return self._store_rating(tx, "plate", plate_id, nonce, grade, chosen, clean, t,
                                      b.window_id, b.staff_account, b.id, inv, follow_up=False)

        return await self._submit(unit)

    async def submit_case(self, token: str, form: str, purpose: str, grade: Any, tags: Sequence[Any] = (),
                          text: Any = "") -> Submitted:
        inv_id = self._subject("c", token)
        nonce = self.check_form("c", inv_id, form)
        grade, chosen, clean = self.check_answer(grade, tags, text)
        if purpose not in ("first", "follow_up"):
            raise _refuse("form_expired")
        t = self.clock()

        def unit(tx: Tx) -> Submitted:
            old = tx.qr.submission(nonce)
            if old is not None:
                return Submitted(old, True, [])
            inv = tx.invitations.get(inv_id)
            if inv is None:
                raise _refuse("unknown")
            if purpose == "follow_up":
                return self._follow_up(tx, inv, nonce, grade, chosen, clean, t)
            if any(s.outcome == "rated" for s in tx.qr.submissions_of("case", inv.id)):
                raise _refuse("used")       # single use: this link rated its case already
            if inv.status == "pending" and inv.expires_ms <= t:
                raise _refuse("expired")
            if inv.status not in ("pending", "rated"):
                raise _refuse("expired")
            # pending: this is the case's rating unless the evaluator was quicker (then an extra)
            return self._store_rating(tx, "case", inv.id, nonce, grade, chosen, clean, t, inv.window_id,
                                      inv.staff_account, inv.binding_id, inv, follow_up=False)

        return await self._submit(unit)

    def _follow_up(self, tx: Tx, inv: Invitation, nonce: str, grade: str, tags: list[str], text: str,
                   t: int) -> Submitted:
        if inv.assess_number == 2:
            raise _refuse("followed_up")
        try:
            first, due = follow_up_period(tx, inv.case_no, self.rules, self.calendar)
        except Conflict as e:
            why = {"case_already_followed_up": "followed_up", "calendar_unknown_year": "calendar"}
            raise _refuse(why.get(e.code, "no_follow_up")) from None
        if t >= due:
            raise _refuse("follow_up_closed")
        # The follow-up's own invitation: a receipt invitation at the case's window, for the clerk
        # who handled the case, rated at once by this record (assessNumber 2 at the platform).
        point = ensure_point(tx, first.window_id, t)
        fid = new_invitation_id()
        try:
            with tx.savepoint():
                tx.invitations.insert(NewInvitation(
                    fid, point, first.window_id, first.staff_account, first.binding_id, first.case_no,
                    first.task_code, first.task_name, first.dept_code, first.applicant_type,
                    first.countdown_s, t, t, ACTOR, 2, hall_id=first.hall_id, receipt=True))
                tx.audit.add(t, ACTOR, "invitation.create", {
                    "subject": fid, "device": point, "window": first.window_id, "staff": first.staff_account,
                    "case_no": first.case_no, "assess_number": 2, "receipt": True, "via": "qr case link"})
                follow = tx.invitations.get(fid)
                assert follow is not None
                out = self._store_rating(tx, "case", inv.id, nonce, grade, tags, text, t, first.window_id,
                                         first.staff_account, first.binding_id, follow, follow_up=True)
        except IntegrityError:
            raise _refuse("followed_up") from None   # another follow-up of the case won the race
        return out

    def _store_rating(self, tx: Tx, via: str, subject: str, nonce: str, grade: str, tags: list[str],
                      text: str, t: int, window_id: str, staff: str, binding_id: int,
                      inv: Invitation | None, follow_up: bool) -> Submitted:
        """One record of the window's QR point, the invitation claimed (or the record flagged), the
        complaint with its reasons, the submission row: all in the caller's unit of work."""
        point = ensure_point(tx, window_id, t)
        seq = tx.qr.next_seq(point)
        rid = "%s:1:%d" % (point, seq)
        flags = ""
        commands: list[tuple[str, str, dict[str, Any]]] = []
        if inv is None:
            kind, outcome = "walkup", "walkup"
            flags = add_flag(flags, "no_invitation")
        elif tx.qr.claim_invitation(inv.id, rid, grade, t):
            kind, outcome = "rated", "follow_up" if follow_up or inv.assess_number == 2 else "rated"
            if not inv.receipt and not tx.qr.is_point(inv.device_id):
                # The evaluator still shows this case: it stops (its own press would be an extra).
                commands.append((inv.device_id, "cancel", {"i": inv.id}))
        else:
            kind, outcome = "rated", "extra"   # rated meanwhile (the evaluator was quicker)
            flags = add_flag(flags, "extra")
        hall_id, dept_code = org.place_at(tx, window_id, t)     # as ingest's attribution does
        hall = hall_of_window(tx, window_id, self.hall, self.settings, at_ms=t)
        if not hall.config.is_open(t):
            flags = add_flag(flags, "after_hours")
        if self._burst(tx, point, t):
            flags = add_flag(flags, "burst")
        tx.qr.insert_record({
            "record_id": rid, "device_id": point, "rb": 1, "rs": seq, "kind": kind, "grade": grade,
            "invitation_id": inv.id if inv is not None else None, "device_wall_s": t // 1000, "uptime_ms": 0,
            "pressed_at_ms": t, "time_source": "arrival", "received_at_ms": t, "msg_boot": 1,
            "binding_id": binding_id, "window_id": window_id, "staff_account": staff, "flags": flags,
            "channel": "qr", "hall_id": hall_id, "dept_code": dept_code})
        sub = QrSubmission(nonce, via, subject, rid, outcome, grade, ",".join(tags), text, t)
        tx.qr.add_submission(sub)
        if grade in BAD and outcome in ("rated", "follow_up"):
            opened = self.complaints.open_in_tx(tx, rid, "qr", t, ACTOR)
            if opened is not None and (tags or text):
                self.complaints.reasons_in_tx(tx, opened.complaint.id, ACTOR, tags, text, "qr", t)
        return Submitted(sub, False, commands)

    def _burst(self, tx: Tx, point: str, t: int) -> bool:
        """More than [attribution] burst_presses ratings at this window's code within
        burst_window_s (this one included): flagged, the others of the run too."""
        w = self.attribution.burst_window_s * 1000
        recent = tx.records.presses_between(point, t - w, t + 1, "")
        if len(recent) + 1 <= self.attribution.burst_presses:
            return False
        for rid, _, f in recent:
            if "burst" not in f.split(","):
                tx.records.set_flags(rid, add_flag(f, "burst"))
        return True

    async def _submit(self, unit: Callable[[Tx], Submitted]) -> Submitted:
        out = await self.store.write(unit)
        if self.send_command is not None:
            for device, typ, fields in out.commands:
                try:
                    await self.send_command(device, typ, fields)
                except Exception as e:  # noqa: BLE001 - the device learns its state at its next hello
                    log.warning("%s to %s after a QR rating not sent: %s", typ, device, e)
        return out

    async def done_page(self, s: Submitted) -> Page:
        """The confirmation of a stored submission (also for a repeat of the same form)."""
        t = self.clock()

        def read(tx: Tx) -> Page:
            rec = tx.records.get(s.submission.record_id)
            assert rec is not None
            hall = hall_of_window(tx, rec["window_id"], self.hall, self.settings)
            page = self._page(tx, s.submission.via, rec["window_id"], rec["staff_account"], hall)
            page.state, page.outcome, page.grade = "done", s.submission.outcome, s.submission.grade
            page.grade_zh = NAMES_ZH[s.submission.grade]
            page.rated_at = fmt_time(s.submission.created_ms, hall.tz)
            page.chosen_tags = [x for x in s.submission.tags.split(",") if x]
            inv = tx.invitations.get(rec["invitation_id"]) if rec["invitation_id"] else None
            if inv is not None:
                page.case = CaseView(mask_case(inv.case_no), inv.task_name)
            if s.submission.outcome == "rated" and inv is not None and inv.assess_number == 1:
                try:
                    _, due = follow_up_period(tx, inv.case_no, self.rules, self.calendar)
                except Conflict:
                    due = 0
                if t < due:
                    page.follow_up_due = fmt_deadline(due, hall.tz)
                    if s.submission.via == "plate":
                        # A plate's citizen has no receipt: the case's own link is the way back.
                        page.follow_up_url = self.case_url(inv.id)
            return page

        return await self.store.read(read)
