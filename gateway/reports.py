"""The day's report per window and clerk (used by `hcp-gateway report` and the demo).

For one local date (hall time zone), per (window, clerk):
  cases        distinct case numbers invited that day (办件), withdrawn (cancelled) ones not
               counted: a cancel means no citizen was asked
  ratings      invitations rated (one per invitation, the press credited at press time), less
               the excluded ones
  rating_rate  ratings / cases
  per grade    counts of vs s bs d vd, 差评 = d + vd (excluded ratings not counted)
  valid_bad    差评 verified valid (有效差评); rectified: 差评 whose rectification is reported
  excluded     ratings found mistaken or malicious on review: kept, counted apart only
  follow_ups   follow-up ratings (追加评价, assessNumber 2): never a case's rating, counted apart
  ratings_qr   of the ratings, those given on the QR page (plate or receipt link) rather than on
               an evaluator (records.channel); follow_ups_qr likewise
  satisfaction (vs + s + bs) / ratings
  score        sum(weight[g] * count[g]) / ratings, weights from [report] (default 100/75/50/25/0)
  unrated, expired, cancelled, superseded: invitations without a rating, by reason
Presses that are not ratings are counted apart, never mixed in: extras (further presses
for a rated invitation), walk-ups (no invitation), late (a press after its invitation closed:
not the case's rating here, and not uploaded as one either -- the case gets its default
rating, docs/uplink.md), unbound (no clerk at press time: reported on a row of their own),
after_hours and burst (flags, may overlap the others).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.config import Config, ConfigError
from gateway.store import Store
from gateway.store.api import Tx
from protocol.grades import BAD, GRADES

DEFAULT_WEIGHTS = {"vs": 100, "s": 75, "bs": 50, "d": 25, "vd": 0}
UNBOUND = "(unbound)"


@dataclass(frozen=True)
class ReportSettings:
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    @classmethod
    def from_config(cls, cfg: Config) -> ReportSettings:
        sec = cfg.raw.get("report", {})
        if not isinstance(sec, dict):
            raise ConfigError("[report] must be a table")
        w = sec.get("weights", DEFAULT_WEIGHTS)
        if not isinstance(w, dict) or set(w) != set(GRADES) or not all(
                type(v) in (int, float) for v in w.values()):
            raise ConfigError("[report] weights must give a number for each of vs, s, bs, d, vd")
        return cls(weights={g: float(w[g]) for g in GRADES})


@dataclass
class Row:
    window_id: str
    staff_account: str
    display_name: str = ""
    cases: int = 0
    ratings: int = 0
    grades: dict[str, int] = field(default_factory=lambda: {g: 0 for g in GRADES})
    unrated: int = 0
    expired: int = 0
    cancelled: int = 0
    superseded: int = 0
    pending: int = 0
    extras: int = 0
    walkups: int = 0
    late: int = 0
    unbound: int = 0
    after_hours: int = 0
    burst: int = 0
    valid_bad: int = 0
    rectified: int = 0
    excluded: int = 0
    follow_ups: int = 0
    ratings_qr: int = 0
    follow_ups_qr: int = 0
    rating_rate: float | None = None
    bad: int = 0
    satisfaction: float | None = None
    score: float | None = None

    def finish(self, weights: dict[str, float]) -> None:
        self.bad = sum(self.grades[g] for g in BAD)
        self.rating_rate = round(self.ratings / self.cases, 4) if self.cases else None
        if self.ratings:
            good = self.ratings - self.bad
            self.satisfaction = round(good / self.ratings, 4)
            self.score = round(sum(weights[g] * n for g, n in self.grades.items()) / self.ratings, 2)
        else:
            self.satisfaction = self.score = None

    def add(self, other: Row) -> None:
        for name in ("cases", "ratings", "unrated", "expired", "cancelled", "superseded", "pending",
                     "extras", "walkups", "late", "unbound", "after_hours", "burst", "valid_bad", "rectified",
                     "excluded", "follow_ups", "ratings_qr", "follow_ups_qr"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for g in GRADES:
            self.grades[g] += other.grades[g]


@dataclass
class DayReport:
    date: str
    timezone: str
    weights: dict[str, float]
    rows: list[Row]
    total: Row

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def day_bounds(date: str, cfg: Config) -> tuple[int, int]:
    """[start, end) of a local date in the hall's time zone, as epoch ms."""
    try:
        d = dt.date.fromisoformat(date)
    except ValueError:
        raise ValueError("date must be YYYY-MM-DD, got %r" % date) from None
    start = dt.datetime.combine(d, dt.time(), tzinfo=cfg.hall.tz)
    end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), tzinfo=cfg.hall.tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


async def day_report(store: Store, cfg: Config, date: str,
                     settings: ReportSettings | None = None) -> DayReport:
    settings = settings or ReportSettings.from_config(cfg)
    lo, hi = day_bounds(date, cfg)
    rows: dict[tuple[str, str], Row] = {}

    def row(win: str | None, staff: str | None) -> Row:
        key = (win or UNBOUND, staff or UNBOUND)
        r = rows.get(key)
        if r is None:
            r = rows[key] = Row(key[0], key[1])
        return r

    def read(tx: Tx) -> tuple[Any, ...]:
        return (tx.invitations.cases_by_window_staff(lo, hi), tx.invitations.outcomes_by_window_staff(lo, hi),
                tx.records.day_presses(lo, hi), tx.org.list_staff(), tx.invitations.distinct_cases(lo, hi),
                tx.invitations.outcomes_by_window_staff(lo, hi, 2), tx.complaints.day_figures(lo, hi),
                tx.qr.ratings_by_channel(lo, hi))
    cases, outcomes, presses, staff, distinct, follow_ups, figures, channels = await store.read(read)
    for win, staff_account, n in cases:
        row(win, staff_account).cases = n
    for win, staff_account, status, grade, n in outcomes:
        r = row(win, staff_account)
        if status == "rated":
            r.ratings += n
            r.grades[grade] += n
        elif status in ("unrated", "expired", "cancelled", "superseded", "pending"):
            setattr(r, status, getattr(r, status) + n)
    for win, staff_account, status, _grade, n in follow_ups:
        if status == "rated":
            row(win, staff_account).follow_ups += n
    for win, staff_account, channel, assess, n in channels:
        if channel == "qr":
            if assess == 1:
                row(win, staff_account).ratings_qr += n
            else:
                row(win, staff_account).follow_ups_qr += n
    for f in figures:
        r = row(f["window_id"], f["staff_account"])
        r.valid_bad += int(f["valid_bad"] or 0)
        r.rectified += int(f["rectified"] or 0)
        gone = int(f["excluded"] or 0)
        r.excluded += gone          # out of the ratings and grades, counted apart
        r.ratings -= gone
        r.grades[f["grade"]] -= gone
    for win, staff_account, kind, flags in presses:
        r = row(win, staff_account)
        fl = set(flags.split(","))
        if kind == "extra" or "extra" in fl:
            r.extras += 1
        elif "late" in fl:
            r.late += 1
        elif "no_invitation" in fl or kind in ("walkup", "unpaired"):
            r.walkups += 1
        r.unbound += "unbound" in fl
        r.after_hours += "after_hours" in fl
        r.burst += "burst" in fl
    names = {s.account: s.display_name for s in staff}
    total = Row("*", "*")
    out = []
    for key in sorted(rows):
        r = rows[key]
        r.display_name = names.get(r.staff_account, "")
        r.finish(settings.weights)
        total.add(r)
        out.append(r)
    # A case invited at two windows is one case of the hall, not two.
    total.cases = distinct
    total.finish(settings.weights)
    return DayReport(date, cfg.hall.timezone, settings.weights, out, total)
