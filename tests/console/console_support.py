"""Helpers for the console's HTTP-level tests: a seeded store (SQLite or PostgreSQL, from the
store_url fixture), the gateway's real aiohttp app (API + console) on 127.0.0.1, and a client
that logs in through the login form like a browser (cookies, CSRF tokens)."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway import accounts, attribution, bindings
from gateway.api.app import make_app
from gateway.clock import now_ms
from gateway.config import Config, parse_config
from gateway.devices import add_device
from gateway.store import Store, open_store
from gateway.store.api import Tx
from protocol.ids import record_id

PASSWORD = "Console-pass-1"
DEPT_A = "11370303MB00000010"
DEPT_B = "11370303MB00000023"
WINDOWS = (("A01", DEPT_A, "综合窗口"), ("A02", DEPT_A, "社保窗口"), ("B01", DEPT_B, "税务窗口"))
STAFF = (("zhang", "张三"), ("li", "李四"), ("wang", "王五"))
DEVICES = ("dev-1", "dev-2", "dev-3", "dev-4")


# An example 差评 tag set (our codes, for tests; the shape of a province's evalDetail set).
TAG_SETS = {"2026.1": {"source": "测试用标签", "d": [{"code": "D01", "name": "服务态度不好"},
                                                    {"code": "D02", "name": "办事效率低"}],
                       "vd": [{"code": "V01", "name": "推诿扯皮"}, {"code": "V02", "name": "服务态度恶劣"}]}}


def make_config(tmp: Path, store_url: str, **console: Any) -> Config:
    raw: dict[str, Any] = {
        "store": {"url": store_url} if store_url.startswith("postgresql://") else {"path": store_url},
        "hall": {"id": "hall-1", "timezone": "Asia/Shanghai", "opening_hours": ["00:00-24:00"],
                 "opening_days": [1, 2, 3, 4, 5, 6, 7]},
        "console": {"title": "测试大厅", "page_size": 50, **console},
        "complaints": {"tag_version": "2026.1", "tag_sets": TAG_SETS},
        # The ratings in the store count (these tests have no platform to acknowledge them).
        "bulletin": {"ratings": "stored", "issuer": "测试区政务服务管理办公室"},
    }
    return parse_config(raw, tmp)


async def seed(store: Store) -> None:
    t = now_ms()
    await store.write(lambda tx: [add_device(tx, d, secrets.token_hex(32), "1.0", "test", t)
                                  for d in DEVICES])
    for w, dept, name in WINDOWS:
        await bindings.add_window(store, w, dept, name, "test")
    for a, name in STAFF:
        await bindings.add_staff(store, a, name, "test")
    for (w, _, _), (a, _), d in zip(WINDOWS, STAFF, DEVICES, strict=False):
        await bindings.pair(store, d, w, a, "test")


class Sent:
    def __init__(self) -> None:
        self.commands: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(self, device: str, t: str, fields: dict[str, Any]) -> None:
        self.commands.append((device, t, dict(fields)))


_seq: dict[str, int] = {}


async def add_record(store: Store, cfg: Config, device: str, pressed_at_ms: int, grade: str = "vs",
                     kind: str = "walkup") -> str:
    """One record through attribution into the store, like ingest does."""
    _seq[device] = _seq.get(device, 0) + 1
    rs = _seq[device]
    row: dict[str, Any] = {
        "record_id": record_id(device, 1, rs), "device_id": device, "rb": 1, "rs": rs, "kind": kind,
        "grade": grade, "invitation_id": None, "device_wall_s": pressed_at_ms // 1000, "uptime_ms": rs,
        "pressed_at_ms": pressed_at_ms, "time_source": "device", "received_at_ms": pressed_at_ms,
        "msg_boot": 1, "binding_id": None, "window_id": None, "staff_account": None, "flags": "",
    }
    rules = attribution.AttributionRules.from_config(cfg)

    def unit(tx: Tx) -> None:
        tx.records.insert_many([attribution.attribute_sync(tx, row, rules)])
    await store.write(unit)
    return str(row["record_id"])


_cases = [0]


async def bad_rating(store: Store, cfg: Config, device: str = "dev-1", grade: str = "vd",
                     at_ms: int | None = None) -> int:
    """A 差评 the way a hall makes one: the window system's invitation at the device's window,
    the device's rated record through attribution, and its complaint opened by the complaints
    service (as ingest's hook does). Returns the complaint's id."""
    from gateway import invitations
    from gateway.complaints import ComplaintService

    t = now_ms() if at_ms is None else at_ms
    b = await bindings.active_binding(store, device)
    assert b is not None
    _cases[0] += 1
    out = await invitations.create(store, invitations.InvitationRequest(
        case_no="370303-C-%06d" % _cases[0], window_id=b.window_id, task_code="T%03d" % _cases[0],
        task_name="城乡居民养老保险参保登记", applicant_type=1), "test",
        invitations.InvitationRules.from_config(cfg), at_ms=t - 20_000)
    _seq[device] = _seq.get(device, 0) + 1
    rs = _seq[device]
    row: dict[str, Any] = {
        "record_id": record_id(device, 1, rs), "device_id": device, "rb": 1, "rs": rs, "kind": "rated",
        "grade": grade, "invitation_id": out.invitation.id, "device_wall_s": t // 1000, "uptime_ms": rs,
        "pressed_at_ms": t, "time_source": "device", "received_at_ms": t, "msg_boot": 1,
        "binding_id": None, "window_id": None, "staff_account": None, "flags": "",
    }
    rules = attribution.AttributionRules.from_config(cfg)

    def unit(tx: Tx) -> None:
        tx.records.insert_many([attribution.attribute_sync(tx, row, rules)])
    await store.write(unit)
    if grade not in ("d", "vd"):
        return 0     # a rating, not a 差评: no complaint
    got = await ComplaintService.from_config(store, cfg).open_for_record(str(row["record_id"]), at_ms=t)
    assert got is not None and got.created
    return got.complaint.id


@dataclass
class App:
    store: Store
    cfg: Config
    base: str
    sent: Sent
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    async def client(self, name: str | None = None, password: str = PASSWORD) -> Client:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sessions.append(s)
        c = Client(self, s)
        if name is not None:
            r = await c.login(name, password)
            assert r.status == 303 and r.headers["Location"] in ("/", "/account"), (r.status, await r.text())
        return c


@dataclass
class Client:
    app: App
    http: aiohttp.ClientSession
    csrf: str = ""

    async def login(self, name: str, password: str) -> aiohttp.ClientResponse:
        async with self.http.get(self.app.base + "/login") as r:
            token = form_token(await r.text())
        r = await self.http.post(self.app.base + "/login", data={"_csrf": token, "name": name,
                                                                 "password": password, "next": "/"},
                                 allow_redirects=False)
        await r.read()
        return r

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.app.base + path, allow_redirects=False, **kw) as r:
            text = await r.text()
            m = re.search(r'hx-headers=\'\{"X-CSRF-Token": "([^"]+)"\}\'', text)
            if m:
                self.csrf = m.group(1)
            return r.status, text, r

    async def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]], csrf: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, str, aiohttp.ClientResponse]:
        if not self.csrf:
            await self.get("/account")
        body = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf != "":
            body.append(("_csrf", self.csrf if csrf is None else csrf))
        async with self.http.post(self.app.base + path, data=body, allow_redirects=False,
                                  headers=headers or {}) as r:
            return r.status, await r.text(), r


def form_token(html: str) -> str:
    m = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert m, "no _csrf field in the page"
    return m.group(1)


class Links(HTMLParser):
    """Every src, href and action of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href", "action") and v is not None:
                self.urls.append(v)


def links(html: str) -> list[str]:
    p = Links()
    p.feed(html)
    return p.urls


@asynccontextmanager
async def running_console(tmp: Path, store_url: str, **console: Any) -> AsyncIterator[App]:
    """The gateway's aiohttp app (API + console) over a seeded store, with accounts of every role."""
    cfg = make_config(tmp, store_url, **console)
    store = await open_store(cfg.store.url)
    sent = Sent()
    runner: web.AppRunner | None = None
    app: App | None = None
    try:
        await seed(store)
        for name, role, extra in (("admin", "admin", {}), ("liaison", "liaison", {"depts": [DEPT_A]}),
                                  ("super", "supervisor", {}), ("viewer", "readonly", {}),
                                  ("admin_b", "admin", {"depts": [DEPT_B]}),
                                  ("admin_h2", "admin", {"halls": ["hall-2"]})):
            await accounts.add_account(store, name, PASSWORD, role, "test", **extra)
        runner = web.AppRunner(make_app(store, cfg, sent))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        app = App(store, cfg, "http://127.0.0.1:%d" % port, sent)
        yield app
    finally:
        if app is not None:
            for s in app.sessions:
                await s.close()
        if runner is not None:
            await runner.cleanup()
        await store.close()
