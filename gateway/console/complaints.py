"""The console's 差评 work orders (issue 16's complaints, issue 18's pages): the list with its
filters and the detail page with every action. Each handler is a thin layer over the one
`ComplaintService` the CLI and the HTTP API call (the very instance the API was handed:
`gateway.api.complaints.SERVICE_KEY`), with the actor `console:<account>`.

Who may do what (gateway/accounts.py: CAPABILITIES): every role sees the work orders of its
scope (a liaison scoped to departments only those departments', a hall-scoped account only
its halls'); admin and liaison act (contact, verify, reasons, rectify, callback, close, the
clerk's appeal, the follow-up invitation, a manual correction done); the supervisor decides
the review and excludes a rating; read-only changes nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import invitations
from gateway.api.app import CALENDAR_KEY, CLOCK_KEY, RULES_KEY
from gateway.api.complaints import SERVICE_KEY
from gateway.complaints import (
    DEADLINE_ZH,
    EXCLUDE_REASONS,
    INVALID_REASONS,
    STATE_ZH,
    STATES,
    ComplaintService,
)
from gateway.console.pages import parse_cursor, query_with
from gateway.console.web import Forbidden, Viewer, deps, redirect, render, viewer
from gateway.errors import BadInput
from gateway.org import list_halls
from protocol.grades import GRADES, NAMES_ZH

DUE_FILTERS = {"soon": "即将到期", "overdue": "已超期"}
STATE_FILTERS = {"open": "未办结", **STATE_ZH}
APPEAL_ZH = {"none": "—", "appealed": "已申诉", "under_review": "复核中", "upheld": "维持差评",
             "overturned": "撤销差评"}
VERDICT_ZH = {"pending": "待核实", "valid": "有效差评", "invalid": "无效差评"}
# How urgent a deadline is, as the page colours it (status from gateway.complaints.deadline_statuses).
DEADLINE_STATUS_ZH = {"open": "进行中", "due_soon": "即将到期", "overdue": "已超期", "met": "按时完成",
                      "late": "超期完成", "n/a": "不适用", "unknown": "无法计算", "expired": "期满未申诉",
                      "used": "已申诉"}
EVENT_ZH = {"open": "生成工单", "contact": "联系群众", "verify": "核实", "rectify": "整改反馈",
            "callback": "回访", "close": "办结", "appeal": "申诉", "review_start": "开始复核",
            "review": "复核决定", "exclude": "剔除评价", "reasons": "差评原因",
            "correction_done": "已在平台处理", "follow_up": "追加评价邀请"}
CORRECTION_ZH = {"pending": "待发送", "sent": "已发送", "acked": "平台已确认", "rejected": "平台拒收",
                 "manual": "需在省平台后台处理", "manual_done": "已在平台处理"}
MAX_COMPLAINT_ID = 10**12


def service(request: web.Request) -> ComplaintService:
    return request.app[SERVICE_KEY]


def _scope_filter(v: Viewer, chosen: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    """One filter (hall or department) within the viewer's scope: None = no restriction."""
    if chosen is not None:
        return [chosen] if not allowed or chosen in allowed else []
    return list(allowed) if allowed else None


def check_visible(v: Viewer, c: dict[str, Any]) -> None:
    if not v.scope.allows(c["hall_id"], c["dept_code"]):
        raise Forbidden("差评工单 %d 不在您的管理范围内" % c["id"])


def _text(request: web.Request, key: str, limit: int = 64) -> str | None:
    v = (request.query.get(key) or "").strip()
    if len(v) > limit or any(ord(ch) < 0x20 or ch == "\x7f" for ch in v):
        raise BadInput("筛选条件不正确", "bad_filter")
    return v or None


async def org_names(request: web.Request) -> tuple[list[Any], list[Any]]:
    """Halls and departments (for the filters), as the viewer may see them."""
    d = deps(request)
    v = viewer(request)
    halls = [h for h in await list_halls(d.store, d.cfg.hall)
             if not v.scope.halls or h.hall_id in v.scope.halls]
    depts = [x for x in await d.store.read(lambda tx: tx.org.list_departments())
             if not v.scope.depts or x.dept_code in v.scope.depts]
    return halls, depts


async def complaints_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("complaints.view")
    svc = service(request)
    state = request.query.get("state") or None
    if state is not None and state not in STATE_FILTERS:
        raise BadInput("状态的取值不正确", "bad_filter")
    due = request.query.get("due") or None
    if due is not None and due not in DUE_FILTERS:
        raise BadInput("期限的取值不正确", "bad_filter")
    hall = _text(request, "hall", 32)
    dept = _text(request, "dept", 32)
    halls = _scope_filter(v, hall, v.scope.halls)
    depts = _scope_filter(v, dept, v.scope.depts)
    size = deps(request).settings.page_size
    states = [state] if state in STATES else None
    cursor = parse_cursor(request.query.get("before"))
    before = (cursor[0], int(cursor[1])) if cursor is not None and cursor[1].isdigit() else None
    if cursor is not None and before is None:
        raise BadInput("翻页参数不正确", "bad_cursor")
    rows, total = await svc.search(states, state == "open", due, limit=size + 1, halls=halls, depts=depts,
                                   before=before)
    more = len(rows) > size
    rows = rows[:size]
    nxt = "%d~%d" % (rows[-1]["opened_ms"], rows[-1]["id"]) if more else None
    all_halls, all_depts = await org_names(request)
    return render(request, "complaints.html", {
        "older_url": query_with(request, before=nxt) if nxt else None,
        "newest_url": query_with(request, before=None) if before else None,
        "rows": rows, "total": total, "state": state or "", "due": due or "",
        "hall_f": hall or "", "dept_f": dept or "", "halls": all_halls, "depts": all_depts,
        "states": STATE_FILTERS, "dues": DUE_FILTERS, "verdicts": VERDICT_ZH, "appeals": APPEAL_ZH,
        "dstatus": DEADLINE_STATUS_ZH,
    })


def _complaint_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or not 0 < int(raw) < MAX_COMPLAINT_ID:
        raise BadInput("工单编号不正确", "bad_complaint_id")
    return int(raw)


async def complaint_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("complaints.view")
    svc = service(request)
    c = await svc.show(_complaint_id(request))
    check_visible(v, c)
    ts = svc.settings.tags_in_force
    tags = [(t.code, t.name) for t in ts.by_grade.get(c["grade"], ())] if ts is not None else []
    return render(request, "complaint.html", {
        "c": c, "verdicts": VERDICT_ZH, "appeals": APPEAL_ZH, "dstatus": DEADLINE_STATUS_ZH,
        "events": EVENT_ZH, "states": STATE_ZH, "invalid_reasons": INVALID_REASONS,
        "exclude_reasons": EXCLUDE_REASONS, "tags": tags, "grades": [(g, NAMES_ZH[g]) for g in GRADES],
        "corr_zh": CORRECTION_ZH, "deadline_zh": DEADLINE_ZH,
        "can_act": v.can("complaints.act"), "can_review": v.can("complaints.review"),
        "follow_up_days": svc.settings.follow_up_days,
    })


def _field(form: Any, key: str) -> str:
    v = form.get(key, "")
    return v if isinstance(v, str) else ""


def _tags(form: Any) -> list[str]:
    """The ticked 差评 tags (the service checks each against the set in force)."""
    return [str(x) for x in form.getall("tags", []) if str(x)][:32]


async def complaint_action(request: web.Request) -> web.Response:
    """POST /complaints/{id}/{action}: one of the service's actions, by the logged-in person."""
    v = viewer(request)
    action = request.match_info["action"]
    cid = _complaint_id(request)
    svc = service(request)
    need = "complaints.review" if action in ("review", "exclude") else "complaints.act"
    v.require(need)
    current = await svc.show(cid)
    check_visible(v, current)
    form = await request.post()
    note = _field(form, "note")
    done = "已保存"
    if action == "contact":
        await svc.contact(cid, v.actor, note)
        done = "已记录联系群众"
    elif action == "verify":
        verdict = _field(form, "verdict")
        if verdict not in ("valid", "invalid"):
            raise BadInput("请选择核实结论：有效差评或无效差评", "missing_field")
        valid = verdict == "valid"
        reason = _field(form, "reason") or None if not valid else None
        if not valid and reason is None:
            raise BadInput("无效差评须选择原因", "bad_reason")
        await svc.verify(cid, v.actor, valid, reason, note, _field(form, "complex") == "1" and valid)
        done = "已核实为有效差评" if valid else "已核实为无效差评，工单办结"
    elif action == "reasons":
        await svc.attach_reasons(cid, v.actor, _tags(form), _field(form, "text"), "liaison")
        done = "已保存差评原因"
    elif action == "rectify":
        await svc.rectify(cid, v.actor, note)
        done = "已记录整改反馈"
    elif action == "callback":
        grade = _field(form, "grade")
        if grade not in GRADES:
            raise BadInput("请选择群众对整改的评价", "bad_grade")
        await svc.callback(cid, v.actor, grade, note, _tags(form), _field(form, "text"))
        done = "已记录回访"
    elif action == "close":
        await svc.close(cid, v.actor, note)
        done = "工单已办结"
    elif action == "appeal":
        await svc.appeal(cid, v.actor, note)
        done = "已登记工作人员的申诉"
    elif action == "review":
        decision = _field(form, "decision")
        if decision == "start":
            await svc.review_start(cid, v.actor, note)
            done = "已开始复核"
        elif decision in ("uphold", "overturn"):
            reason = (_field(form, "reason") or None) if decision == "overturn" else None
            if decision == "overturn" and reason is None:
                raise BadInput("撤销差评须选择原因（误评或恶意评价）", "bad_reason")
            await svc.review_decide(cid, v.actor, decision == "overturn", reason, note)
            done = "复核决定：撤销差评，该评价不计入统计" if decision == "overturn" else "复核决定：维持差评"
        else:
            raise BadInput("请选择复核操作", "bad_decision")
    elif action == "exclude":
        reason = _field(form, "reason")
        if reason not in EXCLUDE_REASONS:
            raise BadInput("请选择剔除原因（误评或恶意评价）", "bad_reason")
        await svc.exclude(cid, v.actor, reason, note)
        done = "该评价已剔除出统计（保留原始记录）"
    elif action == "follow-up":
        done = await _follow_up(request, v, current)
    elif action == "correction":
        raw = _field(form, "correction")
        if not raw.isdigit() or int(raw) >= MAX_COMPLAINT_ID:
            raise BadInput("更正编号不正确", "bad_input")
        if int(raw) not in [k["id"] for k in current["corrections"]]:
            raise BadInput("该更正不属于此工单", "bad_input")
        await svc.correction_done(int(raw), v.actor, note)
        done = "已记录在省平台后台完成更正"
    else:
        raise web.HTTPNotFound()
    return redirect(request, "/complaints/%d" % cid, ("ok", done))


async def _follow_up(request: web.Request, v: Viewer, c: dict[str, Any]) -> str:
    """追加评价: a follow-up invitation (assessNumber 2) for the complaint's case at its window,
    through the invitation service the window systems' API uses."""
    d = deps(request)
    if not c["window_id"]:
        raise BadInput("该差评没有窗口，无法发出追加评价邀请", "no_window")
    req = invitations.InvitationRequest(case_no=c["case_no"], window_id=c["window_id"], follow_up=True)
    out = await invitations.create(d.store, req, v.actor, request.app[RULES_KEY],
                                   at_ms=request.app[CLOCK_KEY](), calendar=request.app[CALENDAR_KEY])
    reached = True
    for device, (t, fields) in out.commands:
        try:
            await d.send(device, t, fields)
        except Exception:  # noqa: BLE001 - an offline device catches up at its hello
            reached = False
    text = "已向窗口 %s 的评价器发出追加评价邀请" % c["window_id"]
    return text if reached else text + "；设备当前不在线，将在重新连接时收到"


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/complaints", complaints_page),
    ("GET", r"/complaints/{id:\d+}", complaint_page),
    ("POST", r"/complaints/{id:\d+}/{action:[a-z-]+}", complaint_action),
]
