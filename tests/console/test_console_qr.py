"""The QR channel in the web console (both backends): the plate download on the org page for
admins in scope, and the public /q/ page left alone by the console's session middleware."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from console_support import DEPT_A, DEPT_B, PASSWORD, App, Sent, seed

from gateway import accounts
from gateway.api.app import make_app
from gateway.config import parse_config
from gateway.qr.service import QrService
from gateway.store import open_store

TAGS = {"tag_version": "v1", "tag_sets": {"v1": {"source": "test", "d": [{"code": "D1", "name": "慢"}],
                                                  "vd": [{"code": "V1", "name": "差"}]}}}


@asynccontextmanager
async def console_with_qr(tmp: Path, store_url: str) -> AsyncIterator[App]:
    raw: dict[str, Any] = {
        "store": {"url": store_url} if store_url.startswith("postgresql://") else {"path": store_url},
        "hall": {"id": "hall-1", "timezone": "Asia/Shanghai", "opening_hours": ["00:00-24:00"],
                 "opening_days": [1, 2, 3, 4, 5, 6, 7]},
        "console": {"title": "测试大厅"},
        "complaints": TAGS,
        "qr": {"public_url": "https://pj.example.gov.cn", "key_file": "qr.key", "hall_name": "测试大厅"},
    }
    cfg = parse_config(raw, tmp)
    store = await open_store(cfg.store.url)
    runner: web.AppRunner | None = None
    app: App | None = None
    try:
        await seed(store)
        for name, role, extra in (("admin", "admin", {}), ("admin_b", "admin", {"depts": [DEPT_B]}),
                                  ("viewer", "readonly", {})):
            await accounts.add_account(store, name, PASSWORD, role, "test", **extra)
        sent = Sent()
        qr = QrService.from_config(store, cfg, send_command=sent)
        runner = web.AppRunner(make_app(store, cfg, sent, qr=qr))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        app = App(store, cfg, "http://127.0.0.1:%d" % runner.addresses[0][1], sent)
        yield app
    finally:
        if app is not None:
            for s in app.sessions:
                await s.close()
        if runner is not None:
            await runner.cleanup()
        await store.close()


async def test_admins_download_the_plates_of_their_windows(tmp_path: Path, store_url: str) -> None:
    import zxingcpp
    from PIL import Image

    async with console_with_qr(tmp_path, store_url) as app:
        admin = await app.client("admin")
        status, page, _ = await admin.get("/org")
        assert status == 200 and "评价二维码铭牌" in page
        assert "/org/windows/A01/plate?format=pdf&amp;size=A4" in page
        async with admin.http.get(app.base + "/org/windows/A01/plate?format=pdf&size=A5") as resp:
            assert resp.status == 200 and resp.content_type == "application/pdf"
            assert "attachment" in resp.headers["Content-Disposition"]
            assert (await resp.read()).startswith(b"%PDF")
        async with admin.http.get(app.base + "/org/windows/A01/plate?format=png&size=A5") as resp:
            png = await resp.read()
        urls = [x.text for x in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]
        assert len(urls) == 1 and urls[0].startswith("https://pj.example.gov.cn/q/p/")
        rows = await app.store.read(lambda tx: tx.audit.recent(50))
        issued = [a for a in rows if a["action"] == "qr.plate.issue"]
        assert len(issued) == 1 and issued[0]["actor"] == "console:admin"     # one plate, twice downloaded
        # Out of scope, or a role without the right: refused with the console's page.
        other = await app.client("admin_b")
        status, text, _ = await other.get("/org/windows/A01/plate")
        assert status == 403 and "不在您的管理范围内" in text
        viewer = await app.client("viewer")
        status, page, _ = await viewer.get("/org")
        assert status == 200 and "评价二维码铭牌" not in page
        status, _, _ = await viewer.get("/org/windows/A01/plate")
        assert status == 403
        status, text, _ = await admin.get("/org/windows/A01/plate?format=gif")
        assert status == 400
        # The public page is not the console's: no session, no redirect to the login page.
        anon = await app.client()
        status, text, r = await anon.get(urls[0][len("https://pj.example.gov.cn"):])
        assert status == 200 and "张三" in text and "提交评价" in text
        assert DEPT_A  # the seeded department of A01
