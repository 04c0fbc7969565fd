"""The console's pages: each a thin handler over the domain services the CLI and the API use.

Lists are keyset pages (`before=<time>~<id>`, newest first, no OFFSET) with a bounded count
("1000+"), so no page reads a whole table. A scoped account sees only the windows of its
halls and departments, the devices bound there and their records and invitations.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import Any

from aiohttp import web

from gateway import accounts, bindings, invitations, reports
from gateway.console import labels
from gateway.console.web import (
    Forbidden,
    Viewer,
    day_range,
    deps,
    fmt_time,
    is_htmx,
    parse_date,
    redirect,
    render,
    today,
    viewer,
)
from gateway.devices import DEVICE_ID
from gateway.errors import BadInput, Conflict, NotFound
from gateway.store.api import Tx
from gateway.store.rows import Binding, Window
from gateway.uplink import state as uplink_state
from protocol.grades import BAD, GRADES

UPLINK_COUNT_CAP = 100_000   # the uplink page's per-state counts say "100000+" beyond
ROW_KEY = re.compile(r"[A-Za-z0-9:_.-]{1,128}")   # record and invitation ids (cursors, re-queue)
COUNT_CAP = 1000     # a list counts its matches up to here, then says "1000+"


# ---- scope -----------------------------------------------------------------------------------

def hall_of(request: web.Request, w: Window | None) -> str:
    """The hall a window is in now, in the district's organisation (gateway/org.py: windows
    have their own hall; one stored without a hall is the default hall's, [hall] id). None:
    the default hall (where a window the console adds goes)."""
    default = deps(request).cfg.hall.id
    return (w.hall_id or default) if w is not None else default


async def visible_windows(request: web.Request) -> list[str] | None:
    """The window ids the viewer may see, or None for every window (and records without one)."""
    v = viewer(request)
    if v.scope.everything:
        return None
    wins = await bindings.list_windows(deps(request).store)
    return [w.window_id for w in wins if v.scope.allows(hall_of(request, w), w.dept_code)]


async def device_halls(request: web.Request) -> dict[str, str | None]:
    """Each device's hall in the district's organisation (None: the default hall)."""
    return await deps(request).store.read(lambda tx: tx.org.device_halls())


def unbound_visible(request: web.Request, v: Viewer, hall: str | None = None) -> bool:
    """Devices bound to no window belong to their hall (the device's hall in the district's
    organisation; None: the default hall), not to a department."""
    return not v.scope.depts and v.scope.allows(hall or hall_of(request, None), None)


def require_window(request: web.Request, wins: list[str] | None, window_id: str) -> None:
    if wins is not None and window_id not in wins:
        raise Forbidden("窗口 %s 不在您的管理范围内" % window_id)


async def device_rows(request: web.Request) -> list[dict[str, Any]]:
    """Devices with their active binding and health, as the viewer may see them."""
    d = deps(request)
    v = viewer(request)
    wins = await visible_windows(request)
    devs = await d.devices.list()
    active = {b.device_id: b for b in await bindings.list_bindings(d.store)}
    halls = await device_halls(request) if wins is not None else {}
    now = d.clock()
    silent_ms = d.cfg.devices.silent_after_s * 1000
    out = []
    for dev in devs:
        b = active.get(dev["device_id"])
        if wins is not None and (b.window_id not in wins if b
                                 else not unbound_visible(request, v, halls.get(dev["device_id"]))):
            continue
        dev["binding"] = b
        dev["silent"] = bool(dev["enabled"]) and (dev["last_seen"] is None
                                                  or now - dev["last_seen"] > silent_ms)
        out.append(dev)
    return out


# ---- paging ------------------------------------------------------------------------------------

def parse_cursor(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    ms, sep, key = text.partition("~")
    if not sep or not ms.isdigit() or len(ms) > 18 or not ROW_KEY.fullmatch(key):
        raise BadInput("翻页参数不正确", "bad_cursor")
    return int(ms), key


def query_with(request: web.Request, **changes: str | None) -> str:
    """This page's URL with some query parameters changed (None: removed)."""
    q = {k: v for k, v in request.query.items() if v}
    for k, v in changes.items():
        if v:
            q[k] = v
        else:
            q.pop(k, None)
    return request.path + ("?" + urllib.parse.urlencode(q) if q else "")


def page_param(request: web.Request) -> int:
    raw = request.query.get("page") or "1"
    return int(raw) if raw.isdigit() and 0 < int(raw) < 10**6 else 1


def count_text(n: int, cap: int = COUNT_CAP) -> str:
    return "%d+" % cap if n >= cap else str(n)


def choice(request: web.Request, key: str, allowed: dict[str, str] | tuple[str, ...],
           what: str) -> str | None:
    v = request.query.get(key) or None
    if v is not None and v not in allowed:
        raise BadInput("%s的取值不正确" % what, "bad_filter")
    return v


def text_param(request: web.Request, key: str, limit: int = 64) -> str | None:
    v = (request.query.get(key) or "").strip()
    if len(v) > limit:
        raise BadInput("筛选条件过长", "bad_filter")
    if any(ord(c) < 0x20 or c == "\x7f" for c in v):
        raise BadInput("筛选条件含有控制字符", "bad_filter")
    return v or None


def device_id_of(value: str) -> str:
    """A device id as the protocol has them; anything else names no device (and never
    reaches the store: PostgreSQL refuses a NUL in text outright)."""
    if not DEVICE_ID.fullmatch(value):
        raise NotFound("没有这台设备：%s" % value[:40], "unknown_device")
    return value


# ---- dashboard ---------------------------------------------------------------------------------

async def dashboard_ctx(request: web.Request) -> dict[str, Any]:
    d = deps(request)
    wins = await visible_windows(request)
    day = today(d.cfg, d.clock())
    rep = await reports.day_report(d.store, d.cfg, day.isoformat())
    if wins is None:
        rows, total = rep.rows, rep.total
    else:
        rows = [r for r in rep.rows if r.window_id in wins]
        total = reports.Row("*", "*")
        for r in rows:
            total.add(r)
        total.finish(rep.weights)
    devs = await device_rows(request)
    lo, hi = day_range(d.cfg, day, day)
    recent = await d.store.read(lambda tx: tx.records.page(lo, hi, wins, limit=8))
    return {
        "open_complaints": await open_complaints(request), "day": day.isoformat(), "total": total,
        "rows": rows,
        "grades": [(labels.GRADE[g], total.grades[g]) for g in GRADES],
        "devices_total": len(devs), "online": sum(1 for x in devs if x["online"]),
        "silent": [x for x in devs if x["silent"]], "unbound": sum(1 for x in devs if x["binding"] is None),
        "recent": recent, "bad_grades": BAD, "updated": fmt_time(d.cfg, d.clock()),
    }


DASHBOARD_COMPLAINTS = 8     # open 差评 shown on the dashboard, the nearest deadline first
_URGENCY = {"overdue": 0, "due_soon": 1, "unknown": 2, "open": 3}


async def open_complaints(request: web.Request) -> dict[str, Any]:
    """The viewer's open 差评, the most urgent first (overdue, due soon, then by the next
    deadline): the dashboard's to-do list. From the complaints service, like the 差评 page."""
    v = viewer(request)
    if not v.can("complaints.view"):
        return {"rows": [], "total": 0, "overdue": 0}
    from gateway.console.complaints import service
    rows, total = await service(request).search(
        None, True, limit=500, halls=list(v.scope.halls) or None, depts=list(v.scope.depts) or None)

    def urgency(c: dict[str, Any]) -> tuple[int, int]:
        live = [x for x in c["deadlines"].values() if x["status"] in _URGENCY and x["label"] != "申诉"]
        if not live:
            return (9, 0)
        first = min(live, key=lambda x: (_URGENCY[x["status"]], x["due_ms"] or 0))
        c["next_deadline"] = first
        return (_URGENCY[first["status"]], first["due_ms"] or 0)
    rows.sort(key=urgency)
    overdue = sum(1 for c in rows if c.get("next_deadline", {}).get("status") == "overdue")
    return {"rows": rows[:DASHBOARD_COMPLAINTS], "total": total, "overdue": overdue}


async def dashboard(request: web.Request) -> web.Response:
    viewer(request).require("dashboard")
    return render(request, "dashboard.html", await dashboard_ctx(request))


async def dashboard_live(request: web.Request) -> web.Response:
    viewer(request).require("dashboard")
    return render(request, "_dashboard_live.html", await dashboard_ctx(request))


# ---- devices -----------------------------------------------------------------------------------

DEVICE_FILTERS = {"online": "在线", "offline": "离线", "silent": "静默", "unbound": "未绑定"}


async def devices_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    state = choice(request, "state", DEVICE_FILTERS, "状态")
    rows = await device_rows(request)
    if state == "online":
        rows = [r for r in rows if r["online"]]
    elif state == "offline":
        rows = [r for r in rows if not r["online"]]
    elif state == "silent":
        rows = [r for r in rows if r["silent"]]
    elif state == "unbound":
        rows = [r for r in rows if r["binding"] is None]
    size = deps(request).settings.page_size
    pages = max(1, -(-len(rows) // size))
    page = page_param(request)
    page = min(page, pages)
    return render(request, "devices.html", {
        "rows": rows[(page - 1) * size:page * size], "count": len(rows), "state": state or "",
        "filters": DEVICE_FILTERS, "page": page, "pages": pages,
        "silent_after_s": deps(request).cfg.devices.silent_after_s,
        "prev_url": query_with(request, page=str(page - 1)) if page > 1 else None,
        "next_url": query_with(request, page=str(page + 1)) if page < pages else None,
    })


async def device_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    d = deps(request)
    device_id = device_id_of(request.match_info["device_id"])
    dev = await d.devices.get(device_id)
    history = await d.store.read(lambda tx: tx.bindings.of_device(device_id))
    active = next((b for b in history if b.active), None)
    wins = await visible_windows(request)
    if wins is not None and (active.window_id not in wins if active else not unbound_visible(
            request, v, (await device_halls(request)).get(device_id))):
        raise Forbidden("设备 %s 不在您的管理范围内" % device_id)
    silent_ms = d.cfg.devices.silent_after_s * 1000
    dev["silent"] = dev["last_seen"] is None or d.clock() - dev["last_seen"] > silent_ms
    lo, hi = day_range(d.cfg, today(d.cfg, d.clock()) - dt.timedelta(days=6), today(d.cfg, d.clock()))
    recent = await d.store.read(lambda tx: tx.records.page(lo, hi, device_id=device_id, limit=20))
    return render(request, "device.html", {
        "dev": dev, "history": history, "active": active, "recent": recent,
        "form": await pair_form_ctx(request, device=device_id),
    })


# ---- pairing (一码一账号) ---------------------------------------------------------------------

async def pair_form_ctx(request: web.Request, device: str = "", window: str = "",
                        staff: str = "") -> dict[str, Any]:
    d = deps(request)
    wins = await visible_windows(request)
    devices = [x["device_id"] for x in await device_rows(request)]
    windows = [w for w in await bindings.list_windows(d.store) if wins is None or w.window_id in wins]
    return {"devices": devices, "windows": windows, "staff": await bindings.list_staff(d.store),
            "device": device, "window": window, "staff_account": staff}


async def pairing_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    d = deps(request)
    wins = await visible_windows(request)
    active = [b for b in await bindings.list_bindings(d.store) if wins is None or b.window_id in wins]
    return render(request, "pairing.html", {"active": active, "form": await pair_form_ctx(request)})


async def pairing_history(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.view")
    d = deps(request)
    wins = await visible_windows(request)
    device = text_param(request, "device", 32)
    rows = [b for b in await bindings.list_bindings(d.store, history=True)
            if (wins is None or b.window_id in wins) and (device is None or b.device_id == device)]
    rows.sort(key=lambda b: (b.valid_from_ms, b.id), reverse=True)
    size = d.settings.page_size
    page = page_param(request)
    pages = max(1, -(-len(rows) // size))
    page = min(page, pages)
    return render(request, "pairing_history.html", {
        "rows": rows[(page - 1) * size:page * size], "count": len(rows), "device": device or "",
        "page": page, "pages": pages,
        "prev_url": query_with(request, page=str(page - 1)) if page > 1 else None,
        "next_url": query_with(request, page=str(page + 1)) if page < pages else None,
    })


def _clashes(tx: Tx, device: str, window: str, staff: str) -> list[Binding]:
    out: list[Binding] = []
    for b in (tx.bindings.active_for_device(device), tx.bindings.active_for_window(window),
              tx.bindings.active_for_staff(staff)):
        if b is not None and all(b.id != o.id for o in out):
            out.append(b)
    return out


async def pairing_post(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.manage")
    d = deps(request)
    form = await request.post()
    device = str(form.get("device", "")).strip()
    window = str(form.get("window", "")).strip()
    staff = str(form.get("staff_account", "")).strip()
    force = form.get("force") == "1"
    if not device or not window or not staff:
        raise BadInput("请选择设备、窗口和工作人员", "missing_field")
    device = device_id_of(device)
    window = bindings.check_text("window", window, 1, 16)
    staff = bindings.check_text("staff account", staff, 1, 64)
    wins = await visible_windows(request)
    require_window(request, wins, window)
    if wins is not None and device not in [x["device_id"] for x in await device_rows(request)]:
        raise Forbidden("设备 %s 不在您的管理范围内" % device)
    try:
        change = await bindings.pair(d.store, device, window, staff, v.actor, force=force)
    except Conflict as e:
        if e.code != "already_bound" or force:
            raise
        # 一码一账号: the move --force makes, shown first and done only when confirmed.
        moved = await d.store.read(lambda tx: _clashes(tx, device, window, staff))
        if wins is not None and any(b.window_id not in wins for b in moved):
            raise Forbidden("该绑定涉及您管理范围以外的窗口，请联系上级管理员") from None
        return render(request, "pair_confirm.html", {"device": device, "window": window,
                                                     "staff_account": staff, "moved": moved}, status=409)
    if change.unchanged:
        return redirect(request, "/pairing", ("ok", "设备 %s 已绑定在窗口 %s（%s），无需变更"
                                              % (device, window, staff)))
    unreachable = await bindings.on_binding_change(d.store, d.send, change)
    assert change.created is not None
    text = "已绑定：设备 %s → 窗口 %s，工作人员 %s（%s）" % (
        device, window, change.created.display_name, staff)
    if change.closed:
        text += "；已解除原绑定 %d 条" % len(change.closed)
    if unreachable:
        text += "；设备 %s 当前不在线，将在重新连接时收到绑定" % "、".join(unreachable)
    return redirect(request, "/pairing", ("ok", text))


async def unpair_confirm(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.manage")
    device = device_id_of(text_param(request, "device", 32) or "")
    b = await bindings.active_binding(deps(request).store, device)
    if b is None:
        raise BadInput("设备 %s 当前没有绑定" % device, "not_bound")
    require_window(request, await visible_windows(request), b.window_id)
    return render(request, "unpair_confirm.html", {"b": b})


async def unpair_post(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("devices.manage")
    d = deps(request)
    form = await request.post()
    device = device_id_of(str(form.get("device", "")).strip())
    b = await bindings.active_binding(d.store, device)
    if b is not None:
        require_window(request, await visible_windows(request), b.window_id)
    change = await bindings.unpair(d.store, device, v.actor)
    unreachable = await bindings.on_binding_change(d.store, d.send, change)
    text = "已解除设备 %s 的绑定" % device
    if change.cancelled_invitations:
        text += "，撤销等待中的邀请 %d 条" % len(change.cancelled_invitations)
    if unreachable:
        text += "；设备当前不在线，将在重新连接时收到解绑"
    return redirect(request, "/pairing", ("ok", text))


# ---- invitations and ratings ---------------------------------------------------------------------

def _dates(request: web.Request) -> tuple[dt.date, dt.date]:
    d = deps(request)
    first = parse_date(request.query.get("from"), "开始日期")
    last = parse_date(request.query.get("to"), "结束日期")
    now = today(d.cfg, d.clock())
    if first is None and last is None and "from" not in request.query:
        first = last = now
    first = first or dt.date(2000, 1, 1)
    last = last or now
    if last < first:
        raise BadInput("结束日期早于开始日期", "bad_date")
    return first, last


async def invitations_page(request: web.Request) -> web.Response:
    viewer(request).require("invitations.view")
    d = deps(request)
    status = choice(request, "status", labels.INV_STATUS, "状态")
    first, last = _dates(request)
    lo, hi = day_range(d.cfg, first, last)
    before = parse_cursor(request.query.get("before"))
    wins = await visible_windows(request)
    size = d.settings.page_size
    # As the API does: a list read never shows an overdue invitation as still pending.
    await invitations.expire_due(d.store, d.clock())

    def read(tx: Tx) -> tuple[list[Any], int]:
        return (tx.invitations.page(status, lo, hi, wins, before, size + 1),
                tx.invitations.count_upto(COUNT_CAP, status, lo, hi, wins))
    rows, n = await d.store.read(read)
    more = len(rows) > size
    rows = rows[:size]
    nxt = "%d~%s" % (rows[-1].created_ms, rows[-1].id) if more else None
    return render(request, "invitations.html", {
        "rows": rows, "count": count_text(n), "status": status or "", "first": first.isoformat(),
        "last": last.isoformat(), "older_url": query_with(request, before=nxt) if nxt else None,
        "newest_url": query_with(request, before=None) if before else None,
    })


async def ratings_page(request: web.Request) -> web.Response:
    viewer(request).require("ratings.view")
    d = deps(request)
    kind = choice(request, "kind", labels.KIND, "类型")
    grade = choice(request, "grade", labels.GRADE, "评价等级")
    flag = choice(request, "flag", labels.FLAG, "标记")
    window = text_param(request, "window", 16)
    staff = text_param(request, "staff", 64)
    first, last = _dates(request)
    lo, hi = day_range(d.cfg, first, last)
    before = parse_cursor(request.query.get("before"))
    wins = await visible_windows(request)
    if window is not None:
        if wins is not None and window not in wins:
            wins = []
        else:
            wins = [window]
    size = d.settings.page_size

    def read(tx: Tx) -> tuple[list[dict[str, Any]], int]:
        return (tx.records.page(lo, hi, wins, staff, kind, grade, flag, before, size + 1),
                tx.records.count_upto(COUNT_CAP, lo, hi, wins, staff, kind, grade, flag))
    rows, n = await d.store.read(read)
    more = len(rows) > size
    rows = rows[:size]
    nxt = "%d~%s" % (rows[-1]["pressed_at_ms"], rows[-1]["record_id"]) if more else None
    ctx = {
        "rows": rows, "count": count_text(n), "kind": kind or "", "grade": grade or "", "flag": flag or "",
        "window": window or "", "staff": staff or "", "first": first.isoformat(), "last": last.isoformat(),
        "older_url": query_with(request, before=nxt) if nxt else None,
        "newest_url": query_with(request, before=None) if before else None, "bad_grades": BAD,
    }
    if is_htmx(request) and request.headers.get("HX-Target") == "ratings-table":
        return render(request, "_ratings_table.html", ctx)
    return render(request, "ratings.html", ctx)


# ---- uplink --------------------------------------------------------------------------------------

async def uplink_page(request: web.Request) -> web.Response:
    viewer(request).require("uplink.view")
    d = deps(request)
    counts = await uplink_state.status_counts_upto(d.store, UPLINK_COUNT_CAP)
    runs = await uplink_state.recent_runs(d.store, 10)
    rejected, n_rejected = await uplink_state.list_rejections_counted(d.store, d.settings.page_size)
    codes = sorted({r["reject_code"] for r in rejected if r["reject_code"]})
    return render(request, "uplink.html", {
        "counts": {k: count_text(v, UPLINK_COUNT_CAP) for k, v in counts.items()},
        "runs": runs, "rejected": rejected, "n_rejected": n_rejected, "codes": codes,
        "settings": d.uplink, "default_date": today(d.cfg, d.clock()).isoformat(), "result": None,
    })


async def uplink_requeue(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("uplink.manage")
    d = deps(request)
    form = await request.post()
    mode = form.get("mode")
    ids: list[str] | None = None
    code: str | None = None
    if mode == "ids":
        ids = [str(x) for x in form.getall("record_id", []) if str(x)][:1000]
        if not ids:
            raise BadInput("请至少勾选一条记录", "missing_field")
        if not all(ROW_KEY.fullmatch(x) for x in ids):
            raise BadInput("记录编号不正确", "bad_record_id")
    elif mode == "code":
        code = bindings.check_text("code", str(form.get("code", "")), 1, 64)
    elif mode != "all":
        raise BadInput("未知的操作", "bad_input")
    n = await uplink_state.requeue(d.store, ids, code, actor=v.actor, at_ms=d.clock())
    return redirect(request, "/uplink", ("ok", "已重新排队 %d 条记录，将在下次上报时发送" % n))


async def uplink_reconcile(request: web.Request) -> web.Response:
    viewer(request).require("uplink.view")
    d = deps(request)
    if d.uplink is None:
        raise BadInput("本网关未配置数据上报（[uplink]），无法对账", "uplink_off")
    day = parse_date(request.query.get("date"), "对账日期") or today(d.cfg, d.clock())
    from gateway.uplink.reconcile import reconcile, reconcile_with_platform
    if request.query.get("platform") == "1":
        try:
            result = await reconcile_with_platform(d.store, d.uplink, day.isoformat())
        except Exception as e:  # noqa: BLE001 - the platform may be away: say so, do not guess
            raise BadInput("查询省平台失败（%s），可取消“同时查询省平台”在本地对账" % type(e).__name__,
                           "platform_query") from None
    else:
        result = await reconcile(d.store, d.uplink, day.isoformat())
    return render(request, "reconcile.html", {"r": result, "date": day.isoformat()})


# ---- audit log and account ---------------------------------------------------------------------

async def audit_page(request: web.Request) -> web.Response:
    viewer(request).require("audit.view")
    d = deps(request)
    actor = text_param(request, "actor", 128)
    action = text_param(request, "action", 64)
    raw = request.query.get("before")
    if raw and not raw.isdigit():
        raise BadInput("翻页参数不正确", "bad_cursor")
    before = int(raw) if raw else None
    size = d.settings.page_size
    rows = await d.store.read(lambda tx: tx.audit.page(before, size + 1, actor, action))
    more = len(rows) > size
    rows = rows[:size]
    return render(request, "audit.html", {
        "rows": rows, "actor": actor or "", "action": action or "", "actions": labels.ACTIONS,
        "older_url": query_with(request, before=str(rows[-1]["id"])) if more else None,
        "newest_url": query_with(request, before=None) if before else None,
    })


async def account_page(request: web.Request) -> web.Response:
    v = viewer(request)
    caps = accounts.role_caps(v.role)
    return render(request, "account.html", {"caps": caps})


async def account_password(request: web.Request) -> web.Response:
    v = viewer(request)
    form = await request.post()
    old = str(form.get("old", ""))
    new = str(form.get("new", ""))
    if new != str(form.get("new2", "")):
        raise BadInput("两次输入的新密码不一致", "bad_password")
    await accounts.change_own_password(deps(request).store, v.name, old, new, v.token)
    return redirect(request, "/", ("ok", "密码已修改；其他登录会话已退出"))


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/", dashboard),
    ("GET", "/dashboard/live", dashboard_live),
    ("GET", "/devices", devices_page),
    ("GET", "/devices/{device_id}", device_page),
    ("GET", "/pairing", pairing_page),
    ("POST", "/pairing", pairing_post),
    ("GET", "/pairing/history", pairing_history),
    ("GET", "/pairing/unpair", unpair_confirm),
    ("POST", "/pairing/unpair", unpair_post),
    ("GET", "/invitations", invitations_page),
    ("GET", "/ratings", ratings_page),
    ("GET", "/uplink", uplink_page),
    ("POST", "/uplink/requeue", uplink_requeue),
    ("GET", "/uplink/reconcile", uplink_reconcile),
    ("GET", "/audit", audit_page),
    ("GET", "/account", account_page),
    ("POST", "/account/password", account_password),
]
