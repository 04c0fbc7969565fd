"""差评 work orders through the service (gateway/complaints.py) on a real store (both backends):
deadlines across the 2026 National Day holiday, an unknown year, the appeal period, refused
transitions, exclusion and the report, the sweep, and the notices to a real webhook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from adm_support import Store, open_store
from aiohttp import web
from cmp_support import SH, Clock, Hall, local, service

from gateway import reports
from gateway.complaints import fmt_deadline
from gateway.errors import BadInput, Conflict
from gateway.notify import Notifier, NotifySettings
from simulator.netutil import free_port

H = 3_600_000


@pytest.fixture
async def hall(store: Store) -> Hall:
    clock = Clock(local(2026, 9, 30, 16))
    return Hall(store, clock, service(store, clock))


async def test_deadlines_across_the_2026_national_day_holiday(hall: Hall) -> None:
    """A 差评 at 2026-09-30 16:00 (Shanghai). The State Council's 2026 arrangement: 1-7 October
    off, Saturday 10 October worked (tests/gateway/test_workdays.py checks every day of 2026)."""
    cid = await hall.complaint(local(2026, 9, 30, 16))
    c = await hall.svc.get(cid)
    assert c.contact_due_ms == local(2026, 10, 9, 0)  # 1 working day: Thu 8 Oct, 24:00
    assert c.rectify_due_ms == local(2026, 10, 14, 0)  # 5: Tue 13 Oct (Sat 10 Oct counts)
    assert c.appeal_due_ms == local(2026, 10, 11, 0)  # 3 from being notified: Sat 10 Oct (worked)
    assert c.calendar_error is None
    v = hall.svc.view(c)
    assert v["deadlines"]["contact"]["due"] == "2026-10-08 24:00+08:00"
    assert v["deadlines"]["rectify"]["due"] == "2026-10-13 24:00+08:00"
    assert v["rated_at"] == "2026-09-30 16:00+08:00"
    # Complex: 15 working days, counted from the rating too.
    hall.clock.t = local(2026, 10, 8, 9)
    await hall.svc.contact(cid, "cli:li", "phoned the citizen: the queue number system skipped him")
    c = await hall.svc.verify(cid, "cli:li", True, note="confirmed", complex_=True)
    assert (c.state, c.verdict, c.complex) == ("rectifying", "valid", True)
    assert c.rectify_due_ms == local(2026, 10, 28, 0)  # Tue 27 Oct, 24:00
    # The appeal's review: 7 working days from the appeal (Fri 9 Oct) -> Mon 19 Oct.
    hall.clock.t = local(2026, 10, 9, 10)
    c = await hall.svc.appeal(cid, "cli:zhang", "the citizen pressed the wrong button")
    assert c.review_due_ms == local(2026, 10, 20, 0)
    assert fmt_deadline(c.review_due_ms, SH) == "2026-10-19 24:00+08:00"


async def test_the_appeal_period_is_three_working_days(hall: Hall) -> None:
    a = await hall.complaint(local(2026, 9, 30, 16))
    b = await hall.complaint(local(2026, 9, 30, 16, 5))
    hall.clock.t = local(2026, 10, 10, 23, 59)  # the last minute of the period
    c = await hall.svc.appeal(a, "cli:zhang", "I was not at the window then")
    assert c.appeal_state == "appealed"
    hall.clock.t = local(2026, 10, 11, 0, 0)  # 24:00 of Saturday 10 October has passed
    with pytest.raises(Conflict) as e:
        await hall.svc.appeal(b, "cli:zhang", "too late")
    assert e.value.code == "appeal_too_late"
    assert "ended 2026-10-10 24:00+08:00" in str(e.value) and "3 working days" in str(e.value)
    assert (await hall.svc.get(b)).appeal_state == "none"


async def test_a_year_the_calendar_does_not_know(hall: Hall) -> None:
    """A 差评 on 30 December 2026: the contact deadline (31 Dec) is known, the rest runs into
    2027, which the calendar does not know: the complaint opens anyway, the gap is explicit,
    an appeal cannot be checked and is refused with the documented error, and once the year
    is configured the leader's job fills the deadlines in."""
    cid = await hall.complaint(local(2026, 12, 30, 10))
    c = await hall.svc.get(cid)
    assert c.contact_due_ms == local(2027, 1, 1, 0)
    assert c.rectify_due_ms is None and c.appeal_due_ms is None
    assert c.calendar_error is not None
    assert "no national holiday arrangement for 2027" in c.calendar_error
    assert "[calendar.national.2027]" in c.calendar_error and "\n" not in c.calendar_error
    v = hall.svc.view(c)
    assert v["deadlines"]["rectify"] == {
        "due": None,
        "due_ms": None,
        "status": "unknown",
        "label": "整改反馈",
    }
    with pytest.raises(Conflict) as e:
        await hall.svc.appeal(cid, "cli:zhang", "wrong button")
    assert e.value.code == "calendar_unknown_year" and "2027" in str(e.value)
    notices = await hall.svc.notices_due()
    assert [k for _, k, _ in notices].count("calendar") == 1
    # Verified complex meanwhile: still unknown, and the gap is not forgotten.
    c = await hall.svc.verify(cid, "cli:li", True, complex_=True)
    assert c.rectify_due_ms is None and c.calendar_error is not None

    cal = {
        "national": {
            "2027": {
                "source": "test: the State Council's 2027 notice, as typed in",
                "holidays": [{"name": "元旦", "start": "2027-01-01", "end": "2027-01-03"}],
            }
        }
    }
    filled = service(hall.store, hall.clock, calendar=cal)
    assert await filled.fill_deadlines() == 1
    c = await filled.get(cid)
    assert c.calendar_error is None
    assert c.rectify_due_ms == local(2027, 1, 22, 0)  # complex, 15: 31 Dec, 4-8, 11-15, 18-21 January
    assert c.appeal_due_ms == local(2027, 1, 6, 0)  # 31 Dec, 4, 5 January
    assert [e["action"] for e in (await filled.show(cid))["history"]] == ["open", "verify", "deadlines"]


async def test_refused_transitions_say_why_and_change_nothing(hall: Hall) -> None:
    cid = await hall.complaint(local(2026, 11, 24, 10))
    for call, code in [
        (hall.svc.rectify(cid, "cli:li", "done"), "bad_transition"),
        (hall.svc.close(cid, "cli:li"), "bad_transition"),
        (hall.svc.callback(cid, "cli:li", "s"), "bad_transition"),
        (hall.svc.review_start(cid, "cli:li"), "bad_transition"),
    ]:
        with pytest.raises(Conflict) as e:
            await call
        assert e.value.code == code and "\n" not in str(e.value)
    with pytest.raises(
        Conflict, match="complaint %d is opened: rectify is possible only when it is rectifying" % cid
    ):
        await hall.svc.rectify(cid, "cli:li", "done")
    with pytest.raises(BadInput, match="a note is required"):
        await hall.svc.contact(cid, "cli:li", "  ")
    with pytest.raises(BadInput, match="reason must be one of"):
        await hall.svc.verify(cid, "cli:li", False, reason="bored", note="x")
    with pytest.raises(BadInput, match="unknown complaint|positive integer"):
        await hall.svc.get(0)
    c = await hall.svc.verify(cid, "cli:li", False, reason="not_our_matter", note="a tax matter, not ours")
    assert (c.state, c.verdict, c.invalid_reason) == ("closed", "invalid", "not_our_matter")
    with pytest.raises(Conflict, match="is closed: verify is possible only when it is opened or contacted"):
        await hall.svc.verify(cid, "cli:li", True)
    with pytest.raises(Conflict, match="nothing to appeal"):
        await hall.svc.appeal(cid, "cli:zhang", "x")
    show = await hall.svc.show(cid)
    assert [(h["action"], h["from_state"], h["to_state"], h["actor"]) for h in show["history"]] == [
        ("open", None, "opened", "gateway"),
        ("verify", "opened", "closed", "cli:li"),
    ]


async def test_overturned_appeal_excludes_the_rating_from_the_report_and_lists_the_correction(
    store: Store,
) -> None:
    clock = Clock(local(2026, 11, 24, 9))
    hall = Hall(store, clock, service(store, clock, corrections="manual"))
    kept = await hall.complaint(local(2026, 11, 24, 9, 30), grade="d")
    gone = await hall.complaint(local(2026, 11, 24, 10), grade="vd")
    await hall.svc.contact(kept, "cli:li", "called")
    await hall.svc.verify(kept, "cli:li", True)
    day = await reports.day_report(store.db, store.cfg, "2026-11-24")
    t = day.total
    assert (t.ratings, t.bad, t.valid_bad, t.excluded, t.grades["vd"]) == (2, 2, 1, 0, 1)

    clock.t = local(2026, 11, 25, 9)
    await hall.svc.appeal(gone, "cli:zhang", "the citizen's child pressed it; video kept")
    await hall.svc.review_start(gone, "cli:wang")
    with pytest.raises(BadInput, match="needs reason"):
        await hall.svc.review_decide(gone, "cli:wang", True, None, "x")
    c = await hall.svc.review_decide(gone, "cli:wang", True, "mistaken_press", "the video shows a child")
    assert (c.appeal_state, c.overturn_reason, c.state) == ("overturned", "mistaken_press", "closed")
    day = await reports.day_report(store.db, store.cfg, "2026-11-24")
    t = day.total
    assert (t.ratings, t.bad, t.valid_bad, t.excluded, t.grades["vd"]) == (1, 1, 1, 1, 0)
    assert t.cases == 2 and t.rating_rate == 0.5  # the case happened; its rating is not counted
    # Kept, never deleted: the record, its invitation and the exclusion are all there.
    show = await hall.svc.show(gone)
    assert show["exclusion"]["reason"] == "mistaken_press" and show["exclusion"]["actor"] == "cli:wang"
    assert await store.fetchone("SELECT grade FROM records WHERE record_id = ?", (c.record_id,)) == ("vd",)
    # This hall's adapter cannot correct: listed for manual action, then marked done (audited).
    rows, total = await hall.svc.corrections(["manual"])
    assert total == 1 and rows[0]["action"] == "exclude" and rows[0]["record_id"] == c.record_id
    with pytest.raises(Conflict, match="already excluded"):
        await hall.svc.exclude(gone, "cli:wang", "malicious", "again")
    done = await hall.svc.correction_done(rows[0]["id"], "cli:wang", "done in the province's back office")
    assert done["status"] == "manual_done" and done["done_by"] == "cli:wang"
    audit = await store.fetchall(
        "SELECT actor, action FROM audit_log WHERE action LIKE 'complaint.%' ORDER BY id"
    )
    assert ("cli:wang", "complaint.review") in audit and ("cli:wang", "complaint.correction_done") in audit


async def test_the_sweep_opens_what_the_hook_missed_once(hall: Hall) -> None:
    rid = await hall.bad_rating(local(2026, 11, 24, 10), grade="d")
    await hall.bad_rating(local(2026, 11, 24, 10, 5), grade="s")  # not a 差评
    hall.clock.t = local(2026, 11, 24, 10, 6)
    opened = await hall.svc.sweep()
    assert [c.record_id for c in opened] == [rid]
    assert await hall.svc.sweep() == []
    again = await hall.svc.open_for_record(rid)
    assert again is not None and not again.created and again.complaint.id == opened[0].id
    rows, total = await hall.svc.search()
    assert total == 1 and rows[0]["staff_account"] == "zhang" and rows[0]["window_id"] == "A01"
    assert rows[0]["dept_code"] == "11370300MB0000000H" and rows[0]["staff_name"] == "张三"
    assert rows[0]["hall_id"] == "hall-1" and rows[0]["task_name"] == "城乡居民养老保险参保登记"


async def test_reasons_are_checked_against_the_tag_set_in_force(hall: Hall) -> None:
    cid = await hall.complaint(local(2026, 11, 24, 10), grade="vd")
    with pytest.raises(BadInput) as e:
        await hall.svc.attach_reasons(cid, "cli:li", ["D01"])  # a 不满意 tag on a 非常不满意
    assert e.value.code == "unknown_tag" and "V01" in str(e.value)
    with pytest.raises(BadInput, match="at least one tag"):
        await hall.svc.attach_reasons(cid, "cli:li")
    c = await hall.svc.attach_reasons(cid, "cli:li", ["V03", "V01", "V03"], "窗口人员态度恶劣")
    assert (c.tags, c.comment, c.tag_version, c.reasons_source) == (
        "V03,V01",
        "窗口人员态度恶劣",
        "2026.1",
        "liaison",
    )
    assert hall.svc.view(c)["tag_names"] == ["服务态度恶劣", "推诿扯皮"]


# ---- notices to a real webhook ------------------------------------------------------------------


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append({"delivery": request.headers["X-HCP-Delivery"], **json.loads(await request.read())})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield "http://127.0.0.1:%d/hook" % port, got
    finally:
        await runner.cleanup()


async def test_opened_due_soon_and_overdue_are_each_told_once(
    hall: Hall, inbox: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = inbox
    notifier = Notifier(NotifySettings.from_mapping({"webhook": [{"name": "duty", "url": url}]}))
    await notifier.start()
    try:
        cid = await hall.complaint(local(2026, 11, 24, 16))  # contact due Wed 25th 24:00
        assert await hall.svc.tick(notifier) == 1
        hall.clock.t = local(2026, 11, 25, 9)  # < 24 h left: due soon
        assert await hall.svc.tick(notifier) == 1
        assert await hall.svc.tick(notifier) == 0  # never twice
        hall.clock.t = local(2026, 11, 26, 0, 1)  # overdue
        await hall.svc.tick(notifier)
        assert await notifier.flush(5.0)
    finally:
        await notifier.aclose()
    kinds = [(g["kind"], g["payload"]["notice"]) for g in got]
    assert kinds == [
        ("complaint.opened", "opened"),
        ("complaint.due_soon", "due_soon:contact"),
        ("complaint.overdue", "overdue:contact"),
    ]
    opened = got[0]
    assert opened["delivery"] == "complaint-%d-opened" % cid  # stable: a repeat is dropped
    assert opened["subject"] == "新差评：A01窗口 · 非常不满意"
    assert "2026-11-25 24:00+08:00 前联系办事群众" in opened["body"] and "张三" in opened["body"]
    assert got[2]["severity"] == "critical"
    rows, total = await hall.svc.search(due="overdue")
    assert total == 1 and rows[0]["deadlines"]["contact"]["status"] == "overdue"
    assert (await hall.svc.search(due="soon"))[1] == 0


async def test_config_sections_are_checked_whole(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as e:
        await open_store(tmp_path, complaints={"tag_verison": "x"})
    assert "[complaints] unknown key tag_verison (did you mean tag_version?)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        await open_store(tmp_path, calendar={"local_holiday": []}, notify={"queue_sise": 3})
    text = str(e.value)
    assert "[calendar] unknown key local_holiday (did you mean local_holidays?)" in text
    assert "[notify] unknown key queue_sise (did you mean queue_size?)" in text
    with pytest.raises(ConfigError) as e:
        await open_store(
            tmp_path,
            complaints={"tag_version": "9", "tag_sets": {"1": {"d": [{"code": "a b"}]}}},
            calendar={"local_holidays": [{"name": "x", "date": "2026-13-01"}]},
        )
    text = str(e.value)
    assert "tag_version '9' is not one of the tag_sets" in text and "tag_sets.1.source is required" in text
    assert "local_holidays[0].date must be a date" in text
