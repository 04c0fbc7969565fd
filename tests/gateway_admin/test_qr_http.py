"""The QR channel over real HTTP (aiohttp server on a free loopback port, a real store on both
backends): the public page's answers, headers, CSRF and rate limits, the invitation's receipt
link and QR code, and the admin routes."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN, Recorder, Store
from aiohttp import web
from qr_support import QrHall, bind_qr_only, pair_device, qr_hall, token_of

from gateway.api import make_app
from simulator.netutil import free_port


@dataclass
class Site:
    base: str
    http: aiohttp.ClientSession
    h: QrHall

    async def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        async with self.http.get(self.base + path, **kw) as r:
            return r.status, await r.text(), r.headers

    async def post_form(
        self, path: str, data: Any, origin: str | None = "own", headers: dict[str, str] | None = None
    ) -> tuple[int, str, Any]:
        hdr = dict(headers or {})
        if origin == "own":
            hdr["Origin"] = self.base
        elif origin is not None:
            hdr["Origin"] = origin
        async with self.http.post(self.base + path, data=data, headers=hdr) as r:
            return r.status, await r.text(), r.headers

    async def api(
        self, method: str, path: str, body: Any = None, token: str = WINDOW_TOKEN
    ) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, json=body, headers={"Authorization": "Bearer " + token}
        ) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.read()


def form_of(page: str) -> str:
    m = re.search(r'name="form" value="([^"]+)"', page)
    assert m is not None, page[:400]
    return html.unescape(m.group(1))


@asynccontextmanager
async def serving(h: QrHall | None, store: Store) -> AsyncIterator[Site]:
    cfg = h.cfg if h is not None else store.cfg
    app = make_app(
        store.db,
        cfg,
        h.send if h is not None else Recorder(),
        clock=(h.clock if h is not None else (lambda: 0)),
        qr=h.svc if h is not None else None,
        complaints=h.svc.complaints if h is not None else None,
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Site("http://127.0.0.1:%d" % port, http, h)  # type: ignore[arg-type]
    finally:
        await runner.cleanup()


MakeHall = Callable[..., Any]


@pytest.fixture
async def site(store: Store, tmp_path: Path) -> AsyncIterator[Site]:
    h = await qr_hall(store, tmp_path)
    async with serving(h, store) as s:
        yield s


async def test_the_page_rates_without_script_and_says_so(site: Site) -> None:
    h = site.h
    await bind_qr_only(h, "A02", "li")
    path = "/q/p/" + await h.plate_token("A02")
    st, page, hdr = await site.get(path)
    assert st == 200 and hdr["Content-Type"] == "text/html; charset=utf-8"
    assert "李四" in page and "非常满意" in page and "A02号窗口" in page and "<script" not in page
    assert (
        "default-src 'none'" in hdr["Content-Security-Policy"]
        and "form-action 'self'" in hdr["Content-Security-Policy"]
    )
    assert hdr["Referrer-Policy"] == "same-origin" and hdr["Cache-Control"] == "no-store"
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from anywhere
    # The inline style is allowed by its hash, and only it (a change of the CSS keeps the two equal).
    import base64
    import hashlib

    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert "style-src 'sha256-%s'" % digest in hdr["Content-Security-Policy"]
    # A 差评 without a reason: the same form again, with what was chosen and what is missing.
    form = form_of(page)
    st, again, _ = await site.post_form(path, {"form": form, "grade": "vd", "text": "窗口推诿"})
    assert st == 400 and "请至少选择一项原因" in again and form_of(again) == form
    assert 'id="g-vd" checked' in again and "窗口推诿" in again
    st, done, _ = await site.post_form(
        path, [("form", form), ("grade", "vd"), ("tag_vd", "V01"), ("tag_d", "D01"), ("text", "窗口推诿")]
    )
    assert st == 200 and "感谢您的评价" in done and "非常不满意" in done and "推诿扯皮" in done
    # Sent twice (a double tap): the same confirmation, one record.
    st, twice, _ = await site.post_form(path, [("form", form), ("grade", "vd"), ("tag_vd", "V01")])
    assert st == 200 and "感谢您的评价" in twice
    rows = await h.store.fetchall("SELECT kind, grade, channel FROM records")
    assert rows == [("walkup", "vd", "qr")]
    sub = await h.store.fetchall("SELECT tags, comment FROM qr_submissions")
    assert sub == [("V01", "窗口推诿")]  # the other grade's tag is not taken


async def test_csrf_bad_forms_and_forged_codes_are_refused_with_a_page(site: Site) -> None:
    h = site.h
    await bind_qr_only(h, "A02", "li")
    path = "/q/p/" + await h.plate_token("A02")
    form = form_of((await site.get(path))[1])
    st, page, _ = await site.post_form(path, {"form": form, "grade": "vs"}, origin="https://evil.example")
    assert st == 403 and "请在评价页面上直接提交评价" in page
    st, page, _ = await site.post_form(path, {"form": "x" * 39, "grade": "vs"})
    assert st == 400 and "页面已过期" in page and 'href="%s"' % path in page
    st, page, _ = await site.post_form(path, {"form": form, "grade": "vs"}, origin=None)  # no Origin: OK
    assert st == 200
    async with site.http.post(
        site.base + path, json={"form": form, "grade": "vs"}, headers={"Origin": site.base}
    ) as r:
        assert r.status == 400 and "无法识别提交的内容" in await r.text()
    async with site.http.post(
        site.base + path,
        data=b"form=%ff%fe&grade=vs",
        headers={"Origin": site.base, "Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 400
    async with site.http.post(
        site.base + path,
        data=b"text=" + b"x" * 20000,
        headers={"Origin": site.base, "Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 413
    subject, sig = token_of(path).split(".")
    flipped = sig[:8] + ("A" if sig[8] != "A" else "B") + sig[9:]  # a bit of the MAC
    for bad in (subject + "." + flipped, subject + "." + sig[::-1], "nothing", subject + ".%ff"):
        st, page, _ = await site.get("/q/p/" + bad)
        assert st == 404 and "无法识别此评价码" in page and "Traceback" not in page
    await h.svc.refusals.save(h.db)
    counts = dict(await h.store.fetchall("SELECT reason, count FROM rejections WHERE reason LIKE 'qr_%'"))
    assert counts["qr_cross_origin"] == 1 and counts["qr_form_expired"] == 1 and counts["qr_forged"] >= 1
    assert await h.store.fetchone("SELECT count(*) FROM records") == (1,)


async def test_rate_limits_per_address_and_per_code(store: Store, tmp_path: Path) -> None:
    h = await qr_hall(
        store,
        tmp_path,
        views_per_min=4,
        ratings_per_min=3,
        token_ratings_per_min=2,
        trusted_proxies=["127.0.0.1"],
    )
    await bind_qr_only(h, "A02", "li")
    await bind_qr_only(h, "A03", "wang")
    a2 = "/q/p/" + await h.plate_token("A02")
    a3 = "/q/p/" + await h.plate_token("A03")
    async with serving(h, store) as site:
        phone = {"X-Forwarded-For": "203.0.113.7"}
        other = {"X-Forwarded-For": "203.0.113.8, 127.0.0.1"}
        forms = [form_of((await site.get(a2, headers=phone))[1]) for _ in range(4)]
        st, page, hdr = await site.get(a2, headers=phone)
        assert st == 429 and hdr["Retry-After"] == "60" and "操作过于频繁" in page
        assert (await site.get(a2, headers=other))[0] == 200  # another phone is not limited
        # Per code: the third rating through one plate within a minute is refused.
        for f in forms[:2]:
            assert (await site.post_form(a2, {"form": f, "grade": "s"}, headers=other))[0] == 200
        st, page, _ = await site.post_form(a2, {"form": forms[2], "grade": "s"}, headers=other)
        assert st == 429 and "此评价码的提交过于频繁" in page
        # Per address: the same phone at another plate is refused after its 3 ratings a minute.
        f3 = form_of((await site.get(a3))[1])
        st, _, _ = await site.post_form(a3, {"form": f3, "grade": "s"}, headers=other)
        assert st == 429
        # A forged code costs nothing of a real plate's budget and is refused as forged.
        assert (
            await site.get("/q/p/abcdefgh.AAAAAAAAAAAAAAAAAA", headers={"X-Forwarded-For": "198.51.100.1"})
        )[0] == 404
    assert await store.fetchone("SELECT count(*) FROM records") == (2,)


async def test_the_invitation_answer_carries_the_receipt_link(site: Site) -> None:
    import zxingcpp
    from PIL import Image

    h = site.h
    await pair_device(h, "dev-1", "A01", "zhang")
    body = {
        "window": "A01",
        "case_no": "370303-2026-000777",
        "task_name": "不动产登记",
        "applicant_type": 1,
        "receipt": True,
    }
    st, out = await site.api("POST", "/api/v1/invitations", body)
    assert st == 201 and out["receipt"] is True and out["sent"] is True and out["device_id"].startswith("qr-")
    link = out["qr"]
    assert link["url"].startswith("https://pj.example.gov.cn/q/c/" + out["invitation_id"] + ".")
    assert link["valid_until"].endswith("+08:00") and link["png"].startswith("data:image/png;base64,")
    assert h.send.sent == []  # the evaluator is not asked for a receipt case
    st, again = await site.api("GET", "/api/v1/invitations/%s/qr" % out["invitation_id"])
    assert st == 200 and again["url"] == link["url"]
    for fmt, kind in (("png", "image/png"), ("svg", "image/svg+xml")):
        async with site.http.get(
            site.base + "/api/v1/invitations/%s/qr.%s" % (out["invitation_id"], fmt),
            headers={"Authorization": "Bearer " + WINDOW_TOKEN},
        ) as r:
            assert r.status == 200 and r.content_type == kind
            data = await r.read()
    import io

    png = await (
        await site.http.get(
            site.base + "/api/v1/invitations/%s/qr.png?scale=6" % out["invitation_id"],
            headers={"Authorization": "Bearer " + WINDOW_TOKEN},
        )
    ).read()
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert [d.text for d in decoded] == [link["url"]]
    assert b"<svg" in data
    # An evaluator's invitation gets its link too (a display device could show it).
    st, out2 = await site.api(
        "POST", "/api/v1/invitations", {**body, "receipt": False, "case_no": "370303-2026-000778"}
    )
    assert st == 201 and out2["device_id"] == "dev-1" and "/q/c/" in out2["qr"]["url"]
    assert h.send.of("dev-1")[-1][0] == "invite"
    st, err = await site.api("GET", "/api/v1/invitations/nope/qr")
    assert st == 404 and err["error"] == "unknown_invitation"


async def test_admin_routes(site: Site) -> None:
    h = site.h
    st, out = await site.api(
        "POST",
        "/api/v1/qr/bindings",
        {"window": "A02", "staff_account": "li", "actor": "王主任"},
        ADMIN_TOKEN,
    )
    assert (
        st == 201
        and out["binding"]["staff_account"] == "li"
        and out["binding"]["device_id"].startswith("qr-")
    )
    st, out = await site.api(
        "POST", "/api/v1/qr/bindings", {"window": "A02", "staff_account": "li"}, WINDOW_TOKEN
    )
    assert st == 401
    async with site.http.get(
        site.base + "/api/v1/qr/windows/A02/plate?format=pdf&size=A5",
        headers={"Authorization": "Bearer " + ADMIN_TOKEN},
    ) as r:
        assert r.status == 200 and r.content_type == "application/pdf"
        assert (await r.read()).startswith(b"%PDF") and "attachment" in r.headers["Content-Disposition"]
        plate_id = r.headers["X-Plate-Id"]
    st, out = await site.api("GET", "/api/v1/qr/plates", token=ADMIN_TOKEN)
    assert st == 200 and [(p["id"], p["state"]) for p in out["plates"]] == [(plate_id, "active")]
    st, out = await site.api(
        "POST", "/api/v1/qr/plates/%s/revoke" % plate_id, {"reason": "泄露"}, ADMIN_TOKEN
    )
    assert st == 200 and out["revoke_reason"] == "泄露" and out["revoked_by"] == "api:admin"
    st, out = await site.api("POST", "/api/v1/qr/plates/%s/revoke" % plate_id, {"reason": "x"}, ADMIN_TOKEN)
    assert st == 409 and out["error"] == "already_revoked"
    st, out = await site.api("GET", "/api/v1/qr/windows/A02/plate?format=gif", token=ADMIN_TOKEN)
    assert st == 400 and out["error"] == "bad_format"
    st, out = await site.api("GET", "/api/v1/qr/windows/A03/plate", token=ADMIN_TOKEN)
    assert st == 409 and out["error"] == "no_clerk_bound"
    st, out = await site.api("DELETE", "/api/v1/qr/bindings/A02", token=ADMIN_TOKEN)
    assert st == 200 and out["closed"][0]["window_id"] == "A02"
    audit = await h.store.fetchall(
        "SELECT actor, action FROM audit_log WHERE action LIKE 'binding.%' ORDER BY id"
    )
    assert audit == [("api:admin (王主任)", "binding.open"), ("api:admin", "binding.close")]


async def test_without_qr_the_routes_say_it_is_off(store: Store) -> None:
    async with serving(None, store) as site:
        st, out = await site.api("GET", "/api/v1/qr/plates", token=ADMIN_TOKEN)
        assert st == 404 and out["error"] == "qr_off"
        st, body, _ = await site.get("/q/p/abcdefgh.AAAAAAAAAAAAAAAAAA")
        assert st == 404
