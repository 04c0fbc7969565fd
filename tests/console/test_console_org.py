"""The console's organisation pages over HTTP, on both backends: halls, departments, windows
and clerks added, edited (renamed, moved) and retired through gateway/org.py (audited as
console:<account>), retired ones shown as retired, and the refusals (roles, scopes, CSRF,
bad input, something still in use) leaving the organisation as it was."""

from __future__ import annotations

import re

from console_support import DEPT_A, App

from gateway import uscc
from gateway.store.api import Tx

DEPT_C = uscc.complete("11370303MB0000003")


async def _audit(app: App, actor: str) -> list[str]:
    rows = await app.store.read(lambda tx: tx.audit.page(None, 200, actor, None))
    return [r["action"] for r in rows if not r["action"].startswith("console.")]


async def test_add_edit_and_retire_each(app: App) -> None:
    c = await app.client("admin")
    # A hall, a department in it, a window there and a clerk.
    town = {"hall_id": "town-1", "name": "某某镇便民服务中心", "kind": "town"}
    assert (await c.post("/org/halls", town))[0] == 303
    dept = {"dept_code": DEPT_C, "name": "镇社保所", "hall_id": "town-1"}
    assert (await c.post("/org/departments", dept))[0] == 303
    status, _, _ = await c.post("/org/windows", {"window_id": "T01", "name": "社保窗口", "dept_code": DEPT_C,
                                                 "hall_id": "town-1"})
    assert status == 303
    clerk = {"account": "zhao", "display_name": "赵六", "dept_code": DEPT_C}
    assert (await c.post("/org/staff", clerk))[0] == 303
    _, text, _ = await c.get("/org")
    for marker in ('data-hall="town-1"', 'data-dept="%s"' % DEPT_C, 'data-window="T01"', 'data-staff="zhao"'):
        assert marker in text, marker
    # Edit: rename and move the window, rename the clerk, rename the department and the hall.
    assert (await c.post("/org/windows/T01/rename", {"name": "社保医保窗口"}))[0] == 303
    assert (await c.post("/org/windows/T01/move", {"hall_id": "", "dept_code": DEPT_A}))[0] == 303
    w = await app.store.read(lambda tx: tx.org.get_window("T01"))
    assert w is not None and w.name == "社保医保窗口" and w.hall_id is None and w.dept_code == DEPT_A
    status, text, _ = await c.get("/org/windows/T01")
    assert status == 200 and text.count("<tr><td>") >= 2          # both places in its history
    assert (await c.post("/org/staff/zhao/update", {"display_name": "赵小六", "dept_code": DEPT_A}))[0] == 303
    s = await app.store.read(lambda tx: tx.org.get_staff("zhao"))
    assert s is not None and s.display_name == "赵小六" and s.dept_code == DEPT_A
    dept = {"name": "镇社会保障所", "hall_id": "town-1"}
    assert (await c.post("/org/departments/%s/update" % DEPT_C, dept))[0] == 303
    form = [("name", "某某镇便民服务中心（新址）"), ("kind", "town"), ("parent_id", ""),
            ("opening_hours", "08:30-12:00,13:30-17:30"), ("timezone", "Asia/Shanghai"), ("area_code", "")]
    form += [("opening_days", d) for d in "12345"]
    assert (await c.post("/org/halls/town-1/update", form))[0] == 303
    h = await app.store.read(lambda tx: tx.org.get_hall("town-1"))
    assert h is not None and h.name == "某某镇便民服务中心（新址）" and h.opening_days == "1,2,3,4,5"
    assert h.opening_hours == "08:30-12:00,13:30-17:30"
    # Retire: each needs its confirmation; then shown as retired, history kept.
    status, text, _ = await c.post("/org/windows/T01/retire", {})
    assert status == 400 and "确认撤销" in text
    assert (await c.post("/org/windows/T01/retire", {"confirm": "1"}))[0] == 303
    assert (await c.post("/org/staff/zhao/retire", {"confirm": "1"}))[0] == 303
    assert (await c.post("/org/departments/%s/retire" % DEPT_C, {"confirm": "1"}))[0] == 303
    assert (await c.post("/org/halls/town-1/retire", {"confirm": "1"}))[0] == 303
    _, text, _ = await c.get("/org")
    for marker in ('data-hall="town-1" class="retired"', 'data-dept="%s" class="retired"' % DEPT_C,
                   'data-window="T01" class="retired"', 'data-staff="zhao" class="retired"'):
        assert marker in text, marker
    assert "已撤销" in text and "已停用" in text
    assert await _audit(app, "console:admin") == list(reversed([
        "hall.add", "department.add", "window.add", "staff.add", "window.rename", "window.move",
        "staff.update", "department.update", "hall.update", "window.retire", "staff.retire",
        "department.retire", "hall.retire"]))


async def test_refusals_leave_the_organisation_as_it_was(app: App) -> None:
    def snapshot(tx: Tx) -> tuple[object, ...]:
        return (tx.org.list_windows(), tx.org.list_staff(), tx.org.list_departments(), tx.org.list_halls())
    before = await app.store.read(snapshot)
    c = await app.client("admin")
    # In use: a bound window or clerk, the default hall.
    status, text, _ = await c.post("/org/windows/A01/retire", {"confirm": "1"})
    assert status == 409 and "解除绑定" in text
    status, text, _ = await c.post("/org/staff/zhang/retire", {"confirm": "1"})
    assert status == 409
    status, text, _ = await c.post("/org/halls/hall-1/retire", {"confirm": "1"})
    assert status == 409 and "默认大厅" in text
    # Bad input: a clear Chinese error.
    status, text, _ = await c.post("/org/departments", {"dept_code": "12345", "name": "坏代码"})
    assert status == 400 and "统一社会信用代码不正确" in text
    status, text, _ = await c.post("/org/halls", {"hall_id": "bad id!", "name": "x", "kind": "town"})
    assert status == 400
    status, text, _ = await c.post("/org/halls", {"hall_id": "h9", "name": "x", "kind": "castle"})
    assert status == 400 and "类型" in text
    status, text, _ = await c.post("/org/windows/A01/rename", {"name": "x" * 200})
    assert status == 400
    status, text, _ = await c.post("/org/windows/A01/move", {"hall_id": "nowhere", "dept_code": DEPT_A})
    assert status == 404 and "没有这个大厅" in text
    assert (await c.get("/org/windows/NOPE"))[0] == 404
    # CSRF.
    status, text, _ = await c.post("/org/windows/A01/rename", {"name": "伪造"}, csrf="forged")
    assert status == 403 and "防伪校验失败" in text
    # Roles and scopes.
    viewer = await app.client("viewer")
    assert (await viewer.get("/org/windows/A01"))[0] == 200
    assert (await viewer.post("/org/windows/A01/rename", {"name": "只读"}))[0] == 403
    liaison = await app.client("liaison")
    assert (await liaison.get("/org"))[0] == 403
    dept_b = await app.client("admin_b")
    status, text, _ = await dept_b.post("/org/windows/A01/rename", {"name": "别人的"})
    assert status == 403 and "不在您的管理范围内" in text
    status, text, _ = await dept_b.post("/org/windows/B01/move", {"hall_id": "", "dept_code": DEPT_A})
    assert status == 403
    assert (await dept_b.post("/org/halls", {"hall_id": "h8", "name": "x", "kind": "town"}))[0] == 403
    assert (await dept_b.post("/org/departments", {"dept_code": DEPT_C, "name": "x"}))[0] == 403
    assert (await dept_b.post("/org/staff/zhang/update", {"display_name": "x", "dept_code": ""}))[0] == 403
    _, text, _ = await dept_b.get("/org")
    assert re.findall(r'data-window="([^"]+)"', text) == ["B01"]
    assert await app.store.read(snapshot) == before
    assert await _audit(app, "console:admin_b") == []
    assert not [a for a in await _audit(app, "console:admin") if a.startswith(("window.", "hall.", "staff."))]
