"""The console's organisation pages (窗口与人员): halls, departments, windows and clerks, each
added, edited (renamed, moved) and retired through gateway/org.py, the one service the CLI
(`hcp-gateway halls|departments|windows|staff`) and the HTTP API (/api/v1/org) call. Nothing
is deleted: a retired one keeps its history and is shown as retired (已撤销).

Who may change what (all need `devices.manage`, i.e. the hall admin): halls only an admin with
no scope; departments an admin not limited to departments, within its halls; windows and
clerks within the admin's halls and departments (a window's current place and the place it
moves to, a clerk's department).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import bindings
from gateway import org as org_service
from gateway.api.qr import CONTENT_TYPES as QR_CONTENT_TYPES
from gateway.api.qr import SERVICE_KEY as QR_SERVICE_KEY
from gateway.console.pages import hall_of, visible_windows
from gateway.console.web import Forbidden, Viewer, deps, redirect, render, viewer
from gateway.errors import BadInput, NotFound
from gateway.store.api import Tx
from gateway.store.rows import Department, Staff, Window

KIND_ZH = org_service.HALL_KIND_ZH
WEEKDAYS_ZH = {1: "一", 2: "二", 3: "三", 4: "四", 5: "五", 6: "六", 7: "日"}


def _confirmed(form: Any, verb: str) -> None:
    """Retiring is done only when the form's confirmation box was ticked."""
    if form.get("confirm") != "1":
        raise BadInput("请勾选“确认%s”" % verb, "missing_field")


def _field(form: Any, key: str, limit: int = 128) -> str:
    v = form.get(key, "")
    if not isinstance(v, str) or len(v) > limit:
        raise BadInput("输入过长", "bad_input")
    return v.strip()


async def _halls(request: web.Request) -> list[org_service.Hall]:
    d = deps(request)
    v = viewer(request)
    return [h for h in await org_service.list_halls(d.store, d.cfg.hall)
            if not v.scope.halls or h.hall_id in v.scope.halls]


async def _depts(request: web.Request) -> list[Department]:
    d = deps(request)
    v = viewer(request)
    default = d.cfg.hall.id
    return [x for x in await org_service.list_departments(d.store)
            if v.scope.allows(x.hall_id or default, x.dept_code)]


def _staff_visible(v: Viewer, s: Staff) -> bool:
    return not v.scope.depts or s.dept_code in v.scope.depts


async def org_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    d = deps(request)
    wins = await visible_windows(request)
    windows = [w for w in await bindings.list_windows(d.store) if wins is None or w.window_id in wins]
    windows.sort(key=lambda w: (w.retired, w.window_id))
    active = {b.window_id: b for b in await bindings.list_bindings(d.store)}
    staff = sorted((s for s in await bindings.list_staff(d.store) if _staff_visible(v, s)),
                   key=lambda s: (s.retired, s.account))
    staff_bound = {b.staff_account: b for b in active.values()}
    halls = await _halls(request)
    depts = sorted(await _depts(request), key=lambda x: (x.retired, x.dept_code))
    return render(request, "org.html", {
        "windows": windows, "active": active, "staff": staff, "staff_bound": staff_bound,
        "depts": list(v.scope.depts), "halls": halls, "departments": depts,
        "hall_names": {h.hall_id: h.name for h in halls}, "dept_names": {x.dept_code: x.name for x in depts},
        "default_hall": d.cfg.hall.id, "kind_zh": KIND_ZH,
        "can_halls": v.can("devices.manage") and v.scope.everything,
        "can_depts": v.can("devices.manage") and not v.scope.depts,
        "qr_on": request.app.get(QR_SERVICE_KEY) is not None,
    })


async def window_plate(request: web.Request) -> web.StreamResponse:
    """The printable QR plate of a window's current clerk (docs/qr.md), issued on first download
    (audited under the account); the same code on every later download."""
    v = viewer(request)
    v.require("devices.manage")
    svc = request.app.get(QR_SERVICE_KEY)
    if svc is None:
        raise NotFound("未启用评价二维码（配置中没有 [qr]）", "qr_off")
    window = request.match_info["window_id"]
    wins = await visible_windows(request)
    if wins is not None and window not in wins:
        raise Forbidden("窗口 %s 不在您的管理范围内" % window)
    fmt = request.query.get("format", "pdf")
    plate, data = await svc.render_plate(window, fmt, request.query.get("size", "A4"), v.actor)
    name = "plate-%s.%s" % (plate.id, fmt)
    return web.Response(body=data, content_type=QR_CONTENT_TYPES[fmt],
                        headers={"Content-Disposition": 'attachment; filename="%s"' % name})


def _hall_choice(v: Viewer, request: web.Request, raw: str) -> str | None:
    """A hall chosen in a form ("" = the default hall), within the viewer's halls."""
    default = deps(request).cfg.hall.id
    hall = raw or None
    if v.scope.halls and (hall or default) not in v.scope.halls:
        raise Forbidden("大厅 %s 不在您的管理范围内" % (hall or default))
    return hall


# ---- windows ---------------------------------------------------------------------------------

async def add_window(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.manage")
    d = deps(request)
    form = await request.post()
    window_id, dept, name = _field(form, "window_id"), _field(form, "dept_code"), _field(form, "name")
    hall = _field(form, "hall_id") or (v.scope.halls[0] if v.scope.halls else "")
    hall_id = _hall_choice(v, request, hall)
    if not v.scope.allows(hall_id or d.cfg.hall.id, dept):
        raise Forbidden("部门 %s 不在您的管理范围内" % (dept or "（空）"))
    w = await org_service.add_window(d.store, d.cfg.hall, window_id, dept, name, hall_id, v.actor)
    return redirect(request, "/org", ("ok", "已新增窗口 %s" % w.window_id))


async def _window(request: web.Request, v: Viewer) -> Window:
    d = deps(request)
    window_id = request.match_info["window_id"]
    w = await d.store.read(lambda tx: tx.org.get_window(window_id) if len(window_id) <= 16 else None)
    if w is None:
        raise web.HTTPNotFound()
    if not v.scope.allows(hall_of(request, w), w.dept_code):
        raise Forbidden("窗口 %s 不在您的管理范围内" % w.window_id)
    return w


async def window_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    d = deps(request)
    w = await _window(request, v)
    places = await org_service.window_history(d.store, w.window_id)
    b = await d.store.read(lambda tx: tx.bindings.active_for_window(w.window_id))
    return render(request, "org_window.html", {
        "w": w, "places": places, "binding": b, "halls": await _halls(request),
        "departments": [x for x in await _depts(request) if not x.retired], "hall_id": hall_of(request, w),
        "default_hall": d.cfg.hall.id,
    })


async def window_action(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.manage")
    d = deps(request)
    w = await _window(request, v)
    action = request.match_info["action"]
    form = await request.post()
    if action == "rename":
        out = await org_service.rename_window(d.store, w.window_id, _field(form, "name"), v.actor)
        text = "窗口 %s 已改名为“%s”" % (out.window_id, out.name)
    elif action == "move":
        hall = _hall_choice(v, request, _field(form, "hall_id"))
        dept = _field(form, "dept_code")
        if not v.scope.allows(hall or d.cfg.hall.id, dept):
            raise Forbidden("部门 %s 不在您的管理范围内" % (dept or "（空）"))
        out = await org_service.move_window(d.store, d.cfg.hall, w.window_id, v.actor, hall_id=hall,
                                            dept_code=dept)
        text = "窗口 %s 已调整：之后的评价计入新的大厅和部门，之前的评价仍计入原处" % out.window_id
    elif action == "retire":
        _confirmed(form, "撤销")
        await org_service.retire_window(d.store, w.window_id, v.actor)
        return redirect(request, "/org", ("ok", "窗口 %s 已撤销（历史记录保留）" % w.window_id))
    else:
        raise web.HTTPNotFound()
    return redirect(request, "/org/windows/%s" % out.window_id, ("ok", text))


# ---- clerks ----------------------------------------------------------------------------------

async def add_staff(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.manage")
    d = deps(request)
    form = await request.post()
    dept = _field(form, "dept_code") or (v.scope.depts[0] if v.scope.depts else "")
    if v.scope.depts and dept not in v.scope.depts:
        raise Forbidden("部门 %s 不在您的管理范围内" % dept)
    s = await org_service.add_staff(d.store, _field(form, "account"), _field(form, "display_name"), dept,
                                    v.actor)
    return redirect(request, "/org", ("ok", "已新增工作人员 %s（%s）" % (s.display_name, s.account)))


async def _staff(request: web.Request, v: Viewer) -> Staff:
    account = request.match_info["account"]
    s = await deps(request).store.read(lambda tx: tx.org.get_staff(account) if len(account) <= 64 else None)
    if s is None:
        raise web.HTTPNotFound()
    if not _staff_visible(v, s):
        raise Forbidden("工作人员 %s 不在您的管理范围内" % s.account)
    return s


async def staff_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    d = deps(request)
    s = await _staff(request, v)
    b = await d.store.read(lambda tx: tx.bindings.active_for_staff(s.account))
    return render(request, "org_staff.html", {
        "s": s, "binding": b, "departments": [x for x in await _depts(request) if not x.retired]})


async def staff_action(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.manage")
    d = deps(request)
    s = await _staff(request, v)
    action = request.match_info["action"]
    form = await request.post()
    if action == "update":
        dept = _field(form, "dept_code")
        if v.scope.depts and dept not in v.scope.depts:
            raise Forbidden("部门 %s 不在您的管理范围内" % (dept or "（空）"))
        name = _field(form, "display_name")
        out = await org_service.update_staff(
            d.store, s.account, v.actor, display_name=name if name != s.display_name else None,
            dept_code=dept if dept != s.dept_code else None)
        text = "工作人员 %s 已修改" % out.account
    elif action == "retire":
        _confirmed(form, "停用")
        await org_service.retire_staff(d.store, s.account, v.actor)
        return redirect(request, "/org", ("ok", "工作人员 %s 已停用（历史记录保留）" % s.account))
    else:
        raise web.HTTPNotFound()
    return redirect(request, "/org/staff/%s" % s.account, ("ok", text))


# ---- departments -----------------------------------------------------------------------------

def _require_depts(v: Viewer) -> None:
    v.require("devices.manage")
    if v.scope.depts:
        raise Forbidden("按部门授权的账号不能管理部门，请联系大厅管理员")


async def add_department(request: web.Request) -> web.Response:
    v = viewer(request)
    _require_depts(v)
    d = deps(request)
    form = await request.post()
    hall = _hall_choice(v, request, _field(form, "hall_id") or (v.scope.halls[0] if v.scope.halls else ""))
    x = await org_service.add_department(d.store, d.cfg.hall, _field(form, "dept_code"), _field(form, "name"),
                                         hall, v.actor)
    return redirect(request, "/org", ("ok", "已新增部门 %s（%s）" % (x.name, x.dept_code)))


async def _department(request: web.Request, v: Viewer) -> Department:
    d = deps(request)
    code = request.match_info["dept_code"]

    def read(tx: Tx) -> Department | None:
        return tx.org.get_department(code.upper()) if len(code) <= 32 else None
    x = await d.store.read(read)
    if x is None:
        raise web.HTTPNotFound()
    if not v.scope.allows(x.hall_id or d.cfg.hall.id, x.dept_code):
        raise Forbidden("部门 %s 不在您的管理范围内" % x.dept_code)
    return x


async def department_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    x = await _department(request, v)
    windows = await deps(request).store.read(lambda tx: tx.org.windows_of_department(x.dept_code))
    return render(request, "org_department.html", {"x": x, "halls": await _halls(request), "windows": windows,
                                                   "default_hall": deps(request).cfg.hall.id})


async def department_action(request: web.Request) -> web.Response:
    v = viewer(request)
    _require_depts(v)
    d = deps(request)
    x = await _department(request, v)
    action = request.match_info["action"]
    form = await request.post()
    if action == "update":
        name = _field(form, "name")
        hall_raw = _field(form, "hall_id")
        hall = _hall_choice(v, request, hall_raw)
        out = await org_service.update_department(
            d.store, d.cfg.hall, x.dept_code, v.actor, name=name if name != x.name else None,
            hall_id=(hall or d.cfg.hall.id) if (hall or None) != x.hall_id else None)
        text = "部门 %s 已修改" % out.name
    elif action == "retire":
        _confirmed(form, "撤销")
        await org_service.retire_department(d.store, x.dept_code, v.actor)
        return redirect(request, "/org", ("ok", "部门 %s 已撤销（历史记录保留）" % x.name))
    else:
        raise web.HTTPNotFound()
    return redirect(request, "/org/departments/%s" % x.dept_code, ("ok", text))


# ---- halls -------------------------------------------------------------------------------------

def _require_halls(v: Viewer) -> None:
    v.require("devices.manage")
    if not v.scope.everything:
        raise Forbidden("只有不限范围的大厅管理员可以管理大厅")


def _spec(form: Any, adding: bool) -> org_service.HallSpec:
    days_raw = [str(x) for x in form.getall("opening_days", [])]
    if not all(x.isdigit() and len(x) == 1 for x in days_raw):
        raise BadInput("办公日不正确", "bad_opening_days")
    hours = [h.strip() for h in _field(form, "opening_hours", 200).replace("，", ",").split(",") if h.strip()]
    parent = _field(form, "parent_id")
    return org_service.HallSpec(
        name=_field(form, "name") or (None if not adding else ""), kind=_field(form, "kind") or None,
        parent_id=parent or None, area_code=_field(form, "area_code") or None,
        timezone=_field(form, "timezone") or None, opening_hours=tuple(hours) or None,
        opening_days=tuple(int(x) for x in days_raw) or None, no_parent=not adding and not parent)


async def add_hall(request: web.Request) -> web.Response:
    v = viewer(request)
    _require_halls(v)
    d = deps(request)
    form = await request.post()
    h = await org_service.add_hall(d.store, d.cfg.hall, _field(form, "hall_id"), _spec(form, True), v.actor)
    return redirect(request, "/org", ("ok", "已新增大厅 %s（%s）" % (h.name, h.hall_id)))


async def _hall(request: web.Request, v: Viewer) -> org_service.Hall:
    d = deps(request)
    hall_id = request.match_info["hall_id"]
    h = await d.store.read(
        lambda tx: org_service.find_hall(tx, d.cfg.hall, hall_id) if len(hall_id) <= 32 else None)
    if h is None:
        raise web.HTTPNotFound()
    if v.scope.halls and h.hall_id not in v.scope.halls:
        raise Forbidden("大厅 %s 不在您的管理范围内" % h.hall_id)
    return h


async def hall_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    h = await _hall(request, v)
    others = [x for x in await _halls(request) if x.hall_id != h.hall_id and not x.retired]
    return render(request, "org_hall.html", {
        "h": h, "others": others, "kind_zh": KIND_ZH, "weekdays": WEEKDAYS_ZH,
        "default_hall": deps(request).cfg.hall.id})


async def hall_action(request: web.Request) -> web.Response:
    v = viewer(request)
    _require_halls(v)
    d = deps(request)
    h = await _hall(request, v)
    action = request.match_info["action"]
    form = await request.post()
    if action == "update":
        spec = _spec(form, False)
        # Only what differs is a change (the form shows every current value).
        spec = org_service.HallSpec(
            name=spec.name if spec.name != h.name else None, kind=spec.kind if spec.kind != h.kind else None,
            parent_id=spec.parent_id if spec.parent_id != h.parent_id else None,
            area_code=spec.area_code if (spec.area_code or "") != h.area_code else None,
            timezone=spec.timezone if spec.timezone != h.timezone else None,
            opening_hours=spec.opening_hours if spec.opening_hours is not None
            and list(spec.opening_hours) != h.hours_text else None,
            opening_days=spec.opening_days if spec.opening_days is not None
            and tuple(sorted(spec.opening_days)) != tuple(h.opening_days) else None,
            no_parent=spec.no_parent and h.parent_id is not None)
        out = await org_service.update_hall(d.store, d.cfg.hall, h.hall_id, spec, v.actor)
        text = "大厅 %s 已修改" % out.name
    elif action == "retire":
        _confirmed(form, "撤销")
        await org_service.retire_hall(d.store, d.cfg.hall, h.hall_id, v.actor)
        return redirect(request, "/org", ("ok", "大厅 %s 已撤销（历史记录保留）" % h.name))
    else:
        raise web.HTTPNotFound()
    return redirect(request, "/org/halls/%s" % h.hall_id, ("ok", text))


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/org", org_page),
    ("POST", "/org/windows", add_window),
    ("GET", "/org/windows/{window_id}", window_page),
    ("GET", "/org/windows/{window_id}/plate", window_plate),
    ("POST", "/org/windows/{window_id}/{action:rename|move|retire}", window_action),
    ("POST", "/org/staff", add_staff),
    ("GET", "/org/staff/{account}", staff_page),
    ("POST", "/org/staff/{account}/{action:update|retire}", staff_action),
    ("POST", "/org/departments", add_department),
    ("GET", "/org/departments/{dept_code}", department_page),
    ("POST", "/org/departments/{dept_code}/{action:update|retire}", department_action),
    ("POST", "/org/halls", add_hall),
    ("GET", "/org/halls/{hall_id}", hall_page),
    ("POST", "/org/halls/{hall_id}/{action:update|retire}", hall_action),
]
