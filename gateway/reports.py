"""The day's report per window and clerk (used by `hcp-gateway report` and the demo).

For one local date (hall time zone), per (window, clerk):
  cases        distinct case numbers invited that day (办件)
  ratings      invitations rated (one per invitation, the press credited at press time)
  rating_rate  ratings / cases
  per grade    counts of vs s bs d vd, 差评 = d + vd
  satisfaction (vs + s + bs) / ratings
  score        sum(weight[g] * count[g]) / ratings, weights from [report] (default 100/75/50/25/0)
  unrated, expired, cancelled, superseded: invitations without a rating, by reason
Presses that are not ratings are counted apart, never mixed in: extras (further presses
for a rated invitation), walk-ups (no invitation), late, unbound (no clerk at press time:
reported on a row of their own), after_hours and burst (flags, may overlap the others).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import aiosqlite

from gateway.config import Config, ConfigError
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
                     "extras", "walkups", "late", "unbound", "after_hours", "burst"):
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


async def day_report(conn: aiosqlite.Connection, cfg: Config, date: str,
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

    async with conn.execute(
        "SELECT window_id, staff_account, COUNT(DISTINCT case_no) FROM invitations"
        " WHERE created_ms >= ? AND created_ms < ? GROUP BY window_id, staff_account", (lo, hi)
    ) as cur:
        async for win, staff, n in cur:
            row(win, staff).cases = n
    async with conn.execute(
        "SELECT window_id, staff_account, status, grade, COUNT(*) FROM invitations"
        " WHERE created_ms >= ? AND created_ms < ? GROUP BY window_id, staff_account, status, grade",
        (lo, hi),
    ) as cur:
        async for win, staff, status, grade, n in cur:
            r = row(win, staff)
            if status == "rated":
                r.ratings += n
                r.grades[grade] += n
            elif status in ("unrated", "expired", "cancelled", "superseded", "pending"):
                setattr(r, status, getattr(r, status) + n)
    async with conn.execute(
        "SELECT window_id, staff_account, kind, flags FROM records"
        " WHERE pressed_at_ms >= ? AND pressed_at_ms < ? AND kind != 'unrated'", (lo, hi)
    ) as cur:
        async for win, staff, kind, flags in cur:
            r = row(win, staff)
            fl = set((flags or "").split(","))
            if kind == "extra" or "extra" in fl:
                r.extras += 1
            elif "late" in fl:
                r.late += 1
            elif "no_invitation" in fl or kind in ("walkup", "unpaired"):
                r.walkups += 1
            r.unbound += "unbound" in fl
            r.after_hours += "after_hours" in fl
            r.burst += "burst" in fl
    async with conn.execute("SELECT account, display_name FROM staff") as cur:
        names = {a: n async for a, n in cur}
    total = Row("*", "*")
    out = []
    for key in sorted(rows):
        r = rows[key]
        r.display_name = names.get(r.staff_account, "")
        r.finish(settings.weights)
        total.add(r)
        out.append(r)
    # A case invited at two windows is one case of the hall, not two.
    async with conn.execute(
        "SELECT COUNT(DISTINCT case_no) FROM invitations WHERE created_ms >= ? AND created_ms < ?", (lo, hi)
    ) as cur:
        one = await cur.fetchone()
    total.cases = int(one[0]) if one else 0
    total.finish(settings.weights)
    return DayReport(date, cfg.hall.timezone, settings.weights, out, total)
