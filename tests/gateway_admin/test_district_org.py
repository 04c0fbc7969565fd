"""The district's organisation (gateway/org.py) on the store_url backend: halls, departments
(GB 32100 codes), windows with their place history, clerks, retirement, devices' halls, and
press-time attribution of hall and department (gateway/attribution.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from adm_support import Store, flags, open_store

from gateway import bindings, invitations, org, uscc
from gateway.errors import BadInput, Conflict, NotFound

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
URUMQI = dt.timezone(dt.timedelta(hours=6))
D_TAX = "11370303MB2858350L"           # the seed's own code (张店区行政审批局): valid
D_SOC = uscc.complete("11370303004253591")
D_MED = uscc.complete("12370303MB0000001")
ACTOR = "test:org"


def ms(y: int, mo: int, d: int, h: int, mi: int = 0, tz: dt.tzinfo = SHANGHAI) -> int:
    return int(dt.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp() * 1000)


# ---- unified social credit codes ------------------------------------------------------------------

def test_uscc_check_character() -> None:
    assert uscc.is_valid(D_TAX)
    assert uscc.problem("11370303MB2858350X") == "check character is X, expected L (GB 32100-2015)"
    assert "18 characters" in (uscc.problem("11370303MB285835") or "")
    assert "outside GB 32100's set" in (uscc.problem("11370303MB285835OL") or "")   # letter O
    assert uscc.complete("91110000600037341") == "91110000600037341L"   # a published code (Huawei)
    with pytest.raises(BadInput) as e:
        org.check_dept_code("11370303mb2858350x")
    assert e.value.code == "bad_dept_code" and "expected L" in str(e.value)
    assert org.check_dept_code(" 11370303mb2858350l ") == D_TAX   # trimmed, upper-cased


# ---- halls --------------------------------------------------------------------------------

async def test_halls_add_rename_move_retime_retire(store: Store) -> None:
    default = store.cfg.hall
    halls = await org.list_halls(store.db, default)
    assert [(h.hall_id, h.from_config, h.kind) for h in halls] == [("hall-1", True, "centre")]
    spec = org.HallSpec(name="马尚街道便民服务中心", kind="town", area_code="370303004",
                        opening_hours=("08:30-12:00", "13:30-17:30"), opening_days=(1, 2, 3, 4, 5))
    town = await org.add_hall(store.db, default, "mashang", spec, ACTOR)
    assert town.hours_text == ["08:30-12:00", "13:30-17:30"] and town.timezone == "Asia/Shanghai"
    vspec = org.HallSpec(name="马尚村便民服务站", kind="village", parent_id="mashang")
    village = await org.add_hall(store.db, default, "mashang-v1", vspec, ACTOR)
    assert village.parent_id == "mashang" and village.opening_days == (1, 2, 3, 4, 5)  # its town's
    with pytest.raises(Conflict) as c:
        await org.update_hall(store.db, default, "mashang", org.HallSpec(parent_id="mashang-v1"), ACTOR)
    assert c.value.code == "hall_cycle"
    with pytest.raises(Conflict) as c:
        await org.add_hall(store.db, default, "mashang", spec, ACTOR)
    assert c.value.code == "hall_exists"
    for bad, code in ((org.HallSpec(name="x", kind="city"), "bad_hall_kind"),
                      (org.HallSpec(name="x", kind="town", timezone="Mars/Olympus"), "bad_timezone"),
                      (org.HallSpec(name="x", kind="town", opening_hours=("17:00-08:00",)),
                       "bad_opening_hours"),
                      (org.HallSpec(name="x", kind="town", opening_days=(0,)), "bad_opening_days"),
                      (org.HallSpec(name="x", kind="town", area_code="37A"), "bad_area_code")):
        with pytest.raises(BadInput) as e:
            await org.add_hall(store.db, default, "bad", bad, ACTOR)
        assert e.value.code == code
    with pytest.raises(NotFound):
        await org.add_hall(store.db, default, "v2", org.HallSpec(name="x", kind="village", parent_id="nope"),
                           ACTOR)

    renamed = await org.update_hall(store.db, default, "mashang", org.HallSpec(name="马尚镇便民服务中心"),
                                    ACTOR)
    assert renamed.name == "马尚镇便民服务中心"
    moved = await org.update_hall(store.db, default, "mashang-v1", org.HallSpec(no_parent=True), ACTOR)
    assert moved.parent_id is None
    # The default hall edited: copied into the store, the config's values kept for the rest.
    d = await org.update_hall(store.db, default, "hall-1", org.HallSpec(name="张店区政务服务中心"), ACTOR)
    assert (d.name, d.from_config, d.hours_text) == ("张店区政务服务中心", False, ["00:00-24:00"])
    with pytest.raises(Conflict) as c:
        await org.retire_hall(store.db, default, "hall-1", ACTOR)
    assert c.value.code == "default_hall"

    await bindings.add_window(store.db, "M01", D_TAX, "马尚综合窗口", ACTOR, hall_id="mashang")
    with pytest.raises(Conflict) as c:
        await org.retire_hall(store.db, default, "mashang", ACTOR)
    assert c.value.code == "hall_in_use" and "1 windows" in str(c.value)
    await org.retire_window(store.db, "M01", ACTOR)
    retired = await org.retire_hall(store.db, default, "mashang", ACTOR)
    assert retired.retired
    with pytest.raises(Conflict) as c:
        await bindings.add_window(store.db, "M02", "", "", ACTOR, hall_id="mashang")
    assert c.value.code == "hall_retired"
    # Every change is in the audit log with its actor.
    actions = await store.fetchall("SELECT action, actor FROM audit_log WHERE actor = ? ORDER BY id",
                                   (ACTOR,))
    assert [a for a, _ in actions] == ["hall.add", "hall.add", "hall.update", "hall.update", "hall.update",
                                       "window.add", "window.retire", "hall.retire"]


# ---- departments, windows, clerks -------------------------------------------------------------

async def test_departments_windows_clerks(store: Store) -> None:
    default = store.cfg.hall
    await org.add_hall(store.db, default, "town-a", org.HallSpec(name="甲镇便民服务中心", kind="town"), ACTOR)
    dep = await org.add_department(store.db, default, D_SOC.lower(), "区人力资源和社会保障局", None, ACTOR)
    assert dep.dept_code == D_SOC and dep.hall_id is None
    with pytest.raises(BadInput) as e:
        await org.add_department(store.db, default, D_SOC[:17] + "0", "x", None, ACTOR)
    assert "check character" in str(e.value)
    with pytest.raises(Conflict):
        await org.add_department(store.db, default, D_SOC, "again", None, ACTOR)
    dep = await org.update_department(store.db, default, D_SOC, ACTOR, name="区人社局", hall_id="town-a")
    assert (dep.name, dep.hall_id) == ("区人社局", "town-a")

    w = await bindings.add_window(store.db, "B01", D_SOC, "社保窗口", ACTOR, hall_id="town-a")
    assert (w.hall_id, w.dept_code) == ("town-a", D_SOC)
    with pytest.raises(BadInput):
        await bindings.add_window(store.db, "B02", "NOT-A-CODE", "", ACTOR)
    w = await org.rename_window(store.db, "B01", "社保综合窗口", ACTOR)
    with pytest.raises(Conflict) as c:
        await org.retire_department(store.db, D_SOC, ACTOR)
    assert c.value.code == "department_in_use" and "B01" in str(c.value)
    w = await org.move_window(store.db, default, "B01", ACTOR, hall_id=None, dept_code=D_TAX)
    assert (w.hall_id, w.dept_code, w.name) == (None, D_TAX, "社保综合窗口")
    places = await org.window_history(store.db, "B01")
    assert [(p.hall_id, p.dept_code, p.valid_to_ms is None) for p in places] == [
        ("town-a", D_SOC, False), (None, D_TAX, True)]
    with pytest.raises(BadInput) as e:
        await org.move_window(store.db, default, "B01", ACTOR, hall_id=None)
    assert e.value.code == "nothing_to_change"

    s = await org.add_staff(store.db, "zhao", "赵六", D_SOC, ACTOR)
    assert s.dept_code == D_SOC
    s = await org.update_staff(store.db, "zhao", ACTOR, display_name="赵小六", dept_code="")
    assert (s.display_name, s.dept_code) == ("赵小六", "")
    # Retiring what is bound is refused; after unpair it is kept, marked, and cannot be paired.
    await bindings.pair(store.db, "dev-1", "B01", "zhao", ACTOR)
    for call, code in ((org.retire_window(store.db, "B01", ACTOR), "window_in_use"),
                       (org.retire_staff(store.db, "zhao", ACTOR), "staff_in_use")):
        with pytest.raises(Conflict) as c:
            await call
        assert c.value.code == code
    await bindings.unpair(store.db, "dev-1", ACTOR)
    assert (await org.retire_staff(store.db, "zhao", ACTOR)).retired
    assert (await org.retire_window(store.db, "B01", ACTOR)).retired
    with pytest.raises(Conflict) as c:
        await bindings.pair(store.db, "dev-1", "B01", "zhang", ACTOR)
    assert c.value.code == "window_retired"
    with pytest.raises(Conflict) as c:
        await bindings.pair(store.db, "dev-1", "A01", "zhao", ACTOR)
    assert c.value.code == "staff_retired"
    # Retired rows are kept (history, names in past bulletins).
    assert (await store.db.read(lambda tx: tx.org.get_staff("zhao"))) is not None
    # A department with no windows left can retire; a retired department takes no new window.
    await org.add_department(store.db, default, D_MED, "区医疗保障局", None, ACTOR)
    assert (await org.retire_department(store.db, D_MED, ACTOR)).retired
    with pytest.raises(Conflict) as c:
        await bindings.add_window(store.db, "C01", D_MED, "", ACTOR)
    assert c.value.code == "department_retired"


async def test_device_hall(store: Store) -> None:
    default = store.cfg.hall
    await org.add_hall(store.db, default, "town-b", org.HallSpec(name="乙镇", kind="town"), ACTOR)
    assert await org.move_device(store.db, default, "dev-2", "town-b", ACTOR) == "town-b"
    with pytest.raises(NotFound):
        await org.move_device(store.db, default, "dev-9", "town-b", ACTOR)
    with pytest.raises(NotFound):
        await org.move_device(store.db, default, "dev-2", "no-such-hall", ACTOR)
    halls = await store.db.read(lambda tx: tx.org.device_halls())
    assert halls["dev-2"] == "town-b" and halls["dev-1"] is None


# ---- press-time attribution --------------------------------------------------------------------

async def test_records_carry_their_place_at_press_time(tmp_path: Path, store_url: str) -> None:
    """Two halls with their own hours and zones: a press is credited to where its window was at
    the press (even when it arrives after a move), and after_hours follows that hall's hours."""
    s = await open_store(tmp_path, store_url, hall={
        "id": "centre", "name": "区中心", "timezone": "Asia/Shanghai", "opening_hours": ["08:30-17:30"],
        "opening_days": [1, 2, 3, 4, 5]})
    try:
        default = s.cfg.hall
        await org.add_hall(s.db, default, "west", org.HallSpec(
            name="西部镇", kind="town", timezone="Asia/Urumqi", opening_hours=("10:00-19:00",),
            opening_days=(1, 2, 3, 4, 5, 6)), ACTOR)
        await org.add_department(s.db, default, D_SOC, "区人社局", None, ACTOR)
        await org.add_window(s.db, default, "W1", D_SOC, "人社窗口", None, ACTOR, at_ms=ms(2026, 1, 1, 0))
        t0 = ms(2026, 6, 1, 8, 0)
        await bindings.pair(s.db, "dev-1", "W1", "zhang", ACTOR, at_ms=t0)
        r1 = await s.rec("dev-1", "walkup", ms(2026, 6, 1, 9, 0))        # Monday 09:00 Shanghai: open
        # Moved to the western town (and another department) at 12:00.
        await org.move_window(s.db, default, "W1", ACTOR, hall_id="west", dept_code=D_TAX,
                              at_ms=ms(2026, 6, 1, 12, 0))
        r2 = await s.rec("dev-1", "walkup", ms(2026, 6, 1, 12, 30))      # 10:30 in Urumqi: open there
        r_late = await s.rec("dev-1", "walkup", ms(2026, 6, 1, 11, 0))   # pressed before the move, came after
        r3 = await s.rec("dev-1", "walkup", ms(2026, 6, 1, 21, 30))      # 19:30 Urumqi: closed
        r4 = await s.rec("dev-1", "walkup", ms(2026, 6, 6, 12, 0))       # Saturday: open in the west only
        assert (r1["hall_id"], r1["dept_code"]) == (None, D_SOC) and "after_hours" not in flags(r1)
        assert (r_late["hall_id"], r_late["dept_code"]) == (None, D_SOC)
        assert (r2["hall_id"], r2["dept_code"]) == ("west", D_TAX) and "after_hours" not in flags(r2)
        assert "after_hours" in flags(r3)
        assert "after_hours" not in flags(r4)
        # An invitation carries its window's hall and department as issued.
        req = invitations.InvitationRequest(case_no="C-1", window_id="W1")
        out = await invitations.create(s.db, req, ACTOR, invitations.InvitationRules(),
                                       at_ms=ms(2026, 6, 2, 12, 0))
        assert (out.invitation.hall_id, out.invitation.dept_code) == ("west", D_TAX)
        # Unbound: the device's hall, no department.
        await org.move_device(s.db, default, "dev-2", "west", ACTOR)
        r5 = await s.rec("dev-2", "walkup", ms(2026, 6, 1, 13, 0))
        assert (r5["hall_id"], r5["dept_code"]) == ("west", None) and "unbound" in flags(r5)
        # The complaints helper's question: who and where, as at the press; names of today.
        await org.update_staff(s.db, "zhang", ACTOR, display_name="张三丰")
        await bindings.unpair(s.db, "dev-1", ACTOR, at_ms=ms(2026, 6, 7, 8, 0))
        await org.retire_staff(s.db, "zhang", ACTOR)
        got = await s.db.read(lambda tx: org.orgs_at_press_time(
            tx, [r1["record_id"], r2["record_id"], r5["record_id"]], default))
        assert [(p.hall_id, p.hall_name, p.dept_code, p.dept_name, p.window_id, p.staff_account, p.staff_name)
                for p in got] == [
            ("centre", "区中心", D_SOC, "区人社局", "W1", "zhang", "张三丰"),
            ("west", "西部镇", D_TAX, D_TAX, "W1", "zhang", "张三丰"),   # a code not registered: shown as is
            ("west", "西部镇", "", "", None, None, "")]
        with pytest.raises(NotFound):
            await s.db.read(lambda tx: org.org_at_press_time(tx, "dev-1:9:9", default))
    finally:
        await s.db.close()


async def test_record_before_migration_falls_back_to_window_place(store: Store) -> None:
    """A record stored without hall/dept (before the organisation existed) is placed through
    its window's history."""
    await bindings.pair(store.db, "dev-1", "A01", "zhang", ACTOR, at_ms=ms(2026, 1, 5, 8))
    r = await store.rec("dev-1", "walkup", ms(2026, 1, 5, 9))
    await store.execute("UPDATE records SET hall_id = NULL, dept_code = NULL WHERE record_id = ?",
                        (r["record_id"],))
    p = await store.db.read(lambda tx: org.org_at_press_time(tx, r["record_id"], store.cfg.hall))
    assert (p.hall_id, p.dept_code, p.window_id) == ("hall-1", "11370300MB0000000H", "A01")


async def test_window_place_history_is_append_only(store: Store) -> None:
    from gateway.store.errors import IntegrityError
    with pytest.raises(IntegrityError):
        await store.execute("DELETE FROM window_places")
    with pytest.raises(IntegrityError):
        await store.execute("UPDATE window_places SET hall_id = 'x'")
