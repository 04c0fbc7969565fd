"""The console over HTTP (the gateway's real aiohttp app, real store on both backends): access
control, CSRF, headers, roles and scopes, paging, bad input, and audit under the account."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from console_support import DEPT_A, PASSWORD, App, add_record, form_token, links, running_console
from harness.store import query

from gateway import accounts
from gateway.clock import now_ms

PAGES = ("/", "/dashboard/live", "/devices", "/devices/dev-1", "/org", "/pairing", "/pairing/history",
         "/invitations", "/ratings", "/uplink", "/audit", "/account")
# page -> capability the console asks for (gateway/accounts.py: CAPABILITIES)
PAGE_CAP = {"/": "dashboard", "/dashboard/live": "dashboard", "/devices": "devices.view",
            "/devices/dev-1": "devices.view", "/org": "devices.view", "/pairing": "devices.view",
            "/pairing/history": "devices.view", "/invitations": "invitations.view",
            "/ratings": "ratings.view",
            "/uplink": "uplink.view", "/audit": "audit.view", "/account": None}


async def test_pages_need_a_session_and_the_api_is_left_alone(app: App) -> None:
    c = await app.client()
    for p in PAGES:
        status, _, r = await c.get(p)
        assert status == 303 and r.headers["Location"].startswith("/login"), p
    status, _, r = await c.get("/ratings?from=2026-01-01")
    assert r.headers["Location"] == "/login?next=%2Fratings%3Ffrom%3D2026-01-01"
    status, _, r = await c.get("/dashboard/live", headers={"HX-Request": "true"})
    assert status == 200 and r.headers["HX-Redirect"] == "/login"
    for public in ("/login", "/healthz", "/static/app.css", "/static/vendor/echarts.common.min.js"):
        assert (await c.get(public))[0] == 200, public
    status, text, r = await c.get("/api/v1/bindings")
    assert status == 401 and r.content_type == "application/json" and '"unauthorized"' in text
    status, _, _ = await c.post("/pairing", {"device": "dev-4", "window": "A01", "staff_account": "zhang"},
                                csrf="")
    assert status == 303
    assert query(app.cfg.store.url, "SELECT count(*) FROM bindings WHERE device_id = 'dev-4'")[0][0] == 0


async def test_every_page_for_the_admin_with_security_headers(app: App) -> None:
    c = await app.client("admin")
    for p in PAGES:
        status, text, r = await c.get(p)
        assert status == 200, (p, text[:300])
        assert "Traceback" not in text
        if p != "/dashboard/live":
            assert "<html lang=\"zh-CN\">" in text
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-store"
        assert "<script>" not in text and "onclick" not in text   # no inline script anywhere
        for u in links(text):
            assert u.startswith("/") and not u.startswith("//"), (p, u)
    status, text, _ = await c.get("/no-such-page")
    assert status == 404 and "没有这个页面" in text


async def test_login_form_needs_its_token_and_addresses_are_throttled(tmp_path: Path, store_url: str) -> None:
    async with running_console(tmp_path, store_url, address_failures=3, max_failures=100) as app:
        c = await app.client()
        async with c.http.post(app.base + "/login", data={"name": "admin", "password": PASSWORD},
                               allow_redirects=False) as r:
            assert r.status == 403 and "页面已过期" in await r.text()
        for _ in range(3):
            assert (await c.login("viewer", "wrong-password-x")).status == 401
        r = await c.login("admin", PASSWORD)         # the address is throttled, whoever it tries
        assert r.status == 429
        assert "登录尝试过于频繁" in await r.text()


async def test_csrf_token_and_origin_are_checked_on_every_post(app: App) -> None:
    c = await app.client("admin")
    form = {"window_id": "Z01", "name": "新窗口", "dept_code": DEPT_A}
    for csrf, headers in (("", None), ("forged", None), (None, {"Origin": "http://evil.example"})):
        status, text, _ = await c.post("/org/windows", form, csrf=csrf, headers=headers)
        assert status == 403 and "防伪校验失败" in text
    assert query(app.cfg.store.url, "SELECT count(*) FROM windows WHERE window_id = 'Z01'")[0][0] == 0
    # The token in a header (as htmx sends it) is as good as the form field.
    async with c.http.post(app.base + "/org/windows", data=form, allow_redirects=False,
                           headers={"X-CSRF-Token": c.csrf, "HX-Request": "true"}) as r:
        assert r.status == 303
    assert query(app.cfg.store.url, "SELECT actor FROM audit_log WHERE action = 'window.add'"
                                    " AND detail_json LIKE '%Z01%'") == [("console:admin",)]
    # Logging out needs the token too (no logout by a foreign page).
    status, _, _ = await c.post("/logout", {}, csrf="")
    assert status == 403
    assert (await c.get("/"))[0] == 200


@pytest.mark.parametrize("name", ["admin", "liaison", "super", "viewer"])
async def test_each_role_gets_the_pages_its_capabilities_allow(app: App, name: str) -> None:
    role = {"admin": "admin", "liaison": "liaison", "super": "supervisor", "viewer": "readonly"}[name]
    c = await app.client(name)
    for p, cap in PAGE_CAP.items():
        status, text, _ = await c.get(p)
        want = 200 if cap is None or accounts.can(role, cap) else 403
        if p == "/devices/dev-1" and name == "liaison":
            want = 403
        assert status == want, (name, p, status)
        if status == 403:
            assert "无权限" in text
    status, _, _ = await c.get("/")
    menu = re.findall(r'<nav class="main".*?</nav>', _ if False else (await c.get("/"))[1], re.S)[0]
    assert ("一码一账号" in menu) == accounts.can(role, "devices.view")
    # Changes: only the hall admin may pair, unpair, add windows and clerks, re-queue.
    posts = (("/pairing", {"device": "dev-4", "window": "A01", "staff_account": "zhang", "force": "1"}),
             ("/pairing/unpair", {"device": "dev-2"}), ("/org/windows", {"window_id": "R1"}),
             ("/org/staff", {"account": "r1", "display_name": "R"}), ("/uplink/requeue", {"mode": "all"}))
    for path, data in posts:
        status, _, _ = await c.post(path, data)
        assert status == (303 if role == "admin" else 403), (name, path, status)


async def test_scopes_limit_what_an_admin_sees_and_changes(app: App) -> None:
    t = now_ms()
    for d in ("dev-1", "dev-2", "dev-3", "dev-4"):
        await add_record(app.store, app.cfg, d, t - 1000)
    # Department B's admin: window B01 and its device only.
    b = await app.client("admin_b")
    _, text, _ = await b.get("/devices")
    assert re.findall(r'data-device="([^"]+)"', text) == ["dev-3"]
    _, text, _ = await b.get("/ratings")
    assert set(re.findall(r'<tr data-record="([^":]+):', text)) == {"dev-3"}
    assert (await b.get("/devices/dev-1"))[0] == 403
    status, text, _ = await b.post("/pairing", {"device": "dev-3", "window": "A01", "staff_account": "zhang",
                                                "force": "1"})
    assert status == 403 and "不在您的管理范围内" in text
    status, _, _ = await b.post("/org/windows", {"window_id": "A09", "dept_code": DEPT_A})
    assert status == 403
    status, _, _ = await b.post("/org/windows", {"window_id": "B09", "dept_code": "11370303MB0000002B"})
    assert status == 303
    # Another hall's admin sees nothing of this one.
    h2 = await app.client("admin_h2")
    _, text, _ = await h2.get("/devices")
    assert "data-device=" not in text
    _, text, _ = await h2.get("/")
    assert 'id="t-online">0/0<' in text and "data-record=" not in text
    _, text, _ = await h2.get("/ratings")
    assert "data-record=" not in text
    # The liaison of department A sees A01 and A02 only.
    li = await app.client("liaison")
    _, text, _ = await li.get("/ratings")
    assert set(re.findall(r'<tr data-record="([^":]+):', text)) == {"dev-1", "dev-2"}


async def test_pair_conflict_is_confirmed_before_the_move(app: App) -> None:
    c = await app.client("admin")
    data = {"device": "dev-4", "window": "A01", "staff_account": "zhang"}
    status, text, _ = await c.post("/pairing", data)
    assert status == 409 and "确认移动绑定" in text and 'name="force" value="1"' in text
    assert query(app.cfg.store.url, "SELECT count(*) FROM bindings WHERE device_id = 'dev-4'")[0][0] == 0
    status, _, r = await c.post("/pairing", {**data, "force": "1"})
    assert status == 303 and r.headers["Location"] == "/pairing"
    rows = query(app.cfg.store.url, "SELECT device_id, ended_by FROM bindings WHERE window_id = 'A01'"
                                    " ORDER BY id")
    assert rows == [("dev-1", "console:admin"), ("dev-4", None)]
    # The devices were told at once: dev-1 unpaired, dev-4 paired.
    assert ("dev-1", "unpaired", {}) in app.sent.commands
    assert ("dev-4", "paired", {"win": "A01", "clerk": "张三"}) in app.sent.commands
    _, text, _ = await c.get("/pairing")
    assert "已绑定：设备 dev-4 → 窗口 A01" in text and "已解除原绑定 1 条" in text
    # Unpair asks first, then closes.
    status, text, _ = await c.get("/pairing/unpair?device=dev-4")
    assert status == 200 and "确认解除绑定" in text
    status, _, _ = await c.post("/pairing/unpair", {"device": "dev-4"})
    assert status == 303 and ("dev-4", "unpaired", {}) in app.sent.commands
    status, text, _ = await c.post("/pairing/unpair", {"device": "dev-4"})
    assert status == 404 and "该设备当前没有绑定" in text


async def test_lists_page_by_keyset_and_refuse_bad_filters(app: App) -> None:
    t = now_ms()
    ids = [await add_record(app.store, app.cfg, "dev-1", t + i) for i in range(120)]   # after the binding
    c = await app.client("admin")
    seen: list[str] = []
    url = "/ratings?window=A01"
    pages = 0
    while url:
        status, text, _ = await c.get(url)
        assert status == 200
        pages += 1
        assert re.search(r'id="ratings-count">120<', text), (url, re.findall(r"ratings-count.>[^<]*", text))
        seen += re.findall(r'<tr data-record="([^"]+)"', text)
        m = re.search(r'<a href="([^"]+)" id="older">', text)
        url = m.group(1).replace("&amp;", "&") if m else ""
    assert pages == 3 and seen == list(reversed(ids))
    for bad in ("/ratings?from=yesterday", "/ratings?kind=nope", "/ratings?before=12", "/audit?before=x",
                "/invitations?status=weird", "/ratings?from=2026-02-02&to=2026-01-01", "/devices?state=odd",
                "/ratings?window=" + "W" * 40):
        status, text, _ = await c.get(bad)
        assert status == 400 and "Traceback" not in text and 'id="error-text"' in text, bad


async def test_must_change_password_first(app: App) -> None:
    await accounts.add_account(app.store, "newbie", PASSWORD, "readonly", "test", must_change=True)
    c = await app.client("newbie")
    status, _, r = await c.get("/ratings")
    assert status == 303 and r.headers["Location"] == "/account"
    status, text, _ = await c.post("/account/password", {"old": PASSWORD, "new": "Brand-new-pass-9",
                                                         "new2": "Brand-new-pass-8"})
    assert status == 400 and "不一致" in text
    status, _, _ = await c.post("/account/password", {"old": PASSWORD, "new": "Brand-new-pass-9",
                                                      "new2": "Brand-new-pass-9"})
    assert status == 303
    assert (await c.get("/ratings"))[0] == 200


async def test_requeue_is_audited_under_the_account(app: App) -> None:
    t = now_ms()
    rid = await add_record(app.store, app.cfg, "dev-1", t - 5000)
    await app.store.write(lambda tx: tx.uplink.reject([(rid, "E42", "bad taskCode")], "platform", t))
    c = await app.client("admin")
    _, text, _ = await c.get("/uplink")
    assert rid in text and "E42" in text
    status, _, _ = await c.post("/uplink/requeue", [("mode", "ids"), ("record_id", rid)])
    assert status == 303
    _, text, _ = await c.get("/uplink")
    assert "已重新排队 1 条记录" in text
    rows = query(app.cfg.store.url,
                 "SELECT actor, detail_json FROM audit_log WHERE action = 'uplink.requeue'")
    assert len(rows) == 1 and rows[0][0] == "console:admin" and rid in rows[0][1]
    status, text, _ = await c.get("/uplink/reconcile?date=2026-01-01")
    assert status == 400 and "未配置数据上报" in text


async def test_logout_ends_the_session(app: App) -> None:
    c = await app.client("admin")
    _, text, _ = await c.get("/")
    status, _, r = await c.post("/logout", {})
    assert status == 303 and r.headers["Location"] == "/login"
    assert (await c.get("/"))[0] == 303
    left = query(app.cfg.store.url, "SELECT count(*) FROM console_sessions WHERE account = 'admin'")
    assert left[0][0] == 0
    # A token from a login form of another browser is not this browser's token.
    other = await app.client()
    async with other.http.get(app.base + "/login") as r:
        token = form_token(await r.text())
    async with c.http.post(app.base + "/login", data={"_csrf": token, "name": "admin", "password": PASSWORD},
                           allow_redirects=False) as r:
        assert r.status == 403


async def test_console_off_without_its_section(tmp_path: Path, store_url: str) -> None:
    from aiohttp import web

    from gateway.api.app import make_app
    from gateway.config import parse_config
    from gateway.store import open_store
    raw = {"store": {"url": store_url} if store_url.startswith("postgresql") else {"path": store_url}}
    cfg = parse_config(raw, tmp_path)
    store = await open_store(cfg.store.url)
    runner = web.AppRunner(make_app(store, cfg, lambda *a: None))  # type: ignore[arg-type,return-value]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as s, s.get("http://127.0.0.1:%d/" % runner.addresses[0][1]) as r:
            assert r.status == 404 and r.content_type == "application/json"
    finally:
        await runner.cleanup()
        await store.close()


async def test_hostile_input_is_escaped_or_refused(app: App) -> None:
    c = await app.client("admin")
    status, text, _ = await c.get("/ratings?staff=%3Cscript%3Ealert(1)%3C/script%3E")
    assert status == 200 and "<script>alert(1)" not in text and "&lt;script&gt;" in text
    for path in ("/devices/%00", "/devices/" + "x" * 300, "/pairing/history?device=%3Cb%3E",
                 "/audit?actor=%27--", "/ratings?page=abc&before=1~" + "z" * 200, "/devices?page=-1"):
        status, text, _ = await c.get(path)
        assert status in (200, 400, 404) and "Traceback" not in text and "<b>" not in text, path
    # A NUL anywhere (PostgreSQL refuses it in text) is a clear refusal, never a 500.
    for path in ("/ratings?staff=%00", "/audit?actor=a%00", "/ratings?before=1~dev%00",
                 "/pairing/unpair?device=%00", "/pairing/history?device=%00", "/invitations?before=5~%00"):
        status, text, _ = await c.get(path)
        assert status in (400, 404) and "Traceback" not in text, (path, status)
    for path, data in (("/pairing", {"device": "dev\x00", "window": "A01", "staff_account": "zhang"}),
                       ("/pairing", {"device": "dev-4", "window": "A\x00", "staff_account": "zhang"}),
                       ("/pairing/unpair", {"device": "d\x00"}),
                       ("/uplink/requeue", {"mode": "ids", "record_id": "x\x00"}),
                       ("/uplink/requeue", {"mode": "code", "code": "E\x00"}),
                       ("/org/staff", {"account": "a\x00", "display_name": "x"})):
        status, text, _ = await c.post(path, data)
        assert status in (400, 404) and "Traceback" not in text, (path, data, status)
    # A window name with markup is stored as text and shown escaped.
    status, _, _ = await c.post("/org/windows", {"window_id": "Q1", "name": "<img src=x onerror=alert(1)>",
                                                 "dept_code": DEPT_A})
    assert status == 303
    _, text, _ = await c.get("/org")
    assert "<img src=x" not in text and "&lt;img src=x" in text
    status, text, _ = await c.post("/org/windows", {"window_id": "Q2\x01", "dept_code": DEPT_A})
    assert status == 400 and "control character" in text
