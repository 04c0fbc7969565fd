"""The public rating page (issue 19): what a phone opens from a plate or a receipt, under /q/.

    GET  /q/p/<token>   a window's plate: the clerk, the case waiting at the window if any
    POST /q/p/<token>   a rating
    GET  /q/c/<token>   a case's receipt link: its first rating, then its follow-up
    POST /q/c/<token>   a rating (purpose first | follow_up)

No login, no cookie, no script, nothing fetched from anywhere: one server-rendered page with its
style inline (allowed by its hash in the Content-Security-Policy). A 差评's reasons are shown
under the two bad grades by CSS (:has) and always work without it (the tags of both bad grades
are shown, the server takes the chosen grade's). A refusal is a page in Chinese with its status;
nothing here ever answers with a traceback.

Abuse: tokens are verified before the store is touched; rate limits per client address (views
and ratings) and per plate or link (ratings) answer 429; a POST must come from our own origin
(Origin header) and carry a form this gateway made for this page within [qr] form_valid_min
(a signed one-time id: CSRF, and the submission's idempotency key). Refusals are counted per
reason (rejections table, `hcp-gateway health`) and logged at most once a minute per reason,
never with a token or an address's history. The page asks for no personal data.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
from aiohttp import web

from gateway.complaints import TEXT_MAX
from gateway.errors import DomainError
from gateway.qr.limits import RateLimiter
from gateway.qr.service import Page, QrRefusal, QrService, Submitted
from protocol.grades import BAD, GRADES, NAMES_ZH

log = logging.getLogger("gateway.qr.page")

PREFIX = "/q"
MAX_FORM = 8 * 1024          # a rating form is well under 2 KB
_TEMPLATES = Path(__file__).parent / "templates"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PublicPage:
    """The page's handlers over the QR service; `routes()` mounts them (gateway/api/app.py)."""

    def __init__(self, service: QrService) -> None:
        self.svc = service
        s = service.settings
        self.views = RateLimiter(s.views_per_min)
        self.ratings = RateLimiter(s.ratings_per_min)
        self.per_token = RateLimiter(s.token_ratings_per_min)
        self.refusals = service.refusals
        self.trusted = {ipaddress.ip_address(p) for p in s.trusted_proxies}
        u = urlsplit(s.public_url)
        self.origin = "%s://%s" % (u.scheme, u.netloc)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
                                      autoescape=True, trim_blocks=False, auto_reload=False)
        self.css = (_TEMPLATES / "qr.css").read_text(encoding="utf-8")
        digest = base64.b64encode(hashlib.sha256(self.css.encode("utf-8")).digest()).decode("ascii")
        self.csp = ("default-src 'none'; style-src 'sha256-%s'; img-src 'self' data:; form-action 'self';"
                    " base-uri 'none'; frame-ancestors 'none'" % digest)

    # -- helpers ---------------------------------------------------------------------------------

    def client(self, request: web.Request) -> str:
        """The phone's address: the peer, or (behind a trusted proxy) the nearest untrusted
        address of X-Forwarded-For."""
        peer = request.remote or "?"
        try:
            if ipaddress.ip_address(peer) not in self.trusted:
                return peer
        except ValueError:
            return peer
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        for hop in reversed(hops):
            try:
                if ipaddress.ip_address(hop) not in self.trusted:
                    return hop
            except ValueError:
                return peer   # garbage in the header: the proxy itself is all we know
        return peer

    def _render(self, name: str, status: int = 200, **ctx: Any) -> web.Response:
        html = self.env.get_template(name).render(css=self.css, **ctx)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                            headers=self._headers())

    def _headers(self) -> dict[str, str]:
        return {"Content-Security-Policy": self.csp, "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}

    def refused(self, code: str, status: int, message: str, retry_url: str = "",
                hall_name: str = "") -> web.Response:
        self.refusals.add(code)
        title = {429: "操作过于频繁", 410: "评价码已失效", 409: "无需重复评价", 403: "无法提交",
                 404: "无法识别评价码"}.get(status, "无法评价")
        resp = self._render("refused.html", status, title=title, message=message, retry_url=retry_url,
                            hall_name=hall_name)
        if status == 429:
            resp.headers["Retry-After"] = "60"
        return resp

    def _rate_page(self, p: Page, status: int = 200) -> web.Response:
        return self._render("rate.html", status, p=p, grades=[(g, NAMES_ZH[g]) for g in GRADES], bad=BAD,
                            names=NAMES_ZH, text_max=TEXT_MAX)

    def _done_page(self, p: Page) -> web.Response:
        tags = {t.code: t.name for g in BAD for t in p.tags.get(g, [])}
        return self._render("done.html", p=p, bad=p.grade in BAD,
                            tag_names=[tags.get(c, c) for c in p.chosen_tags])

    async def _form(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The posted form, or a refusal: size, type, encoding and origin checked first."""
        if request.content_length is not None and request.content_length > MAX_FORM:
            return self.refused("too_large", 413, "提交的内容过长。")
        origin = request.headers.get("Origin")
        own = "%s://%s" % (request.scheme, request.host)
        if origin is not None and origin not in (self.origin, own):
            return self.refused("cross_origin", 403, "请在评价页面上直接提交评价。")
        if request.content_type != "application/x-www-form-urlencoded":
            return self.refused("bad_form", 400, "无法识别提交的内容，请返回重新评价。")
        try:
            raw = await request.read()   # bounded by the app's client_max_size (413 beyond)
        except web.HTTPRequestEntityTooLarge:
            return self.refused("too_large", 413, "提交的内容过长。")
        except (asyncio.IncompleteReadError, ConnectionError):
            return self.refused("bad_form", 400, "提交未完成，请重新评价。")
        if len(raw) > MAX_FORM:
            return self.refused("too_large", 413, "提交的内容过长。")
        try:
            text = raw.decode("ascii")   # form-urlencoded is ASCII; Chinese comes percent-escaped
            fields = parse_qs(text, keep_blank_values=True, strict_parsing=False, encoding="utf-8",
                              errors="strict", max_num_fields=64)
        except (UnicodeDecodeError, ValueError):
            return self.refused("bad_form", 400, "无法识别提交的内容，请返回重新评价。")
        return {k: v for k, v in fields.items()}

    @staticmethod
    def _one(fields: dict[str, Any], name: str) -> str:
        v = fields.get(name)
        return v[0] if isinstance(v, list) and len(v) == 1 and isinstance(v[0], str) else ""

    # -- handlers ---------------------------------------------------------------------------------

    async def get_plate(self, request: web.Request) -> web.StreamResponse:
        return await self._get(request, self.svc.view_plate)

    async def get_case(self, request: web.Request) -> web.StreamResponse:
        return await self._get(request, self.svc.view_case)

    async def _get(self, request: web.Request, view: Callable[[str], Awaitable[Page]]) -> web.StreamResponse:
        if not self.views.allow(self.client(request)):
            return self.refused("rate_limited", 429, "您的操作过于频繁，请一分钟后再试。")
        try:
            page = await view(request.match_info["token"])
        except QrRefusal as e:
            return self.refused(e.code, e.status, e.zh)
        return self._rate_page(page)

    async def post_plate(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, "plate")

    async def post_case(self, request: web.Request) -> web.StreamResponse:
        return await self._post(request, "case")

    async def _post(self, request: web.Request, via: str) -> web.StreamResponse:
        token = request.match_info["token"]
        if not self.ratings.allow(self.client(request)):
            return self.refused("rate_limited", 429, "您的操作过于频繁，请一分钟后再试。")
        fields = await self._form(request)
        if isinstance(fields, web.Response):
            return fields
        grade = self._one(fields, "grade")
        tags = [t for t in fields.get("tag_" + grade, []) if isinstance(t, str)] if grade in BAD else []
        text = self._one(fields, "text")
        form = self._one(fields, "form")
        purpose = self._one(fields, "purpose") or "first"
        try:
            # The token first (a forged one costs no rate budget of a real plate), then its budget.
            subject = self.svc.check_subject("p" if via == "plate" else "c", token)
            if not self.per_token.allow(via + ":" + subject):
                return self.refused("rate_limited_token", 429, "此评价码的提交过于频繁，请稍后再试。")
            if via == "plate":
                done: Submitted = await self.svc.submit_plate(token, form, grade, tags, text)
            else:
                done = await self.svc.submit_case(token, form, purpose, grade, tags, text)
        except QrRefusal as e:
            if e.code in ("bad_grade", "need_tags", "bad_tag", "bad_text"):
                return await self._again(via, token, e, grade, tags, text, form)
            if e.code == "form_expired":
                return self.refused(e.code, e.status, e.zh, retry_url=request.path)
            return self.refused(e.code, e.status, e.zh)
        except DomainError as e:
            # A refusal the page did not foresee (e.g. the calendar lacks a year): no traceback.
            log.warning("QR rating refused: %s (%s)", e.code, e)
            return self.refused(e.code, 409, "暂时无法提交评价，请向窗口工作人员反映。")
        return self._done_page(await self.svc.done_page(done))

    async def _again(self, via: str, token: str, e: QrRefusal, grade: str, tags: list[str], text: str,
                     form: str) -> web.StreamResponse:
        """The same form again with what was chosen and what is missing (the same one-time id,
        so sending it twice is still one rating)."""
        self.refusals.add(e.code)
        try:
            page = await (self.svc.view_plate(token) if via == "plate" else self.svc.view_case(token))
        except QrRefusal as e2:
            return self.refused(e2.code, e2.status, e2.zh)
        page.form = form or page.form
        page.grade = grade if grade in GRADES else None
        page.chosen_tags, page.text, page.error_zh = tags, text, e.zh
        return self._rate_page(page, e.status)
