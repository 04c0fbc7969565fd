"""The gateway's local HTTP API (aiohttp): invitations for the window system, device
registration and bindings for hall admin tools, and its OpenAPI description.

Auth: `Authorization: Bearer <token>`. The window token may use /api/v1/invitations; the
admin token may use everything. Every error is JSON {"error": <stable code>, "message": ...}
with a 4xx status (5xx only for a bug, logged with its traceback, never sent).
Device commands are sent after the database commit; a command that cannot be sent does not
undo the change: the device receives its state at its next hello (state_for_device).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import bindings, invitations
from gateway.api import complaints as complaints_api
from gateway.api import guard
from gateway.api import qr as qr_api
from gateway.api.openapi import openapi_spec
from gateway.api.settings import HttpSettings
from gateway.bindings import Command, SendCommand
from gateway.clock import now_ms
from gateway.complaints import ComplaintService
from gateway.config import Config
from gateway.console.settings import ConsoleSettings
from gateway.devices import DeviceService, device_service
from gateway.errors import BadInput, Conflict, DomainError, NotFound, Unavailable
from gateway.store import Store
from gateway.workdays import WorkCalendar

if TYPE_CHECKING:
    from gateway.qr.service import QrService

log = logging.getLogger("gateway.api")

MAX_BODY = 16 * 1024

STORE_KEY = web.AppKey("store", Store)
DEVICES_KEY = web.AppKey("devices", DeviceService)
CFG_KEY = web.AppKey("cfg", Config)
HTTP_KEY = web.AppKey("http", HttpSettings)
SEND_KEY: web.AppKey[SendCommand] = web.AppKey("send")
RULES_KEY = web.AppKey("rules", invitations.InvitationRules)
CLOCK_KEY: web.AppKey[Callable[[], int]] = web.AppKey("clock")
FAILED_TOKENS_KEY = web.AppKey("failed_tokens", guard.FailedTokens)
CALENDAR_KEY = web.AppKey("calendar", WorkCalendar)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


# Domain errors by kind -> HTTP status (the domain knows nothing of HTTP).
STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (BadInput, 400), (NotFound, 404), (Conflict, 409), (Unavailable, 502))


class ApiError(DomainError):
    """An HTTP-level refusal (auth, body) with its status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code)
        self.http_status = status


def http_status(e: DomainError) -> int:
    if isinstance(e, ApiError):
        return e.http_status
    return next((st for cls, st in STATUS if isinstance(e, cls)), 400)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        guard.check_url(request)
        return await handler(request)
    except guard.GuardError as e:
        resp = error_response(e.http_status, e.code, str(e))
        resp.headers.update(e.headers)
        return resp
    except DomainError as e:
        return error_response(http_status(e), e.code, str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(e.status, _HTTP_CODES.get(e.status, "http_error"), e.reason)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error (logged on the gateway)")


def _matches(given: str, configured: str) -> bool:
    return bool(configured) and hmac.compare_digest(given.encode(), configured.encode())


def require(request: web.Request, role: str) -> str:
    """Check the bearer token for role "window" (window or admin token) or "admin";
    returns the audit actor name."""
    http = request.app[HTTP_KEY]
    failed = request.app[FAILED_TOKENS_KEY]
    addr = request.remote or "?"
    failed.check(addr)  # 429 while this address has too many wrong tokens
    given = guard.bearer_token(request)
    if given and _matches(given, http.admin_token):
        return "api:admin"
    if given and role == "window" and _matches(given, http.window_token):
        return "api:window"
    failed.fail(addr)
    raise ApiError(401, "unauthorized", "bad token for this endpoint")


async def _json_body(request: web.Request) -> Any:
    return await guard.json_body(request, MAX_BODY)


async def _send_all(request: web.Request, commands: list[tuple[str, Command]]) -> bool:
    """Send commands in order; False if any failed (the device catches up at its hello)."""
    send = request.app[SEND_KEY]
    ok = True
    for device, (t, fields) in commands:
        try:
            await send(device, t, fields)
        except Exception as e:  # noqa: BLE001 - offline device / broker down is not an API error
            log.warning("command %s to %s not sent: %s", t, device, e)
            ok = False
    return ok


# ---- invitations -------------------------------------------------------------------------

async def post_invitation(request: web.Request) -> web.Response:
    actor = require(request, "window")
    req = invitations.InvitationRequest.from_json(await _json_body(request))
    store = request.app[STORE_KEY]
    out = await invitations.create(store, req, actor, request.app[RULES_KEY], at_ms=request.app[CLOCK_KEY](),
                                   calendar=request.app[CALENDAR_KEY])
    sent = await _send_all(request, out.commands) if out.commands else True
    body: dict[str, Any] = {
        "invitation_id": out.invitation.id, "device_id": out.invitation.device_id,
        "status": out.invitation.status, "window": out.invitation.window_id,
        "assess_number": out.invitation.assess_number,
        "staff_account": out.invitation.staff_account, "expires_ms": out.invitation.expires_ms,
        "superseded": out.superseded or [], "sent": sent,
    }
    if not sent:
        body["note"] = "device not reachable now: it receives the invitation when it reconnects"
    qr = request.app[qr_api.SERVICE_KEY]
    if qr is not None:
        body["qr"] = qr_api.receipt_qr(qr, out.invitation)
        body["receipt"] = out.invitation.receipt
    return web.json_response(body, status=201 if out.created else 200)


async def get_invitation(request: web.Request) -> web.Response:
    require(request, "window")
    store = request.app[STORE_KEY]
    # Expire lazily too, so a status read never shows an overdue invitation as pending.
    await invitations.expire_due(store, request.app[CLOCK_KEY]())
    inv = await invitations.get_invitation(store, request.match_info["inv_id"])
    return web.json_response(inv.public())


async def list_invitations(request: web.Request) -> web.Response:
    require(request, "window")
    store = request.app[STORE_KEY]
    await invitations.expire_due(store, request.app[CLOCK_KEY]())
    try:
        limit = int(request.query.get("limit", "1000"))
    except ValueError:
        raise BadInput("limit must be an integer", "bad_limit") from None
    if not 1 <= limit <= 10000:
        raise BadInput("limit must be in 1..10000", "bad_limit")
    rows = await invitations.list_invitations(store, request.query.get("status"), limit=limit)
    return web.json_response({"invitations": [i.public() for i in rows]})


async def delete_invitation(request: web.Request) -> web.Response:
    actor = require(request, "window")
    store = request.app[STORE_KEY]
    await invitations.expire_due(store, request.app[CLOCK_KEY]())
    out = await invitations.cancel(store, request.match_info["inv_id"], actor, at_ms=request.app[CLOCK_KEY]())
    sent = await _send_all(request, out.commands)
    return web.json_response({**out.invitation.public(), "sent": sent})


# ---- devices and bindings (admin) ----------------------------------------------------------

async def post_device(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    unknown = sorted(set(body) - {"id", "secret", "broker_password", "fw"})
    if unknown:
        raise BadInput("unknown field %s" % unknown[0], "unknown_field")
    for k in ("id", "secret", "broker_password"):
        if not isinstance(body.get(k), str):
            raise BadInput("%s is required (a string)" % k, "missing_field")
    fw = body.get("fw")
    if fw is not None and (not isinstance(fw, str) or len(fw) > 16):
        raise BadInput("fw must be a string of at most 16 characters")
    created = await request.app[DEVICES_KEY].register(body["id"], body["secret"], body["broker_password"],
                                                      fw, actor)
    return web.json_response({"id": body["id"], "created": created}, status=201 if created else 200)


async def post_binding(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    unknown = sorted(set(body) - {"device", "window", "staff_account", "force", "actor"})
    if unknown:
        raise BadInput("unknown field %s" % unknown[0], "unknown_field")
    for k in ("device", "window", "staff_account"):
        if not isinstance(body.get(k), str):
            raise BadInput("%s is required (a string)" % k, "missing_field")
    force = body.get("force", False)
    if type(force) is not bool:
        raise BadInput("force must be true or false")
    who = body.get("actor")
    if who is not None:
        actor = "%s (%s)" % (actor, bindings.check_text("actor", who, 1, 64))
    store = request.app[STORE_KEY]
    change = await bindings.pair(store, body["device"], body["window"], body["staff_account"], actor,
                                 force=force)
    unreachable = [] if change.unchanged else await bindings.on_binding_change(
        store, request.app[SEND_KEY], change)
    assert change.created is not None
    return web.json_response({
        "binding": change.created.as_dict(), "closed": [b.as_dict() for b in change.closed],
        "unchanged": change.unchanged, "cancelled_invitations": [i for i, _ in change.cancelled_invitations],
        "notified": [d for d in change.devices if d not in unreachable], "unreachable": unreachable,
    }, status=200 if change.unchanged else 201)


async def delete_binding(request: web.Request) -> web.Response:
    actor = require(request, "admin")
    who = request.query.get("actor")
    if who:
        actor = "%s (%s)" % (actor, bindings.check_text("actor", who, 1, 64))
    store = request.app[STORE_KEY]
    change = await bindings.unpair(store, request.match_info["device"], actor)
    unreachable = await bindings.on_binding_change(store, request.app[SEND_KEY], change)
    return web.json_response({
        "closed": [b.as_dict() for b in change.closed],
        "cancelled_invitations": [i for i, _ in change.cancelled_invitations],
        "notified": [d for d in change.devices if d not in unreachable], "unreachable": unreachable,
    })


async def get_bindings(request: web.Request) -> web.Response:
    require(request, "admin")
    history = request.query.get("history", "0") in ("1", "true", "yes")
    rows = await bindings.list_bindings(request.app[STORE_KEY], history)
    return web.json_response({"bindings": [b.as_dict() for b in rows]})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_spec())


# ---- app -----------------------------------------------------------------------------------

ROUTES: list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]] = [
    ("POST", "/api/v1/invitations", post_invitation),
    ("GET", "/api/v1/invitations", list_invitations),
    ("GET", "/api/v1/invitations/{inv_id}", get_invitation),
    ("DELETE", "/api/v1/invitations/{inv_id}", delete_invitation),
    ("POST", "/api/v1/devices", post_device),
    ("POST", "/api/v1/bindings", post_binding),
    ("GET", "/api/v1/bindings", get_bindings),
    ("DELETE", "/api/v1/bindings/{device}", delete_binding),
    ("GET", "/api/openapi.json", get_openapi),
]


def make_app(store: Store, cfg: Config, send_command: SendCommand, *,
             clock: Callable[[], int] = now_ms, devices: DeviceService | None = None,
             http: HttpSettings | None = None, complaints: ComplaintService | None = None,
             qr: QrService | None = None, console: bool | None = None) -> web.Application:
    """The API app over the services it is handed (gateway.service wires them; a test may
    let it build the device service from the config). The web console joins it at `/` when
    [console] is enabled (console=None: as configured)."""
    app = web.Application(middlewares=[errors_as_json], client_max_size=MAX_BODY)
    app[CFG_KEY] = cfg
    app[HTTP_KEY] = http = http or HttpSettings.from_config(cfg)
    app[FAILED_TOKENS_KEY] = guard.FailedTokens(http.auth_fail_limit, http.auth_fail_window_s)
    app[SEND_KEY] = send_command
    app[RULES_KEY] = invitations.InvitationRules.from_config(cfg)
    app[CLOCK_KEY] = clock
    app[STORE_KEY] = store
    app[DEVICES_KEY] = devices or device_service(store, cfg)
    app[CALENDAR_KEY] = WorkCalendar(cfg.sections.get("calendar"))
    from gateway.api import district as district_api  # lazy: they build on this module's helpers
    from gateway.api import org as org_api
    for method, path, handler in ROUTES + org_api.ROUTES + district_api.ROUTES:
        app.router.add_route(method, path, handler)
    complaints_api.add_routes(app, complaints or ComplaintService.from_config(store, cfg, clock))
    qr_api.add_routes(app, qr)
    console_settings = ConsoleSettings.from_config(cfg)
    if console if console is not None else console_settings.enabled:
        from gateway.console.setup import ConsoleDeps, setup_console  # only a console loads Jinja2
        setup_console(app, ConsoleDeps(store, cfg, console_settings, send_command, app[DEVICES_KEY], clock,
                                       cfg.sections.get("uplink")))
    return app
