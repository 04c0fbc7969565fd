"""HTTP routes of the district's organisation (admin token), over gateway/org.py, with their
OpenAPI paths beside them. Added to the app by gateway/api/app.py (`ROUTES`) and to the
document by gateway/api/openapi.py (`OPENAPI_PATHS`), one line each.

    GET   /api/v1/org                         the whole tree (?all=1: retired ones too)
    GET   /api/v1/org/records/{record_id}     a record's hall, department, window, clerk at press time
    POST  /api/v1/org/halls                   add          PATCH .../halls/{id}   rename, move, hours
    POST  /api/v1/org/halls/{id}/retire
    POST  /api/v1/org/departments             add          PATCH .../departments/{code}  rename, move
    POST  /api/v1/org/departments/{code}/retire
    POST  /api/v1/org/windows                 add          PATCH .../windows/{w}  rename, move
    POST  /api/v1/org/windows/{w}/retire      GET .../windows/{w}/history
    POST  /api/v1/org/staff                   add          PATCH .../staff/{a}    rename, move
    POST  /api/v1/org/staff/{a}/retire
    PUT   /api/v1/org/devices/{device}/hall   put a device in a hall
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web

from gateway import org
from gateway.api.app import CFG_KEY, STORE_KEY, _json_body, require
from gateway.api.openapi import ERROR_RESPONSE, response
from gateway.config import HallConfig
from gateway.errors import BadInput
from gateway.store import Store


def _body(raw: Any, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadInput("body must be a JSON object")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise BadInput("unknown field %s" % unknown[0], "unknown_field")
    for k in required:
        if k not in raw:
            raise BadInput("%s is required" % k, "missing_field")
    return raw


def _str(body: dict[str, Any], key: str, nullable: bool = False) -> Any:
    v = body.get(key)
    if v is None and (nullable or key not in body):
        return None
    if not isinstance(v, str):
        raise BadInput("%s must be a string" % key, "bad_field")
    return v


def _ctx(request: web.Request) -> tuple[Store, HallConfig]:
    """The store and the default hall, what every organisation service takes."""
    return request.app[STORE_KEY], request.app[CFG_KEY].hall


def _hall_spec(body: dict[str, Any]) -> org.HallSpec:
    hours = body.get("opening_hours")
    days = body.get("opening_days")
    if hours is not None and (not isinstance(hours, list) or not all(isinstance(h, str) for h in hours)):
        raise BadInput('opening_hours must be a list of "HH:MM-HH:MM" strings', "bad_opening_hours")
    if days is not None and (not isinstance(days, list) or not all(type(d) is int for d in days)):
        raise BadInput("opening_days must be a list of ISO weekdays 1..7", "bad_opening_days")
    return org.HallSpec(name=_str(body, "name"), kind=_str(body, "kind"),
                        parent_id=_str(body, "parent", nullable=True) or None,
                        area_code=_str(body, "area_code"), timezone=_str(body, "timezone"),
                        opening_hours=tuple(hours) if hours is not None else None,
                        opening_days=tuple(days) if days is not None else None,
                        no_parent="parent" in body and body["parent"] is None)


HALL_FIELDS = {"name", "kind", "parent", "area_code", "timezone", "opening_hours", "opening_days"}


async def get_org(request: web.Request) -> web.Response:
    require(request, "admin")
    t = await org.tree(request.app[STORE_KEY], request.app[CFG_KEY])
    return web.json_response(t.to_dict(include_retired=request.query.get("all", "0") in ("1", "true")))


async def get_record_org(request: web.Request) -> web.Response:
    require(request, "admin")
    rid = request.match_info["record_id"]
    hall = request.app[CFG_KEY].hall
    p = await request.app[STORE_KEY].read(lambda tx: org.org_at_press_time(tx, rid, hall))
    return web.json_response(p.as_dict())


async def post_hall(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), HALL_FIELDS | {"hall_id"}, ("hall_id", "name", "kind"))
    h = await org.add_hall(request.app[STORE_KEY], request.app[CFG_KEY].hall, _str(body, "hall_id"),
                           _hall_spec(body), actor)
    return web.json_response(h.public(), status=201)


async def patch_hall(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), HALL_FIELDS)
    store, hall = _ctx(request)
    h = await org.update_hall(store, hall, request.match_info["hall_id"], _hall_spec(body), actor)
    return web.json_response(h.public())


async def retire_hall(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    store, hall = _ctx(request)
    h = await org.retire_hall(store, hall, request.match_info["hall_id"], actor)
    return web.json_response(h.public())


async def post_department(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), {"code", "name", "hall"}, ("code", "name"))
    d = await org.add_department(request.app[STORE_KEY], request.app[CFG_KEY].hall, _str(body, "code"),
                                 _str(body, "name"), _str(body, "hall"), actor)
    return web.json_response(asdict(d), status=201)


async def patch_department(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), {"name", "hall"})
    store, hall = _ctx(request)
    d = await org.update_department(store, hall, request.match_info["code"], actor, name=_str(body, "name"),
                                    hall_id=_str(body, "hall"))
    return web.json_response(asdict(d))


async def retire_department(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    d = await org.retire_department(request.app[STORE_KEY], request.match_info["code"], actor)
    return web.json_response(asdict(d))


async def post_window(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), {"window", "name", "dept_code", "hall"}, ("window",))
    store, hall = _ctx(request)
    w = await org.add_window(store, hall, _str(body, "window"), _str(body, "dept_code") or "",
                             _str(body, "name") or "", _str(body, "hall"), actor)
    return web.json_response(asdict(w), status=201)


async def patch_window(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), {"name", "dept_code", "hall"})
    if not body:
        raise BadInput("nothing to change", "nothing_to_change")
    store, window = request.app[STORE_KEY], request.match_info["window"]
    w = None
    if "name" in body:
        w = await org.rename_window(store, window, _str(body, "name"), actor)
    move: dict[str, Any] = {}
    if "hall" in body:
        move["hall_id"] = _str(body, "hall")
    if "dept_code" in body:
        move["dept_code"] = _str(body, "dept_code")
    if move:
        w = await org.move_window(store, request.app[CFG_KEY].hall, window, actor, **move)
    assert w is not None
    return web.json_response(asdict(w))


async def retire_window(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    w = await org.retire_window(request.app[STORE_KEY], request.match_info["window"], actor)
    return web.json_response(asdict(w))


async def get_window_history(request: web.Request) -> web.Response:
    require(request, "admin")
    rows = await org.window_history(request.app[STORE_KEY], request.match_info["window"])
    return web.json_response({"places": [asdict(p) for p in rows]})


async def post_staff(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), {"account", "name", "dept_code"}, ("account", "name"))
    s = await org.add_staff(request.app[STORE_KEY], _str(body, "account"), _str(body, "name"),
                            _str(body, "dept_code") or "", actor)
    return web.json_response(asdict(s), status=201)


async def patch_staff(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), {"name", "dept_code"})
    s = await org.update_staff(request.app[STORE_KEY], request.match_info["account"], actor,
                               display_name=_str(body, "name"), dept_code=_str(body, "dept_code"))
    return web.json_response(asdict(s))


async def retire_staff(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    s = await org.retire_staff(request.app[STORE_KEY], request.match_info["account"], actor)
    return web.json_response(asdict(s))


async def put_device_hall(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = _body(await _json_body(request), {"hall"}, ("hall",))
    device = request.match_info["device"]
    store, hall = _ctx(request)
    h = await org.move_device(store, hall, device, _str(body, "hall"), actor)
    return web.json_response({"device_id": device, "hall_id": h})


Handler = Callable[[web.Request], Awaitable[web.Response]]
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/v1/org", get_org),
    ("GET", "/api/v1/org/records/{record_id}", get_record_org),
    ("POST", "/api/v1/org/halls", post_hall),
    ("PATCH", "/api/v1/org/halls/{hall_id}", patch_hall),
    ("POST", "/api/v1/org/halls/{hall_id}/retire", retire_hall),
    ("POST", "/api/v1/org/departments", post_department),
    ("PATCH", "/api/v1/org/departments/{code}", patch_department),
    ("POST", "/api/v1/org/departments/{code}/retire", retire_department),
    ("POST", "/api/v1/org/windows", post_window),
    ("PATCH", "/api/v1/org/windows/{window}", patch_window),
    ("POST", "/api/v1/org/windows/{window}/retire", retire_window),
    ("GET", "/api/v1/org/windows/{window}/history", get_window_history),
    ("POST", "/api/v1/org/staff", post_staff),
    ("PATCH", "/api/v1/org/staff/{account}", patch_staff),
    ("POST", "/api/v1/org/staff/{account}/retire", retire_staff),
    ("PUT", "/api/v1/org/devices/{device}/hall", put_device_hall),
]


# ---- OpenAPI ------------------------------------------------------------------------------

_json = response
_ERR = ERROR_RESPONSE
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
_OBJ = {"type": "object"}
_HALL = {"type": "object", "properties": {
    "hall_id": {"type": "string"}, "name": {"type": "string"},
    "kind": {"type": "string", "enum": list(org.HALL_KINDS)},
    "parent_id": {"type": "string", "nullable": True}, "area_code": {"type": "string"},
    "timezone": {"type": "string"}, "opening_hours": {"type": "array", "items": {"type": "string"}},
    "opening_days": {"type": "array", "items": {"type": "integer"}},
    "created_ms": {"type": "integer", "nullable": True}, "retired_ms": {"type": "integer", "nullable": True},
    "from_config": {"type": "boolean", "description": "the default hall ([hall] in the config)"}}}
_HALL_IN: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {
    "name": {"type": "string", "maxLength": 64}, "kind": {"type": "string", "enum": list(org.HALL_KINDS)},
    "parent": {"type": "string", "nullable": True, "description": "null: belongs to no hall"},
    "area_code": {"type": "string", "pattern": "^(\\d{6,12})?$"},
    "timezone": {"type": "string", "description": "IANA zone, e.g. Asia/Shanghai"},
    "opening_hours": {"type": "array", "items": {"type": "string",
                                                 "pattern": "^\\d\\d:\\d\\d-\\d\\d:\\d\\d$"}},
    "opening_days": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7}}}}
_USCC = {"type": "string", "pattern": "^[0-9A-HJ-NPQRTUWXY]{18}$",
         "description": "unified social credit code, check character per GB 32100-2015"}


def _op(summary: str, ok: dict[str, Any], *errors: int, body: dict[str, Any] | None = None,
        params: tuple[str, ...] = (), status: int = 200, description: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": _ADMIN,
                          "responses": {str(status): _json(ok, "done"),
                                        **{str(e): _ERR for e in (401, *errors)}}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                            for p in params]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/org": {"get": {**_op("The whole organisation: district, halls, departments, windows, clerks,"
                                  " devices' halls", _OBJ), "parameters": [
        {"name": "all", "in": "query", "required": False, "schema": {"type": "string", "enum": ["0", "1"]},
         "description": "1: retired ones too"}]}},
    "/api/v1/org/records/{record_id}": {"get": _op(
        "A record's hall, department, window and clerk as they were at its press",
        {"type": "object", "properties": {
            k: {"type": "string", "nullable": True} for k in (
                "record_id", "device_id", "hall_id", "hall_name", "dept_code", "dept_name", "window_id",
                "window_name", "staff_account", "staff_name")} | {
            "pressed_at_ms": {"type": "integer"}, "binding_id": {"type": "integer", "nullable": True}}},
        404, params=("record_id",))},
    "/api/v1/org/halls": {"post": _op("Add a hall", _HALL, 400, 404, 409, status=201, body={
        **_HALL_IN, "required": ["hall_id", "name", "kind"],
        "properties": {**_HALL_IN["properties"],
                       "hall_id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}$"}}})},
    "/api/v1/org/halls/{hall_id}": {"patch": _op(
        "Rename, move (parent), re-kind or re-time a hall", _HALL, 400, 404, 409, body=_HALL_IN,
        params=("hall_id",))},
    "/api/v1/org/halls/{hall_id}/retire": {"post": _op(
        "Retire a hall (kept; refused while it has windows, devices, departments or halls)", _HALL, 404, 409,
        params=("hall_id",))},
    "/api/v1/org/departments": {"post": _op("Add a department", _OBJ, 400, 404, 409, status=201, body={
        "type": "object", "required": ["code", "name"], "additionalProperties": False,
        "properties": {"code": _USCC, "name": {"type": "string", "maxLength": 64},
                       "hall": {"type": "string"}}})},
    "/api/v1/org/departments/{code}": {"patch": _op(
        "Rename or move (hall) a department", _OBJ, 400, 404, 409, body={
        "type": "object", "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "hall": {"type": "string"}}}, params=("code",))},
    "/api/v1/org/departments/{code}/retire": {"post": _op(
        "Retire a department (kept; refused while it has windows)", _OBJ, 404, 409, params=("code",))},
    "/api/v1/org/windows": {"post": _op("Add a window", _OBJ, 400, 404, 409, status=201, body={
        "type": "object", "required": ["window"], "additionalProperties": False,
        "properties": {"window": {"type": "string", "maxLength": 16}, "name": {"type": "string"},
                       "dept_code": _USCC, "hall": {"type": "string"}}})},
    "/api/v1/org/windows/{window}": {"patch": _op(
        "Rename and/or move (hall, department) a window", _OBJ, 400, 404, 409,
        description="A move takes effect now; presses before it stay credited to the old place.", body={
            "type": "object", "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "hall": {"type": "string"},
                           "dept_code": {"type": "string"}}},
        params=("window",))},
    "/api/v1/org/windows/{window}/retire": {"post": _op(
        "Retire a window (kept; refused while a device is bound to it)", _OBJ, 404, 409, params=("window",))},
    "/api/v1/org/windows/{window}/history": {"get": _op(
        "Where a window has been (hall, department), oldest first", {"type": "object", "properties": {
            "places": {"type": "array", "items": _OBJ}}}, 404, params=("window",))},
    "/api/v1/org/staff": {"post": _op("Add a clerk account", _OBJ, 400, 409, status=201, body={
        "type": "object", "required": ["account", "name"], "additionalProperties": False,
        "properties": {"account": {"type": "string", "maxLength": 64},
                       "name": {"type": "string", "maxLength": 64}, "dept_code": _USCC}})},
    "/api/v1/org/staff/{account}": {"patch": _op("Rename a clerk or move them to another department", _OBJ,
                                                 400, 404, 409, body={
        "type": "object", "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "dept_code": {"type": "string"}}}, params=("account",))},
    "/api/v1/org/staff/{account}/retire": {"post": _op(
        "Retire a clerk account (kept; refused while bound to a device)", _OBJ, 404, 409,
        params=("account",))},
    "/api/v1/org/devices/{device}/hall": {"put": _op("Put a device in a hall", _OBJ, 400, 404, 409, body={
        "type": "object", "required": ["hall"], "additionalProperties": False,
        "properties": {"hall": {"type": "string"}}}, params=("device",))},
}
