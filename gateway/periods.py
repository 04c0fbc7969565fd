"""Reporting periods of bulletins and supervision: what `--period` accepts, their Chinese
labels, their bounds in a hall's time zone, and the trend's sub-periods.

    2026-Q2                   a quarter                 2026年第二季度
    2026-06                   a month                   2026年6月
    2026-W23                  an ISO week (Mon-Sun)     2026年第23周（6月1日至6月7日）
    2026-06-01..2026-06-30    a range, both days in     2026年6月1日至6月30日
    2026-06-01                one day                   2026年6月1日
    2026                      a year                    2026年

A period is a range of local dates [start, end); its bounds in epoch ms depend on the hall's
time zone (a press at 23:30 on 30 June in Asia/Shanghai is June's, whatever UTC says).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.errors import BadInput

QUARTER_ZH = ("一", "二", "三", "四")
MAX_DAYS = 366 * 2
_Q = re.compile(r"(\d{4})-[Qq]([1-4])")
_M = re.compile(r"(\d{4})-(\d{2})")
_W = re.compile(r"(\d{4})-[Ww](\d{1,2})")
_Y = re.compile(r"\d{4}")
HELP = "2026-Q2, 2026-06, 2026-W23, 2026-06-01..2026-06-30, 2026-06-01 or 2026"


@dataclass(frozen=True)
class Period:
    text: str          # as normalised, e.g. "2026-Q2"
    kind: str          # quarter | month | week | range | day | year
    start: dt.date     # first local date
    end: dt.date       # the day after the last

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    @property
    def label(self) -> str:
        """The period as a bulletin's title names it."""
        s, e = self.start, self.last
        if self.kind == "quarter":
            return "%d年第%s季度" % (s.year, QUARTER_ZH[(s.month - 1) // 3])
        if self.kind == "month":
            return "%d年%d月" % (s.year, s.month)
        if self.kind == "year":
            return "%d年" % s.year
        if self.kind == "week":
            iso = s.isocalendar()
            return "%d年第%d周（%s至%s）" % (iso.year, iso.week, _md(s), _md(e))
        if self.kind == "day":
            return _ymd(s)
        return "%s至%s" % (_ymd(s), _md(e) if e.year == s.year else _ymd(e))

    @property
    def span_label(self) -> str:
        """The dates covered, e.g. 2026年4月1日至2026年6月30日."""
        return _ymd(self.start) if self.days == 1 else "%s至%s" % (_ymd(self.start), _ymd(self.last))

    def bounds(self, tz: ZoneInfo | str) -> tuple[int, int]:
        """[lo, hi) epoch ms of the period in that time zone."""
        zone = ZoneInfo(tz) if isinstance(tz, str) else tz
        lo = dt.datetime.combine(self.start, dt.time(), tzinfo=zone)
        hi = dt.datetime.combine(self.end, dt.time(), tzinfo=zone)
        return int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)

    def buckets(self) -> list[tuple[str, dt.date, dt.date]]:
        """The trend's sub-periods (label, start, end): days up to a month, ISO weeks up to a
        quarter, months beyond; clipped to the period."""
        out: list[tuple[str, dt.date, dt.date]] = []
        d = self.start
        while d < self.end:
            if self.days <= 31:
                nxt, label = d + dt.timedelta(days=1), "%d-%02d-%02d" % (d.year, d.month, d.day)
            elif self.days <= 92:
                nxt = d + dt.timedelta(days=7 - d.weekday())
                iso = d.isocalendar()
                label = "%d-W%02d" % (iso.year, iso.week)
            else:
                nxt = dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)
                label = "%d-%02d" % (d.year, d.month)
            nxt = min(nxt, self.end)
            out.append((label, d, nxt))
            d = nxt
        return out

    def months(self) -> list[Period]:
        """The calendar months the period touches, each clipped to it (supervision: a monthly list)."""
        out = []
        d = self.start
        while d < self.end:
            nxt = min(dt.date(d.year + d.month // 12, d.month % 12 + 1, 1), self.end)
            out.append(Period("%d-%02d" % (d.year, d.month),
                              "month" if d.day == 1 and nxt.day == 1 else "range",
                              d, nxt))
            d = nxt
        return out


def _ymd(d: dt.date) -> str:
    return "%d年%d月%d日" % (d.year, d.month, d.day)


def _md(d: dt.date) -> str:
    return "%d月%d日" % (d.month, d.day)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadInput("period: %r is not a date YYYY-MM-DD" % text, "bad_period") from None


def parse_period(text: str) -> Period:
    """A period from its text; BadInput (code bad_period) naming the accepted forms."""
    t = (text or "").strip()
    try:
        if m := _Q.fullmatch(t):
            y, q = int(m.group(1)), int(m.group(2))
            start = dt.date(y, 3 * q - 2, 1)
            end = dt.date(y + 1, 1, 1) if q == 4 else dt.date(y, 3 * q + 1, 1)
            return Period("%d-Q%d" % (y, q), "quarter", start, end)
        if m := _W.fullmatch(t):
            y, w = int(m.group(1)), int(m.group(2))
            start = dt.date.fromisocalendar(y, w, 1)
            return Period("%d-W%02d" % (y, w), "week", start, start + dt.timedelta(days=7))
        if m := _M.fullmatch(t):
            y, mo = int(m.group(1)), int(m.group(2))
            start = dt.date(y, mo, 1)
            return Period("%d-%02d" % (y, mo), "month", start, dt.date(y + mo // 12, mo % 12 + 1, 1))
        if _Y.fullmatch(t):
            y = int(t)
            return Period(t, "year", dt.date(y, 1, 1), dt.date(y + 1, 1, 1))
    except ValueError as e:
        raise BadInput("period %r: %s (accepted: %s)" % (t, e, HELP), "bad_period") from None
    if ".." in t:
        a, _, b = t.partition("..")
        start, last = _date(a.strip()), _date(b.strip())
        if last < start:
            raise BadInput("period %r ends before it starts" % t, "bad_period")
        if (last - start).days + 1 > MAX_DAYS:
            raise BadInput("period %r is longer than %d days" % (t, MAX_DAYS), "bad_period")
        return Period("%s..%s" % (start, last), "range", start, last + dt.timedelta(days=1))
    if re.fullmatch(r"\d{4}-\d\d-\d\d", t):
        d = _date(t)
        return Period(d.isoformat(), "day", d, d + dt.timedelta(days=1))
    raise BadInput("period %r not understood (accepted: %s)" % (t, HELP), "bad_period")
