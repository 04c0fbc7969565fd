"""The QR channel over HTTP (issue 19): the admin routes, the receipt QR of an invitation, and
the public rating page under /q/ (gateway/qr/page.py), a thin layer over gateway.qr.service.

Admin token: `POST /api/v1/qr/bindings` (bind a window's QR code to a clerk: QR-only windows),
`DELETE /api/v1/qr/bindings/{window}`, `GET /api/v1/qr/plates` (?all=1 with revoked ones),
`GET /api/v1/qr/windows/{window}/plate?format=pdf|png|svg&size=A4|A5` (the window's plate file,
issued on first request; new=1 replaces it), `POST /api/v1/qr/plates/{id}/revoke`.
Window token: `GET /api/v1/invitations/{id}/qr` (the receipt link as JSON),
`GET /api/v1/invitations/{id}/qr.svg|qr.png` (its QR code to print).
The routes are always there; without [qr] they answer 404 qr_off.
Added to the app with `add_routes(app, service)`, to the OpenAPI document with `openapi(spec)`.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.bindings import check_text
from gateway.errors import BadInput, NotFound

if TYPE_CHECKING:   # the QR modules load only with [qr] (nothing more on a plain gateway's start)
    from gateway.qr.service import QrService

SERVICE_KEY: web.AppKey[QrService | None] = web.AppKey("qr")
PAGE_KEY: web.AppKey[Any] = web.AppKey("qr_page")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTENT_TYPES = {"pdf": "application/pdf", "png": "image/png", "svg": "image/svg+xml"}


def _svc(request: web.Request) -> QrService:
    svc = request.app[SERVICE_KEY]
    if svc is None:
        raise NotFound("the QR channel is off: add [qr] to the gateway's config (docs/qr.md)", "qr_off")
    return svc


async def _body(request: web.Request, allowed: set[str]) -> tuple[dict[str, Any], str]:
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


def _change_view(change: Any) -> dict[str, Any]:
    return {
        "binding": change.created.as_dict() if change.created is not None else None,
        "closed": [b.as_dict() for b in change.closed],
        "unchanged": change.unchanged,
        "cancelled_invitations": [i for i, _ in change.cancelled_invitations],
    }


async def post_binding(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"window", "staff_account", "force"})
    for k in ("window", "staff_account"):
        if not isinstance(body.get(k), str):
            raise BadInput("%s is required (a string)" % k, "missing_field")
    force = body.get("force", False)
    if type(force) is not bool:
        raise BadInput("force must be true or false")
    change = await _svc(request).bind(body["window"], body["staff_account"], actor, force)
    return web.json_response(_change_view(change), status=200 if change.unchanged else 201)


async def delete_binding(request: web.Request) -> web.Response:
    from gateway.api.app import require

    actor = require(request, "admin")
    who = request.query.get("actor")
    if who:
        actor = "%s (%s)" % (actor, check_text("actor", who, 1, 64))
    change = await _svc(request).unbind(request.match_info["window"], actor)
    return web.json_response(_change_view(change))


async def get_plates(request: web.Request) -> web.Response:
    from gateway.api.app import require

    require(request, "admin")
    every = request.query.get("all", "0") in ("1", "true", "yes")
    return web.json_response({"plates": await _svc(request).plates(every)})


async def get_plate_file(request: web.Request) -> web.Response:
    from gateway.api.app import require

    actor = require(request, "admin")
    fmt = request.query.get("format", "pdf")
    size = request.query.get("size", "A4")
    new = request.query.get("new", "0") in ("1", "true", "yes")
    plate, data = await _svc(request).render_plate(request.match_info["window"], fmt, size, actor, new)
    name = "plate-%s-%s.%s" % (
        plate.window_id.encode("utf-8").hex() if not plate.window_id.isascii() else plate.window_id,
        plate.id,
        fmt,
    )
    return web.Response(
        body=data,
        content_type=CONTENT_TYPES.get(fmt, "application/octet-stream"),
        headers={"Content-Disposition": 'attachment; filename="%s"' % name, "X-Plate-Id": plate.id},
    )


async def post_revoke(request: web.Request) -> web.Response:
    body, actor = await _body(request, {"reason"})
    reason = body.get("reason")
    if not isinstance(reason, str):
        raise BadInput(
            "reason is required (a string: why, e.g. 'photographed and posted online')", "missing_field"
        )
    plate = await _svc(request).revoke(request.match_info["plate_id"], actor, reason)
    return web.json_response(plate.as_dict())


async def get_link(request: web.Request) -> web.Response:
    from gateway.api.app import require

    require(request, "window")
    return web.json_response(await _svc(request).case_link(request.match_info["inv_id"]))


async def get_link_image(request: web.Request) -> web.Response:
    """The receipt's QR code: SVG (scales to any printer) or PNG (?scale= pixels per module)."""
    import segno

    from gateway.api.app import require

    require(request, "window")
    link = await _svc(request).case_link(request.match_info["inv_id"])
    qr = segno.make_qr(link["url"], error="m")
    buf = io.BytesIO()
    if request.match_info["fmt"] == "svg":
        qr.save(buf, kind="svg", scale=4, border=4, xmldecl=False, svgns=True)
        return web.Response(body=buf.getvalue(), content_type="image/svg+xml")
    try:
        scale = int(request.query.get("scale", "8"))
    except ValueError:
        raise BadInput("scale must be an integer", "bad_scale") from None
    if not 1 <= scale <= 40:
        raise BadInput("scale must be in 1..40", "bad_scale")
    qr.save(buf, kind="png", scale=scale, border=4)
    return web.Response(body=buf.getvalue(), content_type="image/png")


def receipt_qr(svc: QrService, inv: Any) -> dict[str, Any]:
    """The `qr` part of an invitation's answer: the link, until when it rates, and its code as a
    small PNG data URI (a receipt printer may take it as it is, or fetch qr.svg to scale)."""
    import segno

    view = svc.link_view(inv)
    view["png"] = segno.make_qr(view["url"], error="m").png_data_uri(scale=4, border=4)
    return view


# ---- the public page (no token: its own checks, gateway/qr/page.py) ----------------------------


def _page_handler(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        page = request.app[PAGE_KEY]
        if page is None:
            raise web.HTTPNotFound()
        h: Handler = getattr(page, name)
        return await h(request)

    return handler


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/api/v1/qr/bindings", post_binding),
    ("DELETE", "/api/v1/qr/bindings/{window}", delete_binding),
    ("GET", "/api/v1/qr/plates", get_plates),
    ("GET", "/api/v1/qr/windows/{window}/plate", get_plate_file),
    ("POST", "/api/v1/qr/plates/{plate_id}/revoke", post_revoke),
    ("GET", "/api/v1/invitations/{inv_id}/qr", get_link),
    ("GET", "/api/v1/invitations/{inv_id}/qr.{fmt:svg|png}", get_link_image),
    ("GET", "/q/p/{token}", _page_handler("get_plate")),
    ("POST", "/q/p/{token}", _page_handler("post_plate")),
    ("GET", "/q/c/{token}", _page_handler("get_case")),
    ("POST", "/q/c/{token}", _page_handler("post_case")),
]


def add_routes(app: web.Application, service: QrService | None) -> None:
    app[SERVICE_KEY] = service
    if service is not None:
        from gateway.qr.page import PublicPage  # Jinja2 is imported only with [qr]

        app[PAGE_KEY] = PublicPage(service)
    else:
        app[PAGE_KEY] = None
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)


# ---- OpenAPI ---------------------------------------------------------------------------------


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = {"$ref": "#/components/responses/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERR for c in codes}


def openapi(spec: dict[str, Any]) -> None:
    """Add the QR paths and schemas to the OpenAPI document."""
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]
    window: list[dict[str, list[str]]] = [{"windowToken": []}, {"adminToken": []}]
    inv = {"name": "inv_id", "in": "path", "required": True, "schema": {"type": "string"}}
    win = {"name": "window", "in": "path", "required": True, "schema": {"type": "string"}}
    token = {
        "name": "token",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "<subject>.<signature> (docs/qr.md)",
    }
    plate_ref = {"$ref": "#/components/schemas/QrPlate"}
    html = {
        "description": "the page (Chinese, HTML)",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    refusal = {
        "description": "a refusal page (Chinese, HTML): 400 form, 403 cross-origin, 404 unknown or "
        "forged code, 409 used, 410 revoked / out of use / expired, 429 rate limited",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
    form = {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["form", "grade"],
                    "properties": {
                        "form": {
                            "type": "string",
                            "description": "the form token of the page (one-time id, CSRF)",
                        },
                        "purpose": {"type": "string", "enum": ["first", "follow_up"]},
                        "grade": {"type": "string", "enum": ["vs", "s", "bs", "d", "vd"]},
                        "tag_d": {"type": "array", "items": {"type": "string"}},
                        "tag_vd": {"type": "array", "items": {"type": "string"}},
                        "text": {"type": "string", "maxLength": 500},
                    },
                }
            }
        },
    }
    public = {"tags": ["public rating page"], "security": []}
    spec["paths"].update(
        {
            "/api/v1/qr/bindings": {
                "post": {
                    "summary": "Bind a window's QR code to a clerk (a window without an evaluator)",
                    "description": "The window's QR point is bound like a device (history, one active "
                    "binding per window and clerk; force=true moves them, an evaluator moved off gets "
                    "`unpaired`).",
                    "security": admin,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["window", "staff_account"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "window": {"type": "string"},
                                        "staff_account": {"type": "string"},
                                        "force": {"type": "boolean"},
                                        "actor": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"type": "object"}, "bound"),
                        "200": _json({"type": "object"}, "as before"),
                        **_errors(400, 401, 404, 409),
                    },
                }
            },
            "/api/v1/qr/bindings/{window}": {
                "delete": {
                    "summary": "Unbind a window's QR code",
                    "security": admin,
                    "parameters": [
                        win,
                        {"name": "actor", "in": "query", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {"200": _json({"type": "object"}, "unbound"), **_errors(401, 404)},
                }
            },
            "/api/v1/qr/plates": {
                "get": {
                    "summary": "Plates with their state (active; inactive: the clerk left; revoked)",
                    "security": admin,
                    "parameters": [
                        {
                            "name": "all",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["0", "1"]},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"plates": {"type": "array", "items": plate_ref}},
                            },
                            "plates",
                        ),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/qr/windows/{window}/plate": {
                "get": {
                    "summary": "The printable plate of a window's current clerk (issued on first request)",
                    "security": admin,
                    "parameters": [
                        win,
                        {
                            "name": "format",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["pdf", "png", "svg"], "default": "pdf"},
                        },
                        {
                            "name": "size",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["A4", "A5"], "default": "A4"},
                        },
                        {
                            "name": "new",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["0", "1"]},
                            "description": "1: a new code, the old plates of this clerk revoked",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the plate file (header X-Plate-Id)",
                            "content": {
                                t: {"schema": {"type": "string", "format": "binary"}}
                                for t in CONTENT_TYPES.values()
                            },
                        },
                        **_errors(400, 401, 404, 409),
                    },
                }
            },
            "/api/v1/qr/plates/{plate_id}/revoke": {
                "post": {
                    "summary": "Revoke a plate (leaked, lost): its code is refused from now on",
                    "security": admin,
                    "parameters": [
                        {"name": "plate_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["reason"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "reason": {"type": "string", "maxLength": 200},
                                        "actor": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {"200": _json(plate_ref, "revoked"), **_errors(400, 401, 404, 409)},
                }
            },
            "/api/v1/invitations/{inv_id}/qr": {
                "get": {
                    "summary": "The receipt link of an invitation (one-time, signed, expiring)",
                    "security": window,
                    "parameters": [inv],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/ReceiptLink"}, "the link"),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/invitations/{inv_id}/qr.{fmt}": {
                "get": {
                    "summary": "The receipt link's QR code to print (svg, or png with ?scale=1..40)",
                    "security": window,
                    "parameters": [
                        inv,
                        {
                            "name": "fmt",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": ["svg", "png"]},
                        },
                        {
                            "name": "scale",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 40, "default": 8},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the QR code",
                            "content": {
                                "image/svg+xml": {"schema": {"type": "string"}},
                                "image/png": {"schema": {"type": "string", "format": "binary"}},
                            },
                        },
                        **_errors(400, 401, 404),
                    },
                }
            },
            "/q/p/{token}": {
                "get": {
                    **public,
                    "summary": "A plate's rating page",
                    "parameters": [token],
                    "responses": {"200": html, "4XX": refusal},
                },
                "post": {
                    **public,
                    "summary": "A rating through a plate",
                    "parameters": [token],
                    "requestBody": form,
                    "responses": {"200": html, "4XX": refusal},
                },
            },
            "/q/c/{token}": {
                "get": {
                    **public,
                    "summary": "A receipt's rating page (first rating, then follow-up)",
                    "parameters": [token],
                    "responses": {"200": html, "4XX": refusal},
                },
                "post": {
                    **public,
                    "summary": "A rating through a receipt link",
                    "parameters": [token],
                    "requestBody": form,
                    "responses": {"200": html, "4XX": refusal},
                },
            },
        }
    )
    schemas = spec["components"]["schemas"]
    schemas["QrPlate"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "kid": {"type": "integer"},
            "window_id": {"type": "string"},
            "staff_account": {"type": "string"},
            "binding_id": {"type": "integer"},
            "issued_ms": {"type": "integer"},
            "issued_by": {"type": "string"},
            "revoked_ms": {"type": "integer", "nullable": True},
            "revoked_by": {"type": "string", "nullable": True},
            "revoke_reason": {"type": "string", "nullable": True},
            "state": {"type": "string", "enum": ["active", "inactive", "revoked"]},
            "ratings": {"type": "integer"},
        },
    }
    schemas["ReceiptLink"] = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "what the receipt's QR code carries"},
            "valid_until_ms": {"type": "integer", "description": "the first rating is taken until then"},
            "valid_until": {"type": "string", "description": "the same, local time with its offset"},
            "receipt": {"type": "boolean"},
            "png": {
                "type": "string",
                "description": "data:image/png;base64,... (in the invitation's answer)",
            },
        },
    }
    schemas["InvitationRequest"]["properties"]["receipt"] = {
        "type": "boolean",
        "default": False,
        "description": "print the case's QR link on the 办件 receipt instead of showing it on the evaluator "
        "(the QR channel, docs/qr.md): valid [qr] receipt_valid_min",
    }
    schemas["InvitationCreated"]["properties"]["qr"] = {
        "$ref": "#/components/schemas/ReceiptLink",
        "description": "with [qr]: the case's rating link (receipt or a display device)",
    }
