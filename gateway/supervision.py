"""Supervision of data truthfulness (数据质量): the findings a district supervisor checks each
month, per clerk, window or device, each with the rows that prove it. The seed asks for exactly
this (三(五)): clerks who do not invite citizens, clerks rating themselves, ratings entered late.

Findings (kinds), each judged per calendar month of the period (a monthly list):
  invite_rate     a clerk offered a rating for fewer than min_invite_rate of their cases (cases
                  from the window systems' feed; clerks with fewer than min_cases not judged)
  never_invites   a clerk with min_cases or more cases and no invitation at all
  walkup          presses without an invitation at a window (min_events or more)
  burst           presses in bursts (attribution's burst flag)
  after_hours     presses outside the hall's opening hours (min_events or more)
  fast_press      ratings pressed less than fast_press_s after the invitation appeared: the
                  clerk pressing it, not the citizen (min_events or more)
  late_entry      invitations issued more than late_entry_minutes after the case was finished
                  (or accepted): 事后补录 (min_events or more)
  linkage         ratings that reached the platform more than linkage_limit_s after the press
                  (the 5-minute check some provinces run), or have not reached it
  silent_device   a bound device silent for silent_hours or more opening hours in a day
Evidence rows are the records, invitations, cases or hours themselves (JSON: all of them up to
evidence_rows, with the total). One service for the CLI (`hcp-gateway supervision`), the API
(`GET /api/v1/supervision`) and the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway import org
from gateway.bulletin import Scope, hall_scope
from gateway.clock import now_ms
from gateway.config import Config
from gateway.periods import Period
from gateway.store import Store
from gateway.store.api import Tx

log = logging.getLogger("gateway.supervision")
HOUR_MS = 3_600_000
MIN_MS = 60_000
KINDS = ("invite_rate", "never_invites", "walkup", "burst", "after_hours", "fast_press", "late_entry",
         "linkage", "silent_device")
KIND_ZH = {"invite_rate": "主动邀请评价率偏低", "never_invites": "从未邀请评价", "walkup": "无邀请评价",
           "burst": "短时连续评价", "after_hours": "非工作时间评价",
           "fast_press": "邀请后即时评价（疑似代评）",
           "late_entry": "事后补录", "linkage": "评价关联上传超时", "silent_device": "评价器工作时间离线"}


@dataclass(frozen=True)
class SupervisionSettings:
    """[supervision]: the thresholds of each finding."""

    min_invite_rate: float = 0.9       # invitations / cases below this is a finding
    min_cases: int = 10                # clerks with fewer cases in a month are not judged on invitations
    min_events: int = 3                # walk-ups, after-hours, fast presses, late entries: at least this many
    fast_press_s: float = 3.0          # a rating this soon after the invitation appeared: the clerk?
    late_entry_minutes: int = 60       # invitation this long after the case was handled: 事后补录
    linkage_limit_s: int = 300         # rating to platform within this (some provinces check 5 min)
    silent_hours: int = 1              # a device silent this many opening hours in a day is a finding
    presence_every_s: int = 60         # how often the service notes which devices were heard
    evidence_rows: int = 20            # evidence rows kept per finding (the total is always given)

    @classmethod
    def from_config(cls, cfg: Config) -> SupervisionSettings:
        sec = cfg.raw.get("supervision", {})
        vals: dict[str, Any] = {k: sec[k] for k in cls.__dataclass_fields__ if k in sec}
        for k in ("min_invite_rate", "fast_press_s"):
            if k in vals:
                vals[k] = float(vals[k])
        return cls(**vals)


@dataclass
class Finding:
    month: str                 # "2026-06" (the calendar month the finding is for)
    kind: str
    subject: str               # clerk | window | device
    subject_id: str
    subject_name: str
    hall_id: str
    hall_name: str
    summary: str               # one line, Chinese
    figures: dict[str, Any]
    evidence: list[dict[str, Any]] = field(default_factory=list)
    evidence_total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind_zh": KIND_ZH[self.kind]}


@dataclass
class Supervision:
    period: Period
    hall: str | None
    settings: SupervisionSettings
    months: list[str]
    findings: list[Finding]

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in KINDS}
        for f in self.findings:
            out[f.kind] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"period": {"text": self.period.text, "label": self.period.label,
                           "start": self.period.start.isoformat(), "last": self.period.last.isoformat()},
                "hall": self.hall, "months": self.months, "settings": asdict(self.settings),
                "counts": self.counts(), "findings": [f.as_dict() for f in self.findings]}


def _pct(x: float) -> str:
    return "%.1f%%" % (100 * x)


class _Names:
    def __init__(self, tx: Tx, scope: Scope) -> None:
        self.halls = scope.halls
        self.windows = {w.window_id: w for w in tx.org.list_windows()}
        self.staff = {s.account: s for s in tx.org.list_staff()}

    def hall(self, hid: str) -> str:
        h = self.halls.get(hid)
        return h.name if h else hid

    def window(self, wid: str | None) -> str:
        if not wid:
            return "（未绑定）"
        w = self.windows.get(wid)
        return ("%s %s" % (wid, w.name)).strip() if w else wid

    def clerk(self, acct: str | None, fallback: str = "") -> str:
        if not acct:
            return fallback or "（未绑定）"
        s = self.staff.get(acct)
        return s.display_name if s else (fallback or acct)


def _month_findings(tx: Tx, cfg: Config, month: Period, hall: str | None, s: SupervisionSettings,
                    now: int) -> list[Finding]:
    scope = hall_scope(tx, cfg.hall, month, hall)
    seg, d = scope.segments, scope.default_id
    names = _Names(tx, scope)
    tz = scope.halls[d].tz if d in scope.halls else org.default_hall(cfg.hall).tz
    out: list[Finding] = []
    n_ev = s.evidence_rows

    def local(ms: int | None) -> str | None:
        return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")

    def finding(kind: str, subject: str, sid: str, sname: str, hid: str, summary: str,
                figures: dict[str, Any],
                rows: list[dict[str, Any]], total: int | None = None) -> None:
        out.append(Finding(month.text, kind, subject, sid, sname, hid, names.hall(hid), summary, figures,
                           rows[:n_ev], len(rows) if total is None else total))

    # Invitations per clerk, against the feed's cases.
    for clerk, hid, cases, invited, feed_name in tx.figures.invite_by_clerk(seg, d):
        cases, invited = int(cases), int(invited)
        if cases < s.min_cases or (invited and invited / cases >= s.min_invite_rate):
            continue
        rows = [{**r, "accepted_at": local(r["accepted_ms"]), "finished_at": local(r["finished_ms"])}
                for r in tx.figures.uninvited_cases(seg, d, clerk, n_ev)]
        name = names.clerk(clerk, feed_name or "")
        rate = invited / cases
        if invited == 0:
            finding("never_invites", "clerk", clerk, name, hid,
                    "%s 本月办件%d件，未邀请任何一件评价" % (name, cases),
                    {"cases": cases, "invited": 0, "invite_rate": 0.0}, rows, cases)
        else:
            finding("invite_rate", "clerk", clerk, name, hid,
                    "%s 本月办件%d件，邀请评价%d件，主动邀请率%s，低于%s" % (
                        name, cases, invited, _pct(rate), _pct(s.min_invite_rate)),
                    {"cases": cases, "invited": invited, "invite_rate": round(rate, 6)}, rows,
                    cases - invited)

    # Flagged presses per window.
    for kind, flag, minimum, text in (("walkup", "no_invitation", s.min_events, "无邀请评价"),
                                      ("burst", "burst", 1, "短时连续评价"),
                                      ("after_hours", "after_hours", s.min_events, "非工作时间评价")):
        flagged = [{**r, "pressed_at": local(r["pressed_at_ms"])} for r in tx.figures.flagged(seg, d, flag)]
        for (wid, hid), rows in _by(flagged, "window_id"):
            if len(rows) < minimum:
                continue
            name = names.window(wid)
            devices = sorted({r["device_id"] for r in rows})
            summary = "%s 本月%s%d次（评价器 %s）" % (name, text, len(rows), "、".join(devices))
            finding(kind, "window", wid, name, hid, summary,
                    {"presses": len(rows), "devices": devices}, rows)

    # Ratings pressed implausibly fast, per clerk.
    fast = [{**r, "after_s": round((r["pressed_at_ms"] - r["created_ms"]) / 1000, 1),
             "pressed_at": local(r["pressed_at_ms"]), "invited_at": local(r["created_ms"])}
            for r in tx.figures.fast_ratings(seg, d, int(s.fast_press_s * 1000))]
    for (clerk, hid), rows in _by(fast, "staff_account"):
        if len(rows) >= s.min_events:
            name = names.clerk(clerk)
            finding("fast_press", "clerk", clerk, name, hid,
                    "%s 本月有%d次评价在邀请发出后%g秒内完成，疑似工作人员代评"
                    % (name, len(rows), s.fast_press_s),
                    {"ratings": len(rows), "within_s": s.fast_press_s}, rows)

    # Invitations long after the case (事后补录), per clerk.
    late = [{**r, "delay_minutes": _late_minutes(r), "invited_at": local(r["created_ms"]),
             "accepted_at": local(r["accepted_ms"]), "finished_at": local(r["finished_ms"])}
            for r in tx.figures.late_entries(seg, d, s.late_entry_minutes * 60_000)]
    for (clerk, hid), rows in _by(late, "staff_account"):
        if len(rows) >= s.min_events:
            name = names.clerk(clerk)
            finding("late_entry", "clerk", clerk, name, hid,
                    "%s 本月%d件办件在办结%d分钟后才邀请评价（事后补录）"
                    % (name, len(rows), s.late_entry_minutes),
                    {"invitations": len(rows), "after_minutes": s.late_entry_minutes}, rows)

    # Rating to platform linkage time, per window.
    limit_ms = s.linkage_limit_s * 1000
    for wid, hid, n, over, longest in tx.figures.linkage(seg, d, limit_ms, now):
        if not over:
            continue
        slow = tx.figures.slowest(seg, d, wid, limit_ms, now, n_ev)
        rows = [{**r, "pressed_at": local(r["pressed_at_ms"]), "acked_at": local(r["acked_ms"]),
                 "delay_s": round(r["delay_ms"] / 1000)} for r in slow]
        name = names.window(wid)
        finding("linkage", "window", wid, name, hid,
                "%s 本月%d条评价中有%d条未在%d分钟内关联上传至省平台（最长%s）" % (
                    name, int(n), int(over), s.linkage_limit_s // 60 or 1, _duration(int(longest))),
                {"ratings": int(n), "over_limit": int(over), "share": round(int(over) / int(n), 6),
                 "limit_s": s.linkage_limit_s, "longest_s": int(longest) // 1000}, rows, int(over))

    out += _silent_devices(tx, cfg, month, scope, s, names, now)
    return out


def _late_minutes(r: dict[str, Any]) -> float:
    """Minutes from the case's end (its finish, else its acceptance) to its invitation."""
    end = r["finished_ms"] if r["finished_ms"] is not None else r["accepted_ms"]
    return round((int(r["created_ms"]) - int(end)) / MIN_MS, 1)


def _by(rows: list[dict[str, Any]], subject: str) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
    """Evidence rows grouped by (subject, hall), in order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r[subject] or "", r["hall_id"]), []).append(r)
    return sorted(groups.items())


def _duration(ms: int) -> str:
    s = ms // 1000
    if s < 3600:
        return "%d分%d秒" % divmod(s, 60)
    if s < 86400:
        return "%d小时%d分" % (s // 3600, s % 3600 // 60)
    return "%d天%d小时" % (s // 86400, s % 86400 // 3600)


def opening_slots(h: org.Hall, day: dt.date) -> list[tuple[int, int]]:
    """The hall's opening hours of a local date as whole-hour slots [start, end) in epoch ms
    (an 08:30-12:00 opening gives 08:30-09:00, 09:00-10:00, ...)."""
    if not h.opens_on(day):
        return []
    base = dt.datetime.combine(day, dt.time(), tzinfo=h.tz)
    out = []
    for r in h.opening_hours:
        m = r.start_min
        while m < r.end_min:
            nxt = min((m // 60 + 1) * 60, r.end_min)
            out.append((int((base + dt.timedelta(minutes=m)).timestamp() * 1000),
                        int((base + dt.timedelta(minutes=nxt)).timestamp() * 1000)))
            m = nxt
    return out


def _silent_devices(tx: Tx, cfg: Config, month: Period, scope: Scope, s: SupervisionSettings, names: _Names,
                    now: int) -> list[Finding]:
    """Bound devices with no message in silent_hours or more opening-hour slots of a day."""
    lo = min(seg[1] for seg in scope.segments)
    hi = min(max(seg[2] for seg in scope.segments), now)
    heard = tx.presence.hours(lo - HOUR_MS, hi + HOUR_MS)
    device_hall = tx.org.device_halls()
    bindings = [b for b in tx.bindings.listing(history=True)
                if b.valid_from_ms < hi and (b.valid_to_ms is None or b.valid_to_ms > lo)]
    by_device: dict[str, list[Any]] = {}
    for b in bindings:
        by_device.setdefault(b.device_id, []).append(b)
    # Bindings come oldest first per device; the latest names the device's window.
    out: list[Finding] = []
    for device, bs in sorted(by_device.items()):
        w = names.windows.get(bs[-1].window_id)
        hid = (w.hall_id if w is not None else None) or device_hall.get(device) or scope.default_id
        if not any(halls is None or hid in halls for halls, _, _ in scope.segments):
            continue
        h = scope.halls.get(hid) or org.default_hall(cfg.hall)
        hours = heard.get(device, set())
        rows: list[dict[str, Any]] = []
        day = month.start
        while day < month.end:
            silent: list[str] = []
            for a, z in opening_slots(h, day):
                if z > now or not any(b.valid_from_ms <= a and (b.valid_to_ms is None or b.valid_to_ms >= z)
                                      for b in bs):
                    continue
                if not any(t in hours for t in range((a // HOUR_MS) * HOUR_MS, z, HOUR_MS)):
                    silent.append(dt.datetime.fromtimestamp(a / 1000, h.tz).strftime("%H:%M"))
            if len(silent) >= s.silent_hours:
                rows.append({"date": day.isoformat(), "silent_hours": len(silent), "from": silent})
            day += dt.timedelta(days=1)
        if rows:
            total = sum(int(r["silent_hours"]) for r in rows)
            window = names.window(bs[-1].window_id)
            summary = "评价器 %s（%s）本月有%d天在工作时间离线，合计%d个工作小时" % (
                device, window, len(rows), total)
            out.append(Finding(month.text, "silent_device", "device", device, "%s（%s）" % (device, window),
                               hid, names.hall(hid), summary, {"days": len(rows), "silent_hours": total},
                               rows[:s.evidence_rows], len(rows)))
    return out


async def supervise(store: Store, cfg: Config, period: Period, hall: str | None = None,
                    settings: SupervisionSettings | None = None, at_ms: int | None = None) -> Supervision:
    """The findings of every calendar month of the period (one read unit of work)."""
    s = settings or cfg.sections.get("supervision") or SupervisionSettings.from_config(cfg)
    now = now_ms() if at_ms is None else at_ms
    months = period.months()

    def read(tx: Tx) -> list[Finding]:
        found: list[Finding] = []
        for m in months:
            found += _month_findings(tx, cfg, m, hall, s, now)
        return found
    findings = await store.read(read)
    order = {k: i for i, k in enumerate(KINDS)}
    findings.sort(key=lambda f: (f.month, f.hall_id, order[f.kind], f.subject_id))
    return Supervision(period, hall, s, [m.text for m in months], findings)


async def note_presence(store: Store, since_ms: int) -> int:
    """Mark the hour of each device's last message since since_ms (the service's periodic job)."""
    return await store.write(lambda tx: tx.presence.note_last_seen(since_ms))


def presence_job(store: Store, clock: Callable[[], int],
                 every_s: float) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """The leader's task: every every_s, note which devices were heard (looking back twice as
    far, so a slow round misses nothing; noting an hour twice is a no-op)."""
    async def job(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await note_presence(store, clock() - int(2 * every_s * 1000))
            except Exception:
                log.exception("noting device presence failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    return job
