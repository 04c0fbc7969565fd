"""The 差评 work orders over HTTP: `/api/v1/complaints...` (admin token), a thin layer over
gateway.complaints.ComplaintService -- the same service the CLI and the web console call.

Every action records its actor: "api:admin", or "api:admin (NAME)" when the body names the
person acting ("actor"). Errors are the API's JSON {error, message} (gateway/api/app.py).
Added to the app with `add_routes(app, service)` and to the OpenAPI document with `openapi(spec)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.bindings import check_text
from gateway.complaints import (
    APPEAL_STATES,
    DEADLINES,
    EXCLUDE_REASONS,
    INVALID_REASONS,
    REASON_SOURCES,
    STATES,
    VERDICTS,
    ComplaintService,
)
from gateway.errors import BadInput
from protocol.grades import GRADES

SERVICE_KEY = web.AppKey("complaints", ComplaintService)
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _svc(request: web.Request) -> ComplaintService:
    return request.app[SERVICE_KEY]


async def _body(request: web.Request, allowed: set[str]) -> tuple[dict[str, Any], str]:
    """The JSON object body (only `allowed` fields, plus "actor") and the actor to record."""
    from gateway.api.app import _json_body, require

    actor = require(request, "admin")
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    unknown = sorted(set(body) - allowed - {"actor"})
    if unknown:
        raise BadInput("unknown field %s" % unknown[0], "unknown_field")
    who = body.pop("actor", None)
    if who is not None:
        actor = "%s (%s)" % (actor, check_text("actor", who, 1, 64))
    return body, actor


def _str(body: dict[str, Any], key: str, required: bool = False) -> str:
    v = body.get(key, "")
    if not isinstance(v, str):
        raise BadInput("%s must be a string" % key)
    if required and not v.strip():
        raise BadInput("%s is required" % key, "missing_field")
    return v


def _opt(body: dict[str, Any], key: str) -> str | None:
    v = body.get(key)
    if v is not None and not isinstance(v, str):
        raise BadInput("%s must be a string" % key)
    return v


def _tags(body: dict[str, Any]) -> list[str]:
    v = body.get("tags", [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v) or len(v) > 32:
        raise BadInput("tags must be a list of at most 32 tag codes")
    return list(v)


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])  # the route admits digits only


def _limit(request: web.Request) -> int:
    try:
        limit = int(request.query.get("limit", "1000"))
    except ValueError:
        raise BadInput("limit must be an integer", "bad_limit") from None
    if not 1 <= limit <= 10000:
        raise BadInput("limit must be in 1..10000", "bad_limit")
    return limit


async def list_complaints(request: web.Request) -> web.Response:
    from gateway.api.app import require

    require(request, "admin")
    q = request.query
    states = [s for s in q.get("state", "").split(",") if s] or None
    open_only = q.get("open", "0") in ("1", "true", "yes")
    rows, total = await _svc(request).search(states, open_only, q.get("due") or None, limit=_limit(request))
    return web.json_response({"complaints": rows, "total": total, "hidden": total - len(rows)})


async def get_complaint(request: web.Request) -> web.Response:
    from gateway.api.app import require

    require(request, "admin")
    return web.json_response(await _svc(request).show(_id(request)))


async def _answer(request: web.Request, complaint_id: int) -> web.Response:
    return web.json_response(await _svc(request).show(complaint_id))


async def post_contact(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"note"})
    await _svc(request).contact(_id(request), actor, _str(body, "note"))
    return await _answer(request, _id(request))


async def post_verify(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"valid", "reason", "note", "complex"})
    valid, complex_ = body.get("valid"), body.get("complex", False)
    if type(valid) is not bool or type(complex_) is not bool:
        raise BadInput("valid (required) and complex must be true or false", "missing_field")
    await _svc(request).verify(_id(request), actor, valid, _opt(body, "reason"), _str(body, "note"), complex_)
    return await _answer(request, _id(request))


async def post_rectify(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"note"})
    await _svc(request).rectify(_id(request), actor, _str(body, "note"))
    return await _answer(request, _id(request))


async def post_callback(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"grade", "note", "tags", "text"})
    await _svc(request).callback(
        _id(request), actor, _str(body, "grade", True), _str(body, "note"), _tags(body), _str(body, "text")
    )
    return await _answer(request, _id(request))


async def post_close(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"note"})
    await _svc(request).close(_id(request), actor, _str(body, "note"))
    return await _answer(request, _id(request))


async def post_appeal(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"note"})
    await _svc(request).appeal(_id(request), actor, _str(body, "note"))
    return await _answer(request, _id(request))


async def post_review(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"decision", "reason", "note"})
    decision = body.get("decision")
    svc, cid = _svc(request), _id(request)
    if decision == "start":
        await svc.review_start(cid, actor, _str(body, "note"))
    elif decision in ("uphold", "overturn"):
        await svc.review_decide(cid, actor, decision == "overturn", _opt(body, "reason"), _str(body, "note"))
    else:
        raise BadInput("decision must be start, uphold or overturn", "bad_decision")
    return await _answer(request, cid)


async def post_exclude(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"reason", "note"})
    await _svc(request).exclude(_id(request), actor, _str(body, "reason", True), _str(body, "note"))
    return await _answer(request, _id(request))


async def post_reasons(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"tags", "text", "source"})
    await _svc(request).attach_reasons(
        _id(request), actor, _tags(body), _str(body, "text"), _str(body, "source") or "liaison"
    )
    return await _answer(request, _id(request))


async def list_corrections(request: web.Request) -> web.Response:
    from gateway.api.app import require

    require(request, "admin")
    statuses = [s for s in request.query.get("status", "").split(",") if s] or None
    rows, total = await _svc(request).corrections(statuses, _limit(request))
    return web.json_response({"corrections": rows, "total": total, "hidden": total - len(rows)})


async def post_correction_done(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"note"})
    return web.json_response(await _svc(request).correction_done(_id(request), actor, _str(body, "note")))


async def get_tags(request: web.Request) -> web.Response:
    from gateway.api.app import require

    require(request, "admin")
    s = _svc(request).settings
    return web.json_response(
        {
            "in_force": s.tag_version,
            "sets": {
                v: {
                    "source": ts.source,
                    **{
                        g: [{"code": t.code, "name": t.name} for t in tags] for g, tags in ts.by_grade.items()
                    },
                }
                for v, ts in s.tag_sets.items()
            },
        }
    )


_ONE = "/api/v1/complaints/{id:\\d+}"
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/v1/complaints", list_complaints),
    ("GET", _ONE, get_complaint),
    ("POST", _ONE + "/contact", post_contact),
    ("POST", _ONE + "/verify", post_verify),
    ("POST", _ONE + "/rectify", post_rectify),
    ("POST", _ONE + "/callback", post_callback),
    ("POST", _ONE + "/close", post_close),
    ("POST", _ONE + "/appeal", post_appeal),
    ("POST", _ONE + "/review", post_review),
    ("POST", _ONE + "/exclude", post_exclude),
    ("POST", _ONE + "/reasons", post_reasons),
    ("GET", "/api/v1/complaint-corrections", list_corrections),
    ("POST", "/api/v1/complaint-corrections/{id:\\d+}/done", post_correction_done),
    ("GET", "/api/v1/complaint-tags", get_tags),
]


def add_routes(app: web.Application, service: ComplaintService) -> None:
    app[SERVICE_KEY] = service
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)


# ---- OpenAPI ---------------------------------------------------------------------------------


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = {"$ref": "#/components/responses/Error"}


def _action(
    summary: str, props: dict[str, Any], required: list[str], description: str = ""
) -> dict[str, Any]:
    one = {"$ref": "#/components/schemas/Complaint"}
    return {
        "post": {
            "summary": summary,
            "description": description,
            "security": [{"adminToken": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": required,
                            "properties": {
                                **props,
                                "actor": {
                                    "type": "string",
                                    "maxLength": 64,
                                    "description": "the person acting, for the record",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(one, "the complaint after the action"),
                **{str(c): _ERR for c in (400, 401, 404, 409)},
            },
        }
    }


def openapi(spec: dict[str, Any]) -> None:
    """Add the complaint paths and schemas to the OpenAPI document."""
    note = {"type": "string", "maxLength": 1000}
    one = {"$ref": "#/components/schemas/Complaint"}
    idp = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]
    b = "/api/v1/complaints/{id}"
    spec["paths"].update(
        {
            "/api/v1/complaints": {
                "get": {
                    "summary": "差评 work orders, newest first",
                    "security": admin,
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "comma list of " + ", ".join(STATES),
                        },
                        {"name": "open", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}},
                        {
                            "name": "due",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["soon", "overdue"]},
                            "description": "only those with a deadline due soon / overdue",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "complaints": {"type": "array", "items": one},
                                    "total": {"type": "integer"},
                                    "hidden": {
                                        "type": "integer",
                                        "description": "matched but not shown (limit)",
                                    },
                                },
                            },
                            "complaints",
                        ),
                        "400": _ERR,
                        "401": _ERR,
                    },
                }
            },
            b: {
                "get": {
                    "summary": "One complaint with its deadlines, history, exclusion and corrections",
                    "security": admin,
                    "parameters": idp,
                    "responses": {"200": _json(one, "the complaint"), "401": _ERR, "404": _ERR},
                }
            },
            b + "/contact": _action(
                "The citizen was contacted (联系)",
                {"note": note},
                ["note"],
                "opened -> contacted (rectifying when already verified valid)",
            ),
            b + "/verify": _action(
                "Verification (核实)",
                {
                    "valid": {"type": "boolean"},
                    "reason": {"type": "string", "enum": list(INVALID_REASONS)},
                    "complex": {"type": "boolean", "description": "rectify within complex_days (15)"},
                    "note": note,
                },
                ["valid"],
                "valid, or not valid with a reason (closes the order); opened or contacted only",
            ),
            b + "/rectify": _action("Rectification done and reported (整改反馈)", {"note": note}, ["note"]),
            b + "/callback": _action(
                "Callback (回访): the citizen's satisfaction with the rectification",
                {
                    "grade": {"type": "string", "enum": list(GRADES)},
                    "note": note,
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "text": {"type": "string", "maxLength": 500},
                },
                ["grade"],
            ),
            b + "/close": _action("Close the work order after the callback", {"note": note}, []),
            b + "/appeal": _action(
                "The rated clerk's appeal (申诉), within appeal_days working days",
                {"note": note},
                ["note"],
                "409 appeal_too_late after the period",
            ),
            b + "/review": _action(
                "The review (复核): start it, or decide",
                {
                    "decision": {"type": "string", "enum": ["start", "uphold", "overturn"]},
                    "reason": {"type": "string", "enum": list(EXCLUDE_REASONS)},
                    "note": note,
                },
                ["decision"],
                "overturn: the rating is excluded from statistics (kept) and the platform told",
            ),
            b + "/exclude": _action(
                "Exclude the rating from statistics (never deleted)",
                {"reason": {"type": "string", "enum": list(EXCLUDE_REASONS)}, "note": note},
                ["reason", "note"],
            ),
            b + "/reasons": _action(
                "Attach the 差评's reasons: tag codes and/or free text",
                {
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "text": {"type": "string", "maxLength": 500},
                    "source": {"type": "string", "enum": list(REASON_SOURCES)},
                },
                [],
            ),
            "/api/v1/complaint-corrections": {
                "get": {
                    "summary": "What the platform must be told (exclusions, late reasons), by status",
                    "security": admin,
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "comma list: pending, sent, acked, rejected, manual, manual_done",
                        },
                        {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "responses": {"200": _json({"type": "object"}, "corrections"), "401": _ERR},
                }
            },
            "/api/v1/complaint-corrections/{id}/done": {
                "post": {
                    "summary": "A manual correction was made in the platform's back office",
                    "security": admin,
                    "parameters": idp,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"note": note, "actor": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json({"type": "object"}, "the correction"),
                        **{str(c): _ERR for c in (400, 401, 404, 409)},
                    },
                }
            },
            "/api/v1/complaint-tags": {
                "get": {
                    "summary": "The province's 差评 tag sets (evalDetail codes) by version",
                    "security": admin,
                    "responses": {"200": _json({"type": "object"}, "tag sets"), "401": _ERR},
                }
            },
        }
    )
    deadline = {
        "type": "object",
        "properties": {
            "due": {"type": "string", "nullable": True, "description": "YYYY-MM-DD 24:00+08:00 (hall zone)"},
            "due_ms": {"type": "integer", "nullable": True},
            "status": {
                "type": "string",
                "enum": ["open", "due_soon", "overdue", "met", "late", "n/a", "unknown", "expired", "used"],
            },
            "label": {"type": "string"},
        },
    }
    spec["components"]["schemas"]["Complaint"] = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "record_id": {"type": "string"},
            "case_no": {"type": "string"},
            "grade": {"type": "string", "enum": ["d", "vd"]},
            "assess_number": {"type": "integer"},
            "state": {"type": "string", "enum": list(STATES)},
            "verdict": {"type": "string", "enum": list(VERDICTS)},
            "appeal_state": {"type": "string", "enum": list(APPEAL_STATES)},
            "window_id": {"type": "string"},
            "staff_account": {"type": "string"},
            "dept_code": {"type": "string"},
            "hall_id": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "comment": {"type": "string"},
            "calendar_error": {"type": "string", "nullable": True},
            "deadlines": {"type": "object", "properties": {k: deadline for k in DEADLINES}},
            "history": {"type": "array", "items": {"type": "object"}},
        },
    }
