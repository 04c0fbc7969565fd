"""The console's district pages: bulletins (通报) with their charts and downloads, and the
supervision findings (监督发现). Thin handlers over the same services as `hcp-gateway
bulletin|supervision` and `GET /api/v1/bulletins|supervision`: gateway.bulletin.make_bulletin,
gateway.export.csv_bytes / xlsx_bytes (the same bytes the API sends), gateway.supervision.supervise.
The charts are the bulletin's own ChartSpecs (the data the XLSX's charts are made of), drawn
by ECharts.

Scope: an account limited to halls sees the bulletin of one of its halls (with its village
points) at a time; an account limited to departments sees no district bulletin (its rows
would show other departments' figures).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.bulletin import GROUP_ZH, GROUPS, Bulletin, make_bulletin
from gateway.complaint_figures import complaint_figures
from gateway.console.web import Forbidden, Viewer, deps, render, today, viewer
from gateway.errors import BadInput
from gateway.export import ChartSpec, ExportSettings, csv_bytes, xlsx_bytes
from gateway.org import list_halls
from gateway.periods import Period, parse_period
from gateway.supervision import KIND_ZH, KINDS, supervise

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PERIOD_KINDS = {"quarter": "季度", "month": "月", "week": "周", "range": "自定义时段"}
BY_ZH = {"department": "部门", "hall": "大厅", "town": "镇（街道）", "window": "窗口", "clerk": "工作人员",
         "item": "事项"}
SUBJECT_ZH = {"clerk": "工作人员", "window": "窗口", "device": "评价器"}


def _period_text(request: web.Request, default_kind: str = "quarter") -> tuple[str, dict[str, str]]:
    """The period the picker chose (kind + its field), as gateway.periods reads it, and the
    picker's values to show again. `period=` (the CLI's text) is accepted too."""
    q = request.query
    d = deps(request)
    now = today(d.cfg, d.clock())
    picked = {"kind": q.get("kind") or default_kind,
              "quarter": q.get("quarter") or "%d-Q%d" % (now.year, (now.month - 1) // 3 + 1),
              "month": q.get("month") or now.strftime("%Y-%m"),
              "week": q.get("week") or "%d-W%02d" % now.isocalendar()[:2],
              "from": q.get("from") or now.replace(day=1).isoformat(), "to": q.get("to") or now.isoformat()}
    if q.get("period"):
        text = q["period"]
    else:
        kind = picked["kind"]
        if kind not in PERIOD_KINDS:
            raise BadInput("统计周期类型不正确", "bad_period")
        text = picked[kind] if kind != "range" else "%s..%s" % (picked["from"], picked["to"])
    if len(text) > 32:
        raise BadInput("统计周期不正确", "bad_period")
    return text, picked


def _period(text: str) -> Period:
    try:
        return parse_period(text)
    except BadInput:
        raise BadInput("统计周期“%s”无法识别：请选择季度（如 2026-Q2）、月、周或起止日期（不超过两年）"
                       % text, "bad_period") from None


def _hall(request: web.Request, v: Viewer) -> str | None:
    hall = (request.query.get("hall") or "").strip() or None
    if v.scope.depts:
        raise Forbidden("按部门授权的账号不能查看全区通报，请联系区级监督员")
    if v.scope.halls:
        if hall is None:
            return v.scope.halls[0]
        if hall not in v.scope.halls:
            raise Forbidden("大厅 %s 不在您的管理范围内" % hall)
    return hall


async def _halls(request: web.Request, v: Viewer) -> list[Any]:
    d = deps(request)
    return [h for h in await list_halls(d.store, d.cfg.hall)
            if not v.scope.halls or h.hall_id in v.scope.halls]


async def _bulletin(request: web.Request) -> tuple[Bulletin, dict[str, Any]]:
    v = viewer(request)
    v.require("bulletins.view")
    d = deps(request)
    text, picked = _period_text(request)
    by = request.query.get("by") or "department"
    if by not in GROUPS:
        raise BadInput("分组方式不正确", "bad_group")
    hall = _hall(request, v)
    halls = await _halls(request, v)
    if hall is not None and hall not in {h.hall_id for h in halls}:
        raise BadInput("没有这个大厅：%s" % hall[:32], "unknown_hall")
    b = await make_bulletin(d.store, d.cfg, _period(text), by, hall, complaint_figures(d.cfg))
    return b, {"picked": picked, "by": by, "hall_f": hall or "", "halls": halls}


def echarts_option(c: ChartSpec) -> dict[str, Any]:
    """An ECharts option for one of the bulletin's charts (percentages shown as 0..100 %)."""
    def val(x: float | None) -> float | None:
        return None if x is None else (round(x * 100, 2) if c.percent else x)
    fmt = "{value}%" if c.percent else "{value}"
    return {
        "animation": False,
        "title": {"text": c.title, "left": "center", "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 56, "right": 16, "top": 40, "bottom": 70},
        "xAxis": {"type": "category", "data": list(c.categories), "name": c.x_title,
                  "axisLabel": {"rotate": 30 if len(c.categories) > 6 else 0, "interval": 0}},
        "yAxis": {"type": "value", "name": c.y_title, "axisLabel": {"formatter": fmt},
                  **({"max": 100} if c.percent else {"minInterval": 1})},
        "series": [{"type": c.kind, "name": s.name, "data": [val(x) for x in s.values],
                    "connectNulls": True, "label": {"show": len(c.categories) <= 12, "position": "top"}}
                   for s in c.series],
    }


async def bulletins_page(request: web.Request) -> web.Response:
    b, ctx = await _bulletin(request)
    t = b.table()
    cols = t.columns
    rows = [[col.display(r.get(col.key)) for col in cols] for r in t.rows]
    totals = [col.display(t.totals.get(col.key)) for col in cols] if t.totals is not None else []
    retired = [r.retired for r in b.rows]
    charts = [{"id": "chart-%d" % i, "title": c.title,
               "option": json.dumps(echarts_option(c), ensure_ascii=False),
               "data": json.dumps(c.to_json(), ensure_ascii=False)} for i, c in enumerate(b.charts)]
    query = request.query_string
    return render(request, "bulletins.html", {
        **ctx, "b": b, "cols": cols, "rows": list(zip(rows, retired, strict=True)), "totals": totals,
        "charts": charts, "kinds": PERIOD_KINDS, "groups": {g: BY_ZH[g] for g in GROUPS},
        "group_zh": GROUP_ZH, "query": query,
    })


async def bulletin_download(request: web.Request) -> web.StreamResponse:
    fmt = request.match_info["fmt"]
    b, _ = await _bulletin(request)
    s = deps(request).cfg.sections.get("export")
    settings = s if isinstance(s, ExportSettings) else ExportSettings()
    data, ctype = ((csv_bytes(b.table(), settings), "text/csv; charset=utf-8") if fmt == "csv"
                   else (xlsx_bytes(b.table(), settings), XLSX))
    name = "bulletin-%s-%s.%s" % (b.period.text.replace("..", "_"), b.by, fmt)
    return web.Response(body=data, headers={
        "Content-Type": ctype, "Cache-Control": "no-store",
        # An ASCII name only: Debian's Chromium saved a file offered with a UTF-8 name
        # (filename*=UTF-8''...) as "download" (tests/console_browser); the title is inside.
        "Content-Disposition": "attachment; filename=\"%s\"" % name})


async def supervision_page(request: web.Request) -> web.Response:
    v = viewer(request)
    v.require("findings.view")
    d = deps(request)
    text, picked = _period_text(request, "month")
    hall = _hall(request, v)
    halls = await _halls(request, v)
    if hall is not None and hall not in {h.hall_id for h in halls}:
        raise BadInput("没有这个大厅：%s" % hall[:32], "unknown_hall")
    period = _period(text)
    if period.days > 93:
        raise BadInput("监督发现按月计算，一次最多查看一个季度", "bad_period")
    kind = request.query.get("finding") or ""
    if kind and kind not in KINDS:
        raise BadInput("发现类型不正确", "bad_filter")
    sv = await supervise(d.store, d.cfg, period, hall, at_ms=d.clock())
    found = [f for f in sv.findings if not kind or f.kind == kind]
    return render(request, "supervision.html", {
        "sv": sv, "findings": found, "counts": sv.counts(), "kind_zh": KIND_ZH, "finding": kind,
        "picked": picked, "hall_f": hall or "", "halls": halls, "kinds": PERIOD_KINDS,
        "subject_zh": SUBJECT_ZH, "period": period,
        "evidence_keys": _evidence_keys,
    })


EVIDENCE_ZH = {"at": "时间", "pressed_at": "按键时间", "record_id": "记录", "grade": "评价",
               "case_no": "办件编号",
               "window_id": "窗口", "staff_account": "工作人员", "device_id": "评价器", "kind": "类型",
               "flags": "标记", "invited_at": "邀请时间", "accepted_at": "受理时间", "seconds": "秒",
               "minutes": "分钟", "day": "日期", "hours": "小时", "from": "从", "to": "到"}


def _evidence_keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    return [(k, EVIDENCE_ZH.get(k, k)) for k in keys]


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/bulletins", bulletins_page),
    ("GET", "/bulletins/download.{fmt:csv|xlsx}", bulletin_download),
    ("GET", "/supervision", supervision_page),
]
