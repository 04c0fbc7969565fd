"""A 差评 work order's snapshot of hall, department, window and clerk is the district's
press-time attribution (gateway.org.org_at_press_time), on both backends: a window moved to
another hall and department after the press keeps its earlier 差评 where it was pressed, even
when the work order opens after the move; the next one opens in the new hall, with that
hall's time zone for its deadlines."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from adm_support import Store
from cmp_support import DEPT, Clock, Hall, local, service

from gateway import org
from gateway.org import HallSpec

TOWN_DEPT = "11370303MB0000009Q"   # a valid GB 32100 code (check character Q)
H = 3_600_000


@pytest.fixture
async def hall(store: Store) -> Hall:
    clock = Clock(local(2026, 11, 24, 9))
    return Hall(store, clock, service(store, clock))


async def test_the_work_order_sits_where_the_rating_was_pressed(hall: Hall) -> None:
    db, default = hall.store.db, hall.store.cfg.hall
    t0 = local(2026, 11, 24, 9)
    await org.add_department(db, default, DEPT, "区人力资源和社会保障局", None, "cli:admin", at_ms=t0)
    await org.add_hall(db, default, "town-1", HallSpec(name="某某镇便民服务中心", kind="town",
                                                       timezone="Asia/Urumqi"), "cli:admin", at_ms=t0)
    await org.add_department(db, default, TOWN_DEPT, "某某镇社会事务办", "town-1", "cli:admin", at_ms=t0)

    pressed = local(2026, 11, 24, 10)
    rid = await hall.bad_rating(pressed, grade="vd", window="A01")
    # The window moves to the town hall and its department before the work order opens.
    await org.move_window(db, default, "A01", "cli:admin", hall_id="town-1", dept_code=TOWN_DEPT,
                          at_ms=pressed + H)
    hall.clock.t = pressed + 2 * H
    first = await hall.svc.open_for_record(rid, at_ms=pressed + 2 * H)
    assert first is not None and first.created
    c = first.complaint
    assert (c.hall_id, c.hall_tz, c.dept_code, c.dept_name) == (
        default.id, "Asia/Shanghai", DEPT, "区人力资源和社会保障局")
    assert (c.window_id, c.window_name, c.staff_account, c.staff_name) == ("A01", "综合窗口", "zhang", "张三")
    # The same as the function the bulletins and the console use.
    p = await db.read(lambda tx: org.org_at_press_time(tx, rid, default))
    assert (c.hall_id, c.hall_name, c.dept_code, c.window_id, c.staff_account) == (
        p.hall_id, p.hall_name, p.dept_code, p.window_id, p.staff_account)

    # A 差评 pressed after the move is the town hall's, its deadlines in the town's zone.
    later = local(2026, 11, 24, 15)
    second = await hall.complaint(later, grade="d", window="A01")
    c2 = await hall.svc.get(second)
    assert (c2.hall_id, c2.hall_name, c2.hall_tz, c2.dept_code, c2.dept_name) == (
        "town-1", "某某镇便民服务中心", "Asia/Urumqi", TOWN_DEPT, "某某镇社会事务办")
    # 1 working day for the contact: Wednesday 25 November, 24:00 in the town's zone.
    assert c2.contact_due_ms == hall.svc.calendar.add_working_days_ms(later, 1, ZoneInfo("Asia/Urumqi"))
    assert hall.svc.view(c2)["deadlines"]["contact"]["due"] == "2026-11-25 24:00+06:00"
    # The work orders list filters by the hall and department they were pressed in.
    rows, total = await hall.svc.search()
    assert total == 2 and {(r["hall_id"], r["dept_code"]) for r in rows} == {
        (default.id, DEPT), ("town-1", TOWN_DEPT)}
