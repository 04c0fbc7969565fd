"""The gateway's local HTTP API (aiohttp): invitations for the window system, device
registration and bindings for hall admin tools, and its OpenAPI description.

Auth: `Authorization: Bearer <token>`. The window token may use /api/v1/invitations; the
admin token may use everything. Every error is JSON {"error": <stable code>, "message": ...}
with a 4xx status (5xx only for a bug, logged with its traceback, never sent).
Device commands are sent after the database commit; a command that cannot be sent does not
undo the change: the device receives its state at its next hello (state_for_device).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import bindings, invitations
from gateway.api import guard
from gateway.api.openapi import openapi_spec
from gateway.api.settings import HttpSettings
from gateway.bindings import AdminError, BadInput, Command, SendCommand
from gateway.config import Config
from gateway.store import devices as devices_store
from gateway.store.db import Database, open_db

log = logging.getLogger("gateway.api")

EXPIRE_EVERY_S = 1.0
MAX_BODY = 16 * 1024

DB_KEY = web.AppKey("db", Database)
CFG_KEY = web.AppKey("cfg", Config)
HTTP_KEY = web.AppKey("http", HttpSettings)
SEND_KEY: web.AppKey[SendCommand] = web.AppKey("send")
RULES_KEY = web.AppKey("rules", invitations.InvitationRules)
CLOCK_KEY: web.AppKey[Callable[[], int]] = web.AppKey("clock")
# Called after a device is (re-)registered, so the running ingest uses the new key at once.
REGISTERED_KEY: web.AppKey[Callable[[str, str], None]] = web.AppKey("registered")
FAILED_TOKENS_KEY = web.AppKey("failed_tokens", guard.FailedTokens)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class ApiError(AdminError):
    """An HTTP-level refusal (auth, body) with its status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code)
        self.http_status = status


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
    except AdminError as e:
        return error_response(e.http_status, e.code, str(e))
    except devices_store.RegistrationError as e:
        return error_response(400, "bad_registration", str(e))
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
    db = request.app[DB_KEY]
    out = await invitations.create(db, req, actor, request.app[RULES_KEY], at_ms=request.app[CLOCK_KEY]())
    sent = await _send_all(request, out.commands) if out.commands else True
    body: dict[str, Any] = {
        "invitation_id": out.invitation.id, "device_id": out.invitation.device_id,
        "status": out.invitation.status, "window": out.invitation.window_id,
        "staff_account": out.invitation.staff_account, "expires_ms": out.invitation.expires_ms,
        "superseded": out.superseded or [], "sent": sent,
    }
    if not sent:
        body["note"] = "device not reachable now: it receives the invitation when it reconnects"
    return web.json_response(body, status=201 if out.created else 200)


async def get_invitation(request: web.Request) -> web.Response:
    require(request, "window")
    db = request.app[DB_KEY]
    # Expire lazily too, so a status read never shows an overdue invitation as pending.
    await invitations.expire_due(db, request.app[CLOCK_KEY]())
    inv = await invitations.get_invitation(db.conn, request.match_info["inv_id"])
    return web.json_response(inv.public())


async def list_invitations(request: web.Request) -> web.Response:
    require(request, "window")
    db = request.app[DB_KEY]
    await invitations.expire_due(db, request.app[CLOCK_KEY]())
    try:
        limit = int(request.query.get("limit", "1000"))
    except ValueError:
        raise BadInput("limit must be an integer", "bad_limit") from None
    if not 1 <= limit <= 10000:
        raise BadInput("limit must be in 1..10000", "bad_limit")
    rows = await invitations.list_invitations(db.conn, request.query.get("status"), limit=limit)
    return web.json_response({"invitations": [i.public() for i in rows]})


async def delete_invitation(request: web.Request) -> web.Response:
    actor = require(request, "window")
    db = request.app[DB_KEY]
    await invitations.expire_due(db, request.app[CLOCK_KEY]())
    out = await invitations.cancel(db, request.match_info["inv_id"], actor, at_ms=request.app[CLOCK_KEY]())
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
    db = request.app[DB_KEY]
    existed = await devices_store.get_device(db, body["id"]) is not None
    await devices_store.register_device(db, request.app[CFG_KEY], body["id"], body["secret"],
                                        body["broker_password"], fw, actor)
    request.app[REGISTERED_KEY](body["id"], body["secret"])
    return web.json_response({"id": body["id"], "created": not existed}, status=200 if existed else 201)


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
    db = request.app[DB_KEY]
    change = await bindings.pair(db, body["device"], body["window"], body["staff_account"], actor,
                                 force=force)
    unreachable = [] if change.unchanged else await bindings.on_binding_change(
        db.conn, request.app[SEND_KEY], change)
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
    db = request.app[DB_KEY]
    change = await bindings.unpair(db, request.match_info["device"], actor)
    unreachable = await bindings.on_binding_change(db.conn, request.app[SEND_KEY], change)
    return web.json_response({
        "closed": [b.as_dict() for b in change.closed],
        "cancelled_invitations": [i for i, _ in change.cancelled_invitations],
        "notified": [d for d in change.devices if d not in unreachable], "unreachable": unreachable,
    })


async def get_bindings(request: web.Request) -> web.Response:
    require(request, "admin")
    history = request.query.get("history", "0") in ("1", "true", "yes")
    rows = await bindings.list_bindings(request.app[DB_KEY].conn, history)
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


async def _expire_loop(app: web.Application, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            done = await invitations.expire_due(app[DB_KEY], app[CLOCK_KEY]())
            if done:
                log.info("expired %d invitation(s): %s", len(done), ", ".join(done))
        except Exception:
            log.exception("invitation expiry failed; will retry")


def make_app(conn_or_db: Database | str | Path, cfg: Config, send_command: SendCommand, *,
             clock: Callable[[], int] = bindings.now_ms,
             expire_every_s: float = EXPIRE_EVERY_S,
             on_registered: Callable[[str, str], None] | None = None) -> web.Application:
    """The API app. Given a path, it opens (and closes) its own connection to the store,
    which keeps its transactions apart from the ingest's; given a Database, it shares it."""
    app = web.Application(middlewares=[errors_as_json], client_max_size=MAX_BODY)
    app[CFG_KEY] = cfg
    app[HTTP_KEY] = http = HttpSettings.from_config(cfg)
    app[FAILED_TOKENS_KEY] = guard.FailedTokens(http.auth_fail_limit, http.auth_fail_window_s)
    app[SEND_KEY] = send_command
    app[RULES_KEY] = invitations.InvitationRules.from_config(cfg)
    app[CLOCK_KEY] = clock
    app[REGISTERED_KEY] = on_registered or (lambda device_id, secret_hex: None)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)

    async def lifecycle(app: web.Application) -> Any:
        own = not isinstance(conn_or_db, Database)
        app[DB_KEY] = conn_or_db if isinstance(conn_or_db, Database) else await open_db(conn_or_db)
        task = asyncio.create_task(_expire_loop(app, expire_every_s), name="invitation-expiry")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if own:
            await app[DB_KEY].close()

    app.cleanup_ctx.append(lifecycle)
    return app
