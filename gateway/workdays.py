"""China's working-day calendar for 差评 deadlines (1 / 5 / 15, appeal 3, review 7, follow-up 5).

Sources, in order of precedence for a date:
1. ``extra_working_days`` from configuration (a local 调休 working day): working.
2. ``local_holidays`` from configuration (e.g. Lhasa's 藏历新年, 雪顿节): not working.
3. The national arrangement for the date's year: a ``[calendar.national.YYYY]`` table when
   configured (the State Council's notice typed in, for a year the library does not know yet,
   or to correct it), otherwise the ``chinese-calendar`` library (statutory holidays *and* the
   adjusted weekend working days, 调休上班).
A year that neither configuration nor the library knows raises :class:`UnknownYearError`: it is
never silently treated as Monday-Friday.

Deadlines (:meth:`WorkCalendar.add_working_days`) follow the Civil Code's rules on periods
(民法典 第二百零一条, 第二百零三条): the day of the event does not count, counting starts on the
next day, and a period ends at 24:00 of its last day. So a deadline of N working days from an
instant is the end (24:00, hall time zone) of the N-th working day strictly after the instant's
local date, returned as the aware instant of the following local midnight (exclusive: overdue
when ``now >= deadline``).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import chinese_calendar

from gateway.sectioncheck import Section, SettingsError

__all__ = [
    "DateSpan", "NationalYear", "WorkdaySettings", "WorkCalendar", "UnknownYearError",
    "CalendarSettingsError", "DayInfo",
]

LIBRARY = "chinesecalendar"
_MAX_SPAN_DAYS = 366 * 20  # working_days_between refuses longer ranges (a caller's bug, not a period)


class CalendarSettingsError(SettingsError):
    """The [calendar] section is wrong; the message (one line) names every problem."""


class UnknownYearError(LookupError):
    """A date in a year for which no national holiday arrangement is known (nor required local one)."""

    def __init__(self, year: int, message: str) -> None:
        self.year = year
        super().__init__(message)


@dataclass(frozen=True)
class DateSpan:
    """Consecutive days (``start``..``end`` inclusive) with a name, e.g. 藏历新年."""

    name: str
    start: dt.date
    end: dt.date

    def days(self) -> Iterable[dt.date]:
        d = self.start
        while d <= self.end:
            yield d
            d += dt.timedelta(days=1)


@dataclass(frozen=True)
class NationalYear:
    """One year's national arrangement, as the State Council's notice gives it.

    ``holidays``: every day off, weekends inside a holiday included (国庆节 10-01..10-07);
    ``working_days``: the weekend days worked instead (调休上班).
    """

    year: int
    holidays: tuple[DateSpan, ...]
    working_days: tuple[dt.date, ...]
    source: str


@dataclass(frozen=True)
class DayInfo:
    """Why a date is or is not a working day (for docs, the CLI and audit notes)."""

    date: dt.date
    working: bool
    # weekday | weekend | national_holiday | national_working_day | local_holiday | local_working_day
    reason: str
    name: str = ""  # the holiday's or adjusted day's name, Chinese where known


@dataclass(frozen=True)
class WorkdaySettings:
    """The ``[calendar]`` section."""

    local_holidays: tuple[DateSpan, ...] = ()
    extra_working_days: tuple[DateSpan, ...] = ()
    national: Mapping[int, NationalYear] = field(default_factory=lambda: MappingProxyType({}))
    # When true, a year with no configured local holiday is an error (like an unknown national
    # year): a hall that keeps local holidays must not lose them silently on 1 January.
    local_required: bool = False

    @classmethod
    def from_mapping(cls, data: object, *, base_dir: Path | None = None) -> WorkdaySettings:
        """Check a whole ``[calendar]`` table; raise :class:`CalendarSettingsError` listing every problem.

        ::

            [calendar]
            local_required = true
            local_holidays = [
              { name = "藏历新年", start = 2026-02-18, end = 2026-02-20 },
              { name = "雪顿节", date = 2026-08-12 },
            ]
            extra_working_days = [ { name = "藏历新年调休", date = 2026-02-28 } ]

            [calendar.national.2027]
            source = "国办发明电〔2026〕N号"
            holidays = [ { name = "元旦", start = 2027-01-01, end = 2027-01-03 } ]
            working_days = [ 2027-01-04 ]
        """
        sec = Section("calendar", data, base_dir=base_dir)
        local = _spans(sec, "local_holidays")
        extra = _spans(sec, "extra_working_days")
        required = sec.get_bool("local_required", False)
        national: dict[int, NationalYear] = {}
        nat = sec.sub("national")
        for key in list(nat.data):
            ysec = nat.sub(str(key))
            try:
                year = int(str(key))
                if not 1900 <= year <= 2200:
                    raise ValueError
            except ValueError:
                nat.problem(str(key), "is not a year (use [calendar.national.2027])")
                continue
            spans = _spans(ysec, "holidays", required=True)
            wdays: list[dt.date] = []
            raw_w = ysec.raw("working_days")
            if raw_w is not None and not isinstance(raw_w, list):
                ysec.problem("working_days", "must be a list of dates")
            for i, v in enumerate(raw_w or []):
                d = ysec.to_date(f"working_days[{i}]", v)
                if d is not None:
                    wdays.append(d)
            source = ysec.get_str("source", "", nonempty=True)
            if not ysec.has("source"):
                ysec.problem("source", "is required: name the State Council notice the dates come from")
            for s in spans:
                if s.start.year != year or s.end.year != year:
                    ysec.problem("holidays", f"'{s.name}' {s.start}..{s.end} is not in {year}")
            for d in wdays:
                if d.year != year:
                    ysec.problem("working_days", f"{d} is not in {year}")
                elif d.isoweekday() < 6:
                    ysec.problem("working_days", f"{d} is a weekday already (list adjusted weekend days)")
            ysec.check_unknown()
            national[year] = NationalYear(year, tuple(spans), tuple(wdays), source)
        nat.check_unknown()
        off = {d: s.name for s in local for d in s.days()}
        for s in extra:
            for d in s.days():
                if d in off:
                    sec.problem("extra_working_days",
                                f"{d} ('{s.name}') is also a local holiday ('{off[d]}')")
        try:
            sec.finish()
        except SettingsError as e:
            raise CalendarSettingsError(e.section, e.problems) from None
        return cls(tuple(local), tuple(extra), MappingProxyType(national), required)


def _spans(sec: Section, key: str, *, required: bool = False) -> list[DateSpan]:
    """A list of ``{name, date}`` or ``{name, start, end}`` tables."""
    raw = sec.raw(key)
    if raw is None:
        if required:
            sec.problem(key, "is required (a list of { name, start, end } tables)")
        return []
    if not isinstance(raw, list):
        sec.problem(key, "must be a list of { name = ..., date = ... } or { name, start, end } tables")
        return []
    out: list[DateSpan] = []
    for i, item in enumerate(raw):
        it = sec.item(f"{sec.prefix}{key}[{i}]", item)
        name = it.get_str("name", "", nonempty=True)
        if not it.has("name"):
            it.problem("name", "is required")
        if it.has("date"):
            d = it.get_date("date")
            if it.has("start") or it.has("end"):
                it.problem("date", "give either date or start and end, not both")
            start = end = d
        else:
            start, end = it.get_date("start"), it.get_date("end")
            if not it.has("start") and not it.has("end"):
                it.problem("date", "is required (or start and end)")
        it.check_unknown()
        if start is None or end is None or not name:
            continue
        if end < start:
            it.problem("end", f"{end} is before start {start}")
            continue
        if (end - start).days > 60:
            it.problem("end", f"{start}..{end} is longer than 60 days: a typo?")
            continue
        out.append(DateSpan(name, start, end))
    return out


class WorkCalendar:
    """Working days in a hall: national arrangement + local configuration. Pure computation."""

    def __init__(self, settings: WorkdaySettings | None = None) -> None:
        self.settings = settings or WorkdaySettings()
        s = self.settings
        self._extra: dict[dt.date, str] = {d: sp.name for sp in s.extra_working_days for d in sp.days()}
        self._local: dict[dt.date, str] = {d: sp.name for sp in s.local_holidays for d in sp.days()}
        self._local_years = {d.year for d in self._local}
        self._nat_off: dict[int, dict[dt.date, str]] = {}
        self._nat_on: dict[int, set[dt.date]] = {}
        for year, ny in s.national.items():
            self._nat_off[year] = {d: sp.name for sp in ny.holidays for d in sp.days()}
            self._nat_on[year] = set(ny.working_days)

    # --- years ---------------------------------------------------------------------------
    @staticmethod
    def library_version() -> str:
        try:
            return importlib.metadata.version(LIBRARY)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    @staticmethod
    @functools.cache
    def library_years() -> tuple[int, int]:
        """First and last year the installed chinese-calendar knows (by asking it, public API)."""
        known = [y for y in range(2000, 2101) if _library_knows(y)]
        return (known[0], known[-1]) if known else (0, -1)

    def known_national_years(self) -> list[int]:
        lo, hi = self.library_years()
        return sorted(set(range(lo, hi + 1)) | set(self.settings.national))

    def check_year(self, year: int) -> None:
        """Raise :class:`UnknownYearError` unless every source this hall needs knows ``year``."""
        if year not in self.settings.national and not _library_knows(year):
            lo, hi = self.library_years()
            raise UnknownYearError(year, (
                f"no national holiday arrangement for {year}: {LIBRARY} {self.library_version()} "
                f"knows {lo}-{hi}; upgrade it (pip install -U {LIBRARY}) once the State Council "
                f"publishes {year}'s notice, or add [calendar.national.{year}] with its holidays "
                f"and adjusted working days (docs/workdays.md)"))
        if self.settings.local_required and year not in self._local_years:
            raise UnknownYearError(year, (
                f"no local holidays configured for {year} and [calendar] local_required = true: "
                f"add {year}'s dates to [calendar] local_holidays (docs/workdays.md)"))

    # --- days ----------------------------------------------------------------------------
    def day_info(self, d: dt.date) -> DayInfo:
        self.check_year(d.year)
        if d in self._extra:
            return DayInfo(d, True, "local_working_day", self._extra[d])
        if d in self._local:
            return DayInfo(d, False, "local_holiday", self._local[d])
        if d.year in self._nat_off:
            if d in self._nat_off[d.year]:
                return DayInfo(d, False, "national_holiday", self._nat_off[d.year][d])
            if d in self._nat_on[d.year]:
                return DayInfo(d, True, "national_working_day", "调休上班")
        else:
            working = bool(chinese_calendar.is_workday(d))
            _, name = chinese_calendar.get_holiday_detail(d)
            zh = _zh_name(name)
            weekend = d.isoweekday() >= 6
            if working and weekend:
                return DayInfo(d, True, "national_working_day", zh)
            if not working and (name is not None or not weekend):
                return DayInfo(d, False, "national_holiday", zh)
        if d.isoweekday() >= 6:
            return DayInfo(d, False, "weekend")
        return DayInfo(d, True, "weekday")

    def is_working_day(self, d: dt.date) -> bool:
        return self.day_info(d).working

    def next_working_day(self, d: dt.date) -> dt.date:
        """The first working day strictly after ``d``."""
        d += dt.timedelta(days=1)
        while not self.is_working_day(d):
            d += dt.timedelta(days=1)
        return d

    def working_days_between(self, a: dt.date, b: dt.date) -> int:
        """Working days ``d`` with ``a < d <= b`` (negative when ``b < a``).

        Consistent with deadlines: ``working_days_between(a, due_date(a, n)) == n``; the event's
        own day never counts.
        """
        if b < a:
            return -self.working_days_between(b, a)
        if (b - a).days > _MAX_SPAN_DAYS:
            raise ValueError(f"range {a}..{b} is longer than {_MAX_SPAN_DAYS} days")
        n, d = 0, a
        while d < b:
            d += dt.timedelta(days=1)
            n += self.is_working_day(d)
        return n

    # --- instants ------------------------------------------------------------------------
    def due_date(self, start: dt.datetime, n: int, tz: ZoneInfo) -> dt.date:
        """The local date of the N-th working day strictly after ``start``'s local date in ``tz``."""
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"start must be an aware datetime (with its zone), not {start!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive number of working days, not {n!r}")
        d = start.astimezone(tz).date()
        for _ in range(n):
            d = self.next_working_day(d)
        return d

    def add_working_days(self, start: dt.datetime, n: int, tz: ZoneInfo) -> dt.datetime:
        """The deadline N working days after ``start``: 24:00 (local) of :meth:`due_date`.

        Returned as the aware instant of the local midnight that ends that day, in ``tz``; a
        deadline is missed when ``now >= deadline``. Example: a 差评 at 2026-09-30 16:00+08:00
        with 1 working day is due 2026-10-09 00:00+08:00 (end of Thursday 8 October, the first
        working day after the National Day holiday).
        """
        last = self.due_date(start, n, tz)
        nxt = last + dt.timedelta(days=1)
        return dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)

    def add_working_days_ms(self, start_ms: int, n: int, tz: ZoneInfo) -> int:
        """:meth:`add_working_days` on epoch milliseconds (the store's time unit)."""
        start = dt.datetime.fromtimestamp(start_ms / 1000, tz=dt.UTC)
        return int(self.add_working_days(start, n, tz).timestamp() * 1000)


_ZH = {h.value: h.chinese for h in chinese_calendar.Holiday}


def _zh_name(name: object) -> str:
    if not isinstance(name, str):
        return ""
    return str(_ZH.get(name, name))


@functools.cache
def _library_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(dt.date(year, 1, 1))
    except NotImplementedError:
        return False
    return True

