"""The working-day calendar against the State Council's 2026 arrangement, local holidays, zones.

The official arrangement: 国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04, published by
Xinhua; 国务院公报 2025年第31号, www.gov.cn/gongbao/2025/issue_12406/202511/content_7048922.html):
  一、元旦 1月1日至3日放假调休，1月4日(周日)上班。
  二、春节 2月15日至23日放假调休，2月14日(周六)、2月28日(周六)上班。
  三、清明节 4月4日至6日放假。
  四、劳动节 5月1日至5日放假调休，5月9日(周六)上班。
  五、端午节 6月19日至21日放假。
  六、中秋节 9月25日至27日放假。
  七、国庆节 10月1日(周四)至7日(周三)放假调休，9月20日(周日)、10月10日(周六)上班。
It is typed in below by hand from the notice, independently of the library, and every day of
2026 is checked against it.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from gateway.workdays import (
    CalendarSettingsError,
    UnknownYearError,
    WorkCalendar,
    WorkdaySettings,
)

SH = ZoneInfo("Asia/Shanghai")
D = dt.date

NOTICE_2026_OFF = [
    (D(2026, 1, 1), D(2026, 1, 3)),
    (D(2026, 2, 15), D(2026, 2, 23)),
    (D(2026, 4, 4), D(2026, 4, 6)),
    (D(2026, 5, 1), D(2026, 5, 5)),
    (D(2026, 6, 19), D(2026, 6, 21)),
    (D(2026, 9, 25), D(2026, 9, 27)),
    (D(2026, 10, 1), D(2026, 10, 7)),
]
NOTICE_2026_WORK = {D(2026, 1, 4), D(2026, 2, 14), D(2026, 2, 28), D(2026, 5, 9),
                    D(2026, 9, 20), D(2026, 10, 10)}


def _official_working(d: dt.date) -> bool:
    if d in NOTICE_2026_WORK:
        return True
    if any(a <= d <= b for a, b in NOTICE_2026_OFF):
        return False
    return d.isoweekday() <= 5


def test_every_day_of_2026_matches_the_notice() -> None:
    cal = WorkCalendar()
    d = D(2026, 1, 1)
    wrong = []
    while d.year == 2026:
        if cal.is_working_day(d) != _official_working(d):
            wrong.append(d)
        d += dt.timedelta(days=1)
    assert wrong == []


@pytest.mark.parametrize(("n", "due"), [
    (1, D(2026, 10, 8)),    # contact: Thu 8 Oct, first working day after 1-7 Oct
    (3, D(2026, 10, 10)),   # appeal: Sat 10 Oct is an adjusted working day (调休上班)
    (5, D(2026, 10, 13)),   # rectify: 8, 9, 10, 12, 13
    (7, D(2026, 10, 15)),   # review
    (15, D(2026, 10, 27)),  # complex rectification
])
def test_chaping_on_2026_09_30_across_national_day(n: int, due: dt.date) -> None:
    cal = WorkCalendar()
    given = dt.datetime(2026, 9, 30, 16, 0, tzinfo=SH)
    assert cal.due_date(given, n, SH) == due
    deadline = cal.add_working_days(given, n, SH)
    # 24:00 of the due date = the next local midnight, in the hall's zone.
    assert deadline == dt.datetime.combine(due + dt.timedelta(days=1), dt.time(0), SH)
    assert deadline.utcoffset() == dt.timedelta(hours=8)
    assert cal.working_days_between(given.date(), due) == n
    # Counting from the notice alone gives the same: the n-th official working day after 9-30.
    d, k = given.date(), 0
    while k < n:
        d += dt.timedelta(days=1)
        k += _official_working(d)
    assert d == due


def test_deadline_in_epoch_ms_matches() -> None:
    cal = WorkCalendar()
    given = dt.datetime(2026, 9, 30, 16, 0, tzinfo=SH)
    ms = cal.add_working_days_ms(int(given.timestamp() * 1000), 1, SH)
    assert ms == int(dt.datetime(2026, 10, 9, tzinfo=SH).timestamp() * 1000)


def test_day_info_names_the_reason() -> None:
    cal = WorkCalendar()
    assert cal.day_info(D(2026, 10, 10)).reason == "national_working_day"
    info = cal.day_info(D(2026, 10, 4))  # a Sunday inside the holiday
    assert (info.working, info.reason, info.name) == (False, "national_holiday", "国庆节")
    assert cal.day_info(D(2026, 10, 17)).reason == "weekend"
    assert cal.day_info(D(2026, 10, 16)).reason == "weekday"


def test_unknown_year_is_an_explicit_error() -> None:
    cal = WorkCalendar()
    lo, hi = cal.library_years()
    assert hi == 2026  # the pinned library's last year; when it learns 2027, update docs/workdays.md
    with pytest.raises(UnknownYearError) as e:
        cal.is_working_day(D(2027, 3, 1))
    msg = str(e.value)
    assert e.value.year == 2027
    assert "2027" in msg and "[calendar.national.2027]" in msg and "pip install -U chinesecalendar" in msg
    assert "\n" not in msg
    # A deadline that runs into the unknown year fails too, rather than guessing Monday-Friday.
    with pytest.raises(UnknownYearError):
        cal.add_working_days(dt.datetime(2026, 12, 30, 10, tzinfo=SH), 5, SH)
    with pytest.raises(UnknownYearError):
        cal.working_days_between(D(2026, 12, 1), D(2027, 1, 10))


def test_configured_national_year_fills_the_gap() -> None:
    s = WorkdaySettings.from_mapping({"national": {"2027": {
        "source": "test notice",
        "holidays": [{"name": "元旦", "start": D(2027, 1, 1), "end": D(2027, 1, 3)},
                     {"name": "春节", "start": "2027-02-05", "end": "2027-02-11"}],
        "working_days": [D(2027, 2, 13)],
    }}})
    cal = WorkCalendar(s)
    assert not cal.is_working_day(D(2027, 1, 1))
    assert cal.is_working_day(D(2027, 1, 4))
    assert cal.is_working_day(D(2027, 2, 13))      # a configured adjusted Saturday
    assert not cal.is_working_day(D(2027, 2, 8))   # Monday inside the configured holiday
    assert cal.day_info(D(2027, 2, 8)).name == "春节"
    # 2026-12-30 (Wed) + 5: 31 Dec, then 4, 5, 6, 7 Jan 2027 (1-3 Jan off).
    assert cal.due_date(dt.datetime(2026, 12, 30, 10, tzinfo=SH), 5, SH) == D(2027, 1, 7)
    assert 2027 in cal.known_national_years()


LHASA = {
    # 拉萨市人民政府办公室, 2026年春节、藏历新年放假安排 (2026-01-28): 2月15日至2月26日放假调休,
    # 2月14日(周六)、2月28日(周六)上班. The national holiday covers 15-23; Lhasa adds 24-26.
    "local_holidays": [
        {"name": "藏历新年", "start": D(2026, 2, 24), "end": D(2026, 2, 26)},
        # 雪顿节: an example date for the test; a hall takes it from the city's notice each year.
        {"name": "雪顿节", "date": D(2026, 8, 12)},
    ],
    "extra_working_days": [{"name": "调休上班（示例）", "date": D(2026, 8, 15)}],
}


def test_local_holidays_and_extra_working_days() -> None:
    cal = WorkCalendar(WorkdaySettings.from_mapping(LHASA))
    plain = WorkCalendar()
    # A 差评 on Friday 13 Feb: 14 Feb (adjusted Saturday) is #1 everywhere; nationally 24 Feb is #2,
    # in Lhasa 24-26 are 藏历新年, so #2 is Fri 27 Feb and #3 the adjusted Saturday 28 Feb.
    given = dt.datetime(2026, 2, 13, 11, 0, tzinfo=SH)
    assert plain.due_date(given, 2, SH) == D(2026, 2, 24)
    assert cal.due_date(given, 1, SH) == D(2026, 2, 14)
    assert cal.due_date(given, 2, SH) == D(2026, 2, 27)
    assert cal.due_date(given, 3, SH) == D(2026, 2, 28)
    info = cal.day_info(D(2026, 2, 25))
    assert (info.working, info.reason, info.name) == (False, "local_holiday", "藏历新年")
    assert not cal.is_working_day(D(2026, 8, 12))
    assert cal.is_working_day(D(2026, 8, 15))  # a Saturday made a working day locally
    assert cal.day_info(D(2026, 8, 15)).reason == "local_working_day"
    assert plain.is_working_day(D(2026, 8, 12)) and not plain.is_working_day(D(2026, 8, 15))


def test_local_required_refuses_a_year_without_local_dates() -> None:
    cal = WorkCalendar(WorkdaySettings.from_mapping({**LHASA, "local_required": True}))
    assert cal.is_working_day(D(2026, 3, 2))
    s = WorkdaySettings.from_mapping({
        **LHASA, "local_required": True,
        "national": {"2027": {"source": "x", "holidays": [
            {"name": "元旦", "date": D(2027, 1, 1)}]}}})
    with pytest.raises(UnknownYearError, match="no local holidays configured for 2027"):
        WorkCalendar(s).is_working_day(D(2027, 3, 1))


def test_zone_edges_around_local_midnight() -> None:
    cal = WorkCalendar()
    utc = dt.UTC
    # 23:59:59 on Fri 9 Oct in Shanghai: counting starts Sat 10 Oct (an adjusted working day).
    before = dt.datetime(2026, 10, 9, 15, 59, 59, tzinfo=utc)
    after = dt.datetime(2026, 10, 9, 16, 0, 0, tzinfo=utc)  # 00:00 on Sat 10 Oct, Shanghai
    assert cal.add_working_days(before, 1, SH) == dt.datetime(2026, 10, 11, tzinfo=SH)
    assert cal.add_working_days(after, 1, SH) == dt.datetime(2026, 10, 13, tzinfo=SH)
    # The same instant in a hall two hours behind is still Friday evening there.
    urumqi = ZoneInfo("Asia/Urumqi")
    assert cal.due_date(after, 1, urumqi) == D(2026, 10, 10)
    deadline = cal.add_working_days(after, 1, urumqi)
    assert deadline.isoformat() == "2026-10-11T00:00:00+06:00"
    # One microsecond before the deadline is in time; the deadline itself is overdue.
    assert deadline - dt.timedelta(microseconds=1) < deadline


def test_bad_arguments() -> None:
    cal = WorkCalendar()
    with pytest.raises(ValueError, match="aware"):
        cal.add_working_days(dt.datetime(2026, 9, 30, 16), 1, SH)
    with pytest.raises(ValueError, match="positive"):
        cal.add_working_days(dt.datetime(2026, 9, 30, 16, tzinfo=SH), 0, SH)
    assert cal.working_days_between(D(2026, 10, 13), D(2026, 9, 30)) == -5
    assert cal.working_days_between(D(2026, 9, 30), D(2026, 9, 30)) == 0


def test_settings_report_every_problem_at_once() -> None:
    with pytest.raises(CalendarSettingsError) as e:
        WorkdaySettings.from_mapping({
            "local_holiday": [],                                      # typo
            "local_required": "yes",
            "local_holidays": [{"name": "藏历新年", "start": D(2026, 2, 26), "end": D(2026, 2, 24)},
                               {"date": "2026-13-01"}],
            "extra_working_days": [{"name": "x", "date": D(2026, 2, 25), "colour": 1}],
            "national": {"20x7": {}, "2027": {"holidays": [{"name": "元旦", "date": D(2028, 1, 1)}],
                                              "working_days": [D(2027, 1, 4)]}},
        })
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg
    assert msg.startswith("[calendar]: ")
    for part in [
        "unknown key 'local_holiday' (did you mean 'local_holidays'?)",
        "local_required must be true or false",
        "local_holidays[0].end 2026-02-24 is before start 2026-02-26",
        "local_holidays[1].name is required",
        "local_holidays[1].date must be a date like 2026-10-01",
        "unknown key 'extra_working_days[0].colour'",
        "national.20x7 is not a year",
        "national.2027.source is required",
        "national.2027.holidays '元旦' 2028-01-01..2028-01-01 is not in 2027",
        "national.2027.working_days 2027-01-04 is a weekday already",
    ]:
        assert part in msg, (part, msg)


def test_overlap_of_local_holiday_and_extra_working_day_is_refused() -> None:
    with pytest.raises(CalendarSettingsError, match="2026-02-25 .* is also a local holiday"):
        WorkdaySettings.from_mapping({
            "local_holidays": [{"name": "藏历新年", "start": D(2026, 2, 24), "end": D(2026, 2, 26)}],
            "extra_working_days": [{"name": "调休", "date": D(2026, 2, 25)}],
        })


def test_toml_section_parses() -> None:
    import tomllib
    text = """
[calendar]
local_required = true
local_holidays = [
  { name = "藏历新年", start = 2026-02-24, end = 2026-02-26 },
  { name = "雪顿节", date = 2026-08-12 },
]
"""
    s = WorkdaySettings.from_mapping(tomllib.loads(text)["calendar"])
    assert [h.name for h in s.local_holidays] == ["藏历新年", "雪顿节"]
    assert s.local_required
