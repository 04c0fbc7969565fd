"""The console's web plumbing: who is asking (sessions), what they may do (roles, scope),
anti-forgery tokens, security headers, errors as Chinese pages, and rendering.

One middleware (`console_middleware`) sits inside the API's JSON error middleware and leaves
every /api/ request alone. For every other path it: serves /login, /static/ and /healthz to
anyone; sends everyone else without a live session to /login (an htmx request gets an
`HX-Redirect`); refuses a POST whose CSRF token (form field `_csrf` or header
`X-CSRF-Token`) is not the session's, or whose Origin is another site; and turns a domain
refusal into a page in Chinese (never a traceback). Pages call the same domain services as
the CLI and the API (gateway/bindings.py, invitations.py, devices.py, reports.py,
accounts.py, uplink/state.py) through the store's units of work.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway import accounts
from gateway.accounts import Scope
from gateway.bindings import SendCommand
from gateway.config import Config
from gateway.console import labels
from gateway.console.settings import ConsoleSettings
from gateway.devices import DeviceService
from gateway.errors import BadInput, Conflict, DomainError, NotFound, Unavailable
from gateway.store import Store
from gateway.store.rows import ConsoleAccount, ConsoleSession

log = logging.getLogger("gateway.console")

HERE = Path(__file__).parent
STATIC = HERE / "static"
SESSION_COOKIE = "hcp_session"
LOGIN_COOKIE = "hcp_login"       # the login form's anti-forgery token (no session yet)
FLASH_COOKIE = "hcp_flash"
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = ("/login", "/healthz")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")

# Scripts and styles only from the gateway itself; no inline script anywhere.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ConsoleDeps:
    """What the console's pages are handed by gateway.service (via gateway.api.make_app)."""

    store: Store
    cfg: Config
    settings: ConsoleSettings
    send: SendCommand
    devices: DeviceService
    clock: Callable[[], int]
    uplink: Any = None                     # gateway.uplink.settings.UplinkSettings, or None
    throttle: AddressThrottle = field(default_factory=lambda: AddressThrottle(20, 300))


CONSOLE_KEY = web.AppKey("console", ConsoleDeps)


class AddressThrottle:
    """Failed logins per client address in a sliding window (in memory, per instance): one
    address cannot try name after name; the per-account lock-out is in the store."""

    def __init__(self, limit: int, window_s: int) -> None:
        self.limit = limit
        self.window_ms = window_s * 1000
        self._fails: dict[str, collections.deque[int]] = {}

    def _recent(self, remote: str, now: int) -> collections.deque[int]:
        q = self._fails.setdefault(remote, collections.deque())
        while q and q[0] <= now - self.window_ms:
            q.popleft()
        return q

    def blocked(self, remote: str, now: int) -> bool:
        return len(self._recent(remote, now)) >= self.limit

    def fail(self, remote: str, now: int) -> None:
        self._recent(remote, now).append(now)
        if len(self._fails) > 10000:   # bounded: forget the addresses with no recent failure
            for k in [k for k, q in self._fails.items() if not q][:5000]:
                del self._fails[k]


class Forbidden(DomainError):
    code = "forbidden"


@dataclass(frozen=True)
class Viewer:
    """The logged-in account of a request."""

    account: ConsoleAccount
    session: ConsoleSession
    token: str

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def actor(self) -> str:
        return "console:" + self.account.name

    @property
    def role(self) -> str:
        return self.account.role

    @property
    def scope(self) -> Scope:
        return Scope.of(self.account)

    def can(self, capability: str) -> bool:
        return accounts.can(self.account.role, capability)

    def require(self, capability: str) -> None:
        if not self.can(capability):
            raise Forbidden("您的角色（%s）无权执行此操作" % accounts.ROLES.get(self.role, self.role))


VIEWER_KEY = web.RequestKey("viewer", Viewer)


def deps(request: web.Request) -> ConsoleDeps:
    return request.app[CONSOLE_KEY]


def viewer(request: web.Request) -> Viewer:
    return request[VIEWER_KEY]


def remote_of(request: web.Request) -> str:
    return request.remote or ""


def is_htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


# ---- times and labels -------------------------------------------------------------------------

def fmt_time(cfg: Config, ms: int | None) -> str:
    """A time in the hall's zone, with its UTC offset: every time shown carries its zone."""
    if ms is None:
        return "—"
    t = dt.datetime.fromtimestamp(ms / 1000, tz=cfg.hall.tz)
    off = t.strftime("%z")
    return "%s %s:%s" % (t.strftime("%Y-%m-%d %H:%M:%S"), off[:3], off[3:])


def today(cfg: Config, now_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(now_ms / 1000, tz=cfg.hall.tz).date()


def day_range(cfg: Config, first: dt.date, last: dt.date) -> tuple[int, int]:
    """[start of first, end of last) in the hall's zone, epoch ms."""
    lo = dt.datetime.combine(first, dt.time(), tzinfo=cfg.hall.tz)
    hi = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=cfg.hall.tz)
    return int(lo.timestamp() * 1000), int(hi.timestamp() * 1000)


def parse_date(text: str | None, what: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadInput("%s应为 YYYY-MM-DD 格式的日期" % what, "bad_date") from None


def zone_label(cfg: Config) -> str:
    off = dt.datetime.now(tz=cfg.hall.tz).strftime("%z")
    return "%s（UTC%s:%s）" % (cfg.hall.timezone, off[:3], off[3:])


# ---- rendering -------------------------------------------------------------------------------

def _asset_versions() -> dict[str, str]:
    out = {}
    for p in STATIC.rglob("*"):
        if p.is_file():
            out[p.relative_to(STATIC).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()[:10]
    return out


_VERSIONS: dict[str, str] = {}


def static_url(name: str) -> str:
    """/static/<name>?v=<content hash>: cached for long, refreshed when the file changes."""
    if not _VERSIONS:
        _VERSIONS.update(_asset_versions())
    return "/static/%s?v=%s" % (name, _VERSIONS.get(name, "0"))


def setup_templates(app: web.Application) -> jinja2.Environment:
    env = aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("gateway.console", "templates"),
                               autoescape=jinja2.select_autoescape(["html"], default=True),
                               default_helpers=False, undefined=jinja2.StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
    env.globals.update(static=static_url, GRADE=labels.GRADE, KIND=labels.KIND, FLAG=labels.FLAG,
                       INV_STATUS=labels.INV_STATUS, UPLINK_STATUS=labels.UPLINK_STATUS, ROLES=accounts.ROLES,
                       flag_list=labels.flag_list, pct=labels.pct, action_label=labels.action_label,
                       detail_items=labels.detail_items)
    return env


def _read_flash(request: web.Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(urllib.parse.unquote(raw))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("k") not in ("ok", "error", "warn") or not isinstance(
            data.get("m"), str):
        return None
    return {"kind": data["k"], "text": data["m"][:500]}


def render(request: web.Request, template: str, ctx: dict[str, Any] | None = None,
           status: int = 200) -> web.Response:
    d = deps(request)
    v: Viewer | None = request.get(VIEWER_KEY)
    base: dict[str, Any] = {
        "title": d.settings.title, "hall": d.cfg.hall, "viewer": v, "zone": zone_label(d.cfg),
        "csrf": v.session.csrf if v else "", "flash": _read_flash(request), "path": request.path,
        "t": lambda ms: fmt_time(d.cfg, ms), "nav": nav_for(v) if v else [], "error": None,
        "refresh_ms": d.settings.refresh_ms,
    }
    base.update(ctx or {})
    resp = aiohttp_jinja2.render_template(template, request, base, status=status)
    if base["flash"] is not None:
        resp.del_cookie(FLASH_COOKIE, path="/")
    return resp


def redirect(request: web.Request, location: str, flash: tuple[str, str] | None = None) -> web.Response:
    """303 See Other (after a POST), optionally with a one-time message for the next page."""
    resp = web.Response(status=303, headers={"Location": location})
    if flash is not None:
        value = urllib.parse.quote(json.dumps({"k": flash[0], "m": flash[1]}, ensure_ascii=False))
        resp.set_cookie(FLASH_COOKIE, value, path="/", httponly=True, samesite="Strict",
                        secure=request.secure, max_age=60)
    return resp


NAV: tuple[tuple[str, str, str], ...] = (
    ("/", "总览", "dashboard"),
    ("/devices", "设备与健康", "devices.view"),
    ("/org", "窗口与人员", "devices.view"),
    ("/pairing", "一码一账号", "devices.view"),
    ("/invitations", "评价邀请", "invitations.view"),
    ("/ratings", "评价记录", "ratings.view"),
    ("/complaints", "差评工单", "complaints.view"),
    ("/bulletins", "通报", "bulletins.view"),
    ("/supervision", "监督发现", "findings.view"),
    ("/uplink", "数据上报", "uplink.view"),
    ("/audit", "操作日志", "audit.view"),
)


def nav_for(v: Viewer) -> list[tuple[str, str]]:
    return [(href, text) for href, text, cap in NAV if v.can(cap)]


# ---- the middleware ----------------------------------------------------------------------------

def _secure_headers(resp: web.StreamResponse, page: bool) -> None:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    if page:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("Cache-Control", "no-store")


def _same_origin(request: web.Request) -> bool:
    """A browser names the page's origin on every POST; a form from another site is refused
    (the CSRF token already stops it; this is the second lock)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == "%s://%s" % (request.scheme, request.host)


async def _check_csrf(request: web.Request, expected: str) -> None:
    given = request.headers.get("X-CSRF-Token")
    if given is None:
        form = await request.post()
        v = form.get("_csrf")
        given = v if isinstance(v, str) else ""
    if not _same_origin(request) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("页面已过期或请求来源不明（防伪校验失败），请刷新页面后重试", "csrf")


def _to_login(request: web.Request) -> web.StreamResponse:
    if is_htmx(request):
        return web.Response(status=200, headers={"HX-Redirect": "/login"})
    nxt = request.path_qs if request.method == "GET" else "/"
    return web.Response(status=303, headers={
        "Location": "/login?" + urllib.parse.urlencode({"next": nxt}) if nxt != "/" else "/login"})


HTTP_TEXT = {404: "没有这个页面", 405: "不支持此请求方式", 413: "提交的内容过大"}
ERROR_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (Forbidden, 403), (BadInput, 400), (NotFound, 404), (Conflict, 409), (Unavailable, 502))


def error_page(request: web.Request, status: int, heading: str, text: str) -> web.Response:
    if is_htmx(request):
        # A partial refresh that failed: say so in place (htmx swaps only 2xx by default).
        return render(request, "_error.html", {"heading": heading, "text": text}, status=200)
    return render(request, "error.html", {"heading": heading, "text": text}, status=status)


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(("/api/", "/q/")):   # the API; the public QR page (gateway/qr/page.py)
        return await handler(request)
    page = not request.path.startswith(PUBLIC_PREFIXES)
    try:
        resp = await _console(request, handler)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        text = HTTP_TEXT.get(e.status, "请求无法处理")
        resp = error_page(request, e.status, "出错了（%d）" % e.status, text)
    except DomainError as e:
        status = next((st for cls, st in ERROR_STATUS if isinstance(e, cls)), 400)
        resp = error_page(request, status, "无法完成" if status != 403 else "无权限", labels.error_text(e))
    except Exception:
        log.exception("console: internal error on %s %s", request.method, request.path)
        resp = error_page(request, 500, "内部错误", "服务器内部错误，已记录在网关日志中，请联系技术人员")
    _secure_headers(resp, page)
    return resp


async def _console(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith(PUBLIC_PREFIXES) or path in PUBLIC_PATHS:
        return await handler(request)
    d = deps(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    found = await accounts.session_for(d.store, token, d.settings.rules, d.clock) if token else None
    if found is None:
        if request.method in UNSAFE and not is_htmx(request):
            # A form sent after the session ended: back to the login page, nothing done.
            return redirect(request, "/login", ("warn", "登录已过期，请重新登录；刚才的操作未执行"))
        return _to_login(request)
    session, account = found
    request[VIEWER_KEY] = Viewer(account, session, token)
    if request.method in UNSAFE:
        await _check_csrf(request, session.csrf)
    if account.must_change and path not in ("/account", "/account/password", "/logout"):
        return redirect(request, "/account", ("warn", "请先设置新密码"))
    return await handler(request)


# ---- login and logout ----------------------------------------------------------------------------

def _safe_next(nxt: str | None) -> str:
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt or nxt.startswith("/login"):
        return "/"
    return nxt


async def login_page(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    resp = render(request, "login.html", {"login_csrf": token, "next": _safe_next(request.query.get("next")),
                                          "name": ""})
    resp.set_cookie(LOGIN_COOKIE, token, path="/login", httponly=True, samesite="Strict",
                    secure=request.secure)
    return resp


async def login_post(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    given = str(form.get("_csrf", ""))
    remote = remote_of(request)
    now = d.clock()

    def again(text: str, status: int) -> web.Response:
        token = cookie or secrets.token_urlsafe(24)
        resp = render(request, "login.html", {"login_csrf": token, "next": nxt, "name": name,
                                              "error": text}, status=status)
        resp.set_cookie(LOGIN_COOKIE, token, path="/login", httponly=True, samesite="Strict",
                        secure=request.secure)
        return resp

    if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()) or not _same_origin(request):
        return again("页面已过期，请重新输入账号和密码", 403)
    if d.throttle.blocked(remote, now):
        return again("登录尝试过于频繁，请稍后再试", 429)
    if not name or not password:
        return again("请输入账号和密码", 400)
    try:
        opened = await accounts.login(d.store, name, password, remote, d.settings.rules, d.clock)
    except accounts.LoginRefused as e:
        if e.code == "bad_credentials":
            d.throttle.fail(remote, now)
        return again(str(e), 401 if e.code == "bad_credentials" else 403)
    target = "/account" if opened.account.must_change else nxt
    resp = web.Response(status=303, headers={"Location": target})
    resp.set_cookie(SESSION_COOKIE, opened.token, path="/", httponly=True, samesite="Lax",
                    secure=request.secure)
    resp.del_cookie(LOGIN_COOKIE, path="/login")
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    v = viewer(request)
    await accounts.logout(deps(request).store, v.token, v.name)
    resp = redirect(request, "/login", ("ok", "已退出登录"))
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


async def healthz(request: web.Request) -> web.Response:
    """The bare round trip (no store, no session): the console bench's baseline."""
    return web.Response(text="ok")
