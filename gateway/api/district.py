"""HTTP routes of the district's figures, with their OpenAPI paths beside them (added to the
app and to the document by gateway/api/app.py and gateway/api/openapi.py, one line each):

    POST /api/v1/cases                 window systems report 办件 (window token; idempotent by case number)
    GET  /api/v1/cases/{case_no}       one case and its invitations (window token)
    GET  /api/v1/bulletins             ?period=&by=&hall=&format=json|csv|xlsx (admin token)
    GET  /api/v1/supervision           ?period=&hall= (admin token)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway import casefeed
from gateway.api.app import CFG_KEY, STORE_KEY, ApiError, require
from gateway.api.openapi import ERROR_RESPONSE, response
from gateway.bulletin import GROUPS, make_bulletin
from gateway.complaint_figures import complaint_figures
from gateway.errors import BadInput
from gateway.export import ExportSettings, csv_bytes, xlsx_bytes
from gateway.periods import HELP as PERIOD_HELP
from gateway.periods import parse_period
from gateway.supervision import KINDS, supervise

# A batch of 1000 cases is well under this; the app's own limit is for small bodies.
MAX_CASES_BODY = 1024 * 1024
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def _cases_body(request: web.Request) -> Any:
    """The body of a case batch: larger than the app's small-body limit allows, read here
    with its own bound (a body over it is refused, never read whole)."""
    if request.content_length is not None and request.content_length > MAX_CASES_BODY:
        raise ApiError(413, "body_too_large", "body over %d bytes" % MAX_CASES_BODY)
    data = await request.content.read(MAX_CASES_BODY + 1)
    if len(data) > MAX_CASES_BODY:
        raise ApiError(413, "body_too_large", "body over %d bytes" % MAX_CASES_BODY)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad_json", "body is not valid JSON (UTF-8)") from None


async def post_cases(request: web.Request) -> web.Response:
    actor = require(request, "window")
    reports = casefeed.parse_batch(await _cases_body(request))
    res = await casefeed.report_cases(request.app[STORE_KEY], request.app[CFG_KEY].hall, reports, actor)
    status = 201 if res.created else 200
    return web.json_response({**res.counts(), "created_cases": res.created, "updated_cases": res.updated},
                             status=status)


async def get_case(request: web.Request) -> web.Response:
    require(request, "window")
    return web.json_response(await casefeed.get_case(request.app[STORE_KEY], request.match_info["case_no"]))


def _query(request: web.Request, name: str, required: bool = False) -> str | None:
    v = request.query.get(name)
    if v is None and required:
        raise BadInput("%s is required" % name, "missing_field")
    return v


async def get_bulletin(request: web.Request) -> web.StreamResponse:
    require(request, "admin")
    period = parse_period(_query(request, "period", True) or "")
    by = _query(request, "by") or "department"
    if by not in GROUPS:
        raise BadInput("by must be one of %s" % ", ".join(GROUPS), "bad_group")
    fmt = _query(request, "format") or "json"
    if fmt not in ("json", "csv", "xlsx"):
        raise BadInput("format must be json, csv or xlsx", "bad_format")
    cfg = request.app[CFG_KEY]
    b = await make_bulletin(request.app[STORE_KEY], cfg, period, by, _query(request, "hall"),
                            complaint_figures(cfg))
    if fmt == "json":
        return web.json_response(b.to_json())
    s = cfg.sections.get("export")
    settings = s if isinstance(s, ExportSettings) else ExportSettings()
    name = "%s-%s.%s" % (period.text, by, fmt)
    # Rendering a workbook (charts and all) takes a while for a district: off the event loop.
    render = csv_bytes if fmt == "csv" else xlsx_bytes
    data = await asyncio.to_thread(render, b.table(), settings)
    ctype = "text/csv; charset=utf-8" if fmt == "csv" else XLSX
    return web.Response(body=data, headers={
        "Content-Type": ctype,
        "Content-Disposition": "attachment; filename=\"%s\"; filename*=UTF-8''%s"
                               % (name, quote(b.title + "." + fmt))})


async def get_supervision(request: web.Request) -> web.Response:
    require(request, "admin")
    period = parse_period(_query(request, "period", True) or "")
    sv = await supervise(request.app[STORE_KEY], request.app[CFG_KEY], period, _query(request, "hall"))
    return web.json_response(sv.to_json())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/api/v1/cases", post_cases),
    ("GET", "/api/v1/cases/{case_no}", get_case),
    ("GET", "/api/v1/bulletins", get_bulletin),
    ("GET", "/api/v1/supervision", get_supervision),
]


# ---- OpenAPI ------------------------------------------------------------------------------

_json = response
_ERR = ERROR_RESPONSE
_TIME = {"oneOf": [{"type": "string"}, {"type": "integer"}],
         "description": "\"2026-06-01 09:15:00\" (the hall's local time), ISO 8601 with offset, or epoch ms"}
_CASE = {"type": "object", "required": ["case_no", "accepted_at"], "additionalProperties": False,
         "properties": {
    "case_no": {"type": "string", "minLength": 1, "maxLength": 64, "description": "办件编号 (projectNo)"},
    "accepted_at": _TIME, "finished_at": _TIME,
    "status": {"type": "string", "enum": list(casefeed.STATUSES), "default": "finished",
               "description": "withdrawn: not counted as a handled case"},
    "hall": {"type": "string", "description": "default: the window's hall, else the default hall"},
    "window": {"type": "string", "maxLength": 16}, "staff_account": {"type": "string", "maxLength": 64},
    "staff_name": {"type": "string", "maxLength": 64},
    "dept_code": {"type": "string", "pattern": "^[0-9A-HJ-NPQRTUWXY]{18}$",
                  "description": "unified social credit code (check character checked); "
                                 "default: the window's"},
    "task_code": {"type": "string", "maxLength": 64}, "task_name": {"type": "string", "maxLength": 200}}}
_PERIOD = {"name": "period", "in": "query", "required": True, "schema": {"type": "string"},
           "description": PERIOD_HELP}
_HALL = {"name": "hall", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "only this hall and the halls under it"}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/cases": {"post": {
        "summary": "Report 办件 handled at windows, invited to a rating or not (idempotent by case number)",
        "description": "One case, or {\"cases\": [...]} with 1..%d cases, stored all or none "
                       "(a bad case is named "
                       "by its index). A case reported again is unchanged, or updated in place when a fact "
                       "changed. 201 when any case was new, else 200." % casefeed.MAX_BATCH,
        "security": [{"windowToken": []}, {"adminToken": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            _CASE, {"type": "object", "required": ["cases"], "additionalProperties": False,
                    "properties": {"cases": {"type": "array", "items": _CASE, "minItems": 1,
                                             "maxItems": casefeed.MAX_BATCH}}}]}}}},
        "responses": {s: _json({"type": "object", "properties": {
            "created": {"type": "integer"}, "updated": {"type": "integer"}, "unchanged": {"type": "integer"},
            "created_cases": {"type": "array", "items": {"type": "string"}},
            "updated_cases": {"type": "array", "items": {"type": "string"}}}}, d)
            for s, d in (("201", "stored (some new)"), ("200", "stored (none new)"))} | {
            str(c): _ERR for c in (400, 401, 404, 413)}}},
    "/api/v1/cases/{case_no}": {"get": {
        "summary": "One reported case and its invitations", "security": [{"windowToken": []},
                                                                         {"adminToken": []}],
        "parameters": [{"name": "case_no", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": _json({"type": "object"}, "the case"), "401": _ERR, "404": _ERR}}},
    "/api/v1/bulletins": {"get": {
        "summary": "The bulletin (通报表) for a period, grouped (the same data the CLI prints)",
        "security": [{"adminToken": []}],
        "parameters": [_PERIOD, {"name": "by", "in": "query", "required": False,
                                 "schema": {"type": "string", "enum": list(GROUPS), "default": "department"}},
                       _HALL, {"name": "format", "in": "query", "required": False,
                               "schema": {"type": "string", "enum": ["json", "csv", "xlsx"],
                                          "default": "json"}}],
        "responses": {"200": {"description": "JSON: title, issuer, period, columns, rows, totals, notes, "
                                             "charts (series for the console); CSV (UTF-8 with BOM) or XLSX "
                                             "with charts",
                              "content": {"application/json": {"schema": {"type": "object"}},
                                          "text/csv": {"schema": {"type": "string"}},
                                          XLSX: {"schema": {"type": "string", "format": "binary"}}}},
                      "400": _ERR, "401": _ERR}}},
    "/api/v1/supervision": {"get": {
        "summary": "Findings on data truthfulness (数据质量) per month, with their evidence rows",
        "security": [{"adminToken": []}], "parameters": [_PERIOD, _HALL],
        "responses": {"200": _json({"type": "object", "properties": {
            "months": {"type": "array", "items": {"type": "string"}},
            "counts": {"type": "object", "properties": {k: {"type": "integer"} for k in KINDS}},
            "findings": {"type": "array", "items": {"type": "object", "properties": {
                "month": {"type": "string"}, "kind": {"type": "string", "enum": list(KINDS)},
                "subject": {"type": "string", "enum": ["clerk", "window", "device"]},
                "subject_id": {"type": "string"}, "summary": {"type": "string"},
                "figures": {"type": "object"}, "evidence": {"type": "array", "items": {"type": "object"}},
                "evidence_total": {"type": "integer"}}}}}}, "findings"), "400": _ERR, "401": _ERR}}},
}
