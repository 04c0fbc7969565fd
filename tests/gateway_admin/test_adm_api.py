"""The HTTP API on a real aiohttp server (free loopback port), a real SQLite store and a
recording send_command (the end-to-end run with the broker is test_adm_e2e.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN, Recorder, Store, make_config
from aiohttp import web

from gateway import bindings, invitations
from gateway.api import district as district_api
from gateway.api import make_app
from gateway.api import org as org_api
from gateway.api.openapi import openapi_spec
from simulator.netutil import free_port


@dataclass
class Api:
    base: str
    http: aiohttp.ClientSession
    send: Recorder
    store: Store
    clock: list[int]

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = WINDOW_TOKEN,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": "Bearer " + token} if token else {}
        kw: dict[str, Any] = (
            {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
        )
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            return r.status, await r.json()


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Api]:
    send = Recorder()
    clock = [bindings.now_ms()]
    app = make_app(store.db, store.cfg, send, clock=lambda: clock[0])
    # The service runs invitation expiry on its leader; here the same job on the test's clock.
    stop = asyncio.Event()
    expiry = asyncio.create_task(invitations.expiry_job(store.db, lambda: clock[0], 0.05)(stop))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "test")
    try:
        async with aiohttp.ClientSession() as http:
            yield Api("http://127.0.0.1:%d" % port, http, send, store, clock)
    finally:
        stop.set()
        await expiry
        await runner.cleanup()


CASE = {
    "window": "A01",
    "case_no": "370303-2026-000123",
    "task_code": "11370300MB28503N1X4000117008000",
    "task_name": "城乡居民养老保险参保登记",
    "dept_code": "11370303004253591T",
    "applicant_type": 1,
    "countdown_s": 30,
}


async def test_invitation_lifecycle_create_status_rated(api: Api) -> None:
    st, body = await api.call("POST", "/api/v1/invitations", CASE)
    assert st == 201, body
    inv = body["invitation_id"]
    assert body["device_id"] == "dev-1" and body["status"] == "pending" and body["sent"] is True
    assert api.send.sent == [
        ("dev-1", "invite", {"i": inv, "case": CASE["case_no"], "item": CASE["task_name"], "cd": 30})
    ]
    st, body = await api.call("GET", "/api/v1/invitations/" + inv)
    assert st == 200 and body["status"] == "pending" and "grade" not in body
    # The device's rated record comes through the core's ingest (attribution).
    rec = await api.store.rec("dev-1", "rated", api.clock[0] + 5000, "bs", inv)
    st, body = await api.call("GET", "/api/v1/invitations/" + inv)
    assert (st, body["status"], body["grade"], body["record_id"]) == (200, "rated", "bs", rec["record_id"])
    st, body = await api.call("DELETE", "/api/v1/invitations/" + inv)
    assert (st, body["error"]) == (409, "not_pending")
    # 一次一评: the same case cannot be invited again.
    st, body = await api.call("POST", "/api/v1/invitations", CASE)
    assert (st, body["error"]) == (409, "case_already_rated")


async def test_cancel_supersede_and_expire(api: Api) -> None:
    _, a = await api.call("POST", "/api/v1/invitations", {**CASE, "case_no": "C-1"})
    st, b = await api.call("POST", "/api/v1/invitations", {**CASE, "case_no": "C-2"})
    assert st == 201 and b["superseded"] == [a["invitation_id"]]
    assert [t for _, t, _ in api.send.sent] == ["invite", "cancel", "invite"]
    assert api.send.sent[1] == ("dev-1", "cancel", {"i": a["invitation_id"]})
    _, got = await api.call("GET", "/api/v1/invitations/" + a["invitation_id"])
    assert got["status"] == "superseded"
    st, got = await api.call("DELETE", "/api/v1/invitations/" + b["invitation_id"])
    assert (st, got["status"], got["sent"]) == (200, "cancelled", True)
    assert api.send.sent[-1] == ("dev-1", "cancel", {"i": b["invitation_id"]})
    # Expiry: countdown 30 s + grace 30 s (default) on the app's clock; the background task closes it.
    _, c = await api.call("POST", "/api/v1/invitations", {**CASE, "case_no": "C-3"})
    api.clock[0] += 59_000
    assert (await api.call("GET", "/api/v1/invitations/" + c["invitation_id"]))[1]["status"] == "pending"
    api.clock[0] += 2_000
    for _ in range(100):
        status, _, _ = await api.store.invitation_status(c["invitation_id"])
        if status == "expired":
            break
        await asyncio.sleep(0.02)
    assert status == "expired"
    st, listed = await api.call("GET", "/api/v1/invitations?status=expired")
    assert st == 200 and [i["invitation_id"] for i in listed["invitations"]] == [c["invitation_id"]]


async def test_idempotent_retry_staff_target_and_offline_device(api: Api) -> None:
    body = {**CASE, "window": None, "staff_account": "zhang", "invitation_id": "WS-2026-0001"}
    del body["window"]
    st, first = await api.call("POST", "/api/v1/invitations", body)
    st2, again = await api.call("POST", "/api/v1/invitations", body)
    assert (st, st2) == (201, 200) and first["invitation_id"] == again["invitation_id"] == "WS-2026-0001"
    assert len(api.send.sent) == 1  # the retry did not invite twice
    st, clash = await api.call("POST", "/api/v1/invitations", {**body, "case_no": "OTHER"})
    assert (st, clash["error"]) == (409, "id_in_use")
    api.send.fail.add("dev-1")
    st, off = await api.call("POST", "/api/v1/invitations", {**CASE, "case_no": "C-OFF"})
    assert st == 201 and off["sent"] is False and "reconnects" in off["note"]
    # ... and the invitation is what the device gets back at its next hello.
    state = await bindings.state_for_device(api.store.db, "dev-1")
    assert state[0] == ("paired", {"win": "A01", "clerk": "张三"})
    assert state[1][0] == "invite" and state[1][1]["i"] == off["invitation_id"]


@pytest.mark.parametrize(
    "method,path,body,token,status,code",
    [
        ("POST", "/api/v1/invitations", CASE, None, 401, "unauthorized"),
        ("POST", "/api/v1/invitations", CASE, "wrong-token-xxxxxxxxxxxx", 401, "unauthorized"),
        ("POST", "/api/v1/devices", {"id": "x"}, WINDOW_TOKEN, 401, "unauthorized"),
        ("POST", "/api/v1/invitations", {**CASE, "window": "Z99"}, WINDOW_TOKEN, 404, "unknown_window"),
        ("POST", "/api/v1/invitations", {**CASE, "window": "A02"}, WINDOW_TOKEN, 409, "no_device_bound"),
        ("POST", "/api/v1/invitations", {**CASE, "staff_account": "li"}, WINDOW_TOKEN, 400, "bad_target"),
        ("POST", "/api/v1/invitations", {**CASE, "countdown_s": 3}, WINDOW_TOKEN, 400, "bad_input"),
        ("POST", "/api/v1/invitations", {**CASE, "applicant_type": 3}, WINDOW_TOKEN, 400, "bad_input"),
        ("POST", "/api/v1/invitations", {**CASE, "case_no": "x" * 65}, WINDOW_TOKEN, 400, "bad_input"),
        ("POST", "/api/v1/invitations", {**CASE, "invitation_id": "bad id!"}, WINDOW_TOKEN, 400, "bad_input"),
        ("POST", "/api/v1/invitations", {**CASE, "extra": 1}, WINDOW_TOKEN, 400, "unknown_field"),
        ("POST", "/api/v1/invitations", [1, 2], WINDOW_TOKEN, 400, "bad_input"),
        ("GET", "/api/v1/invitations/nope", None, WINDOW_TOKEN, 404, "unknown_invitation"),
        ("GET", "/api/v1/invitations?status=weird", None, WINDOW_TOKEN, 400, "bad_status"),
        ("GET", "/api/v1/invitations?limit=0", None, WINDOW_TOKEN, 400, "bad_limit"),
        ("GET", "/api/v1/invitations?limit=x", None, WINDOW_TOKEN, 400, "bad_limit"),
        ("DELETE", "/api/v1/invitations/bad.id", None, WINDOW_TOKEN, 400, "bad_invitation_id"),
        ("GET", "/api/v1/nothing", None, WINDOW_TOKEN, 404, "not_found"),
        ("PUT", "/api/v1/invitations", CASE, WINDOW_TOKEN, 405, "method_not_allowed"),
        (
            "POST",
            "/api/v1/bindings",
            {"device": "dev-2", "window": "A01", "staff_account": "li"},
            ADMIN_TOKEN,
            409,
            "already_bound",
        ),
        ("POST", "/api/v1/bindings", {"device": "dev-2"}, ADMIN_TOKEN, 400, "missing_field"),
        ("DELETE", "/api/v1/bindings/dev-2", None, ADMIN_TOKEN, 404, "not_bound"),
        (
            "POST",
            "/api/v1/devices",
            {"id": "Bad_Id", "secret": "00", "broker_password": "p"},
            ADMIN_TOKEN,
            400,
            "bad_registration",
        ),
    ],
)
async def test_bad_requests_get_clear_json_errors(
    api: Api, method: str, path: str, body: Any, token: str | None, status: int, code: str
) -> None:
    st, got = await api.call(method, path, body, token)
    assert (st, got["error"]) == (status, code), got
    assert got["message"]
    assert api.send.sent == []


async def test_bad_json_body(api: Api) -> None:
    st, got = await api.call("POST", "/api/v1/invitations", raw=b"{not json")
    assert (st, got["error"]) == (400, "bad_json")


async def test_bindings_endpoint_notifies_devices(api: Api) -> None:
    st, body = await api.call(
        "POST",
        "/api/v1/bindings",
        {"device": "dev-2", "window": "A02", "staff_account": "zhang", "force": True, "actor": "alice"},
        ADMIN_TOKEN,
    )
    assert st == 201 and body["binding"]["created_by"] == "api:admin (alice)"
    assert [c["device_id"] for c in body["closed"]] == ["dev-1"]
    assert api.send.sent == [("dev-1", "unpaired", {}), ("dev-2", "paired", {"win": "A02", "clerk": "张三"})]
    st, body = await api.call("DELETE", "/api/v1/bindings/dev-2", None, ADMIN_TOKEN)
    assert st == 200 and body["notified"] == ["dev-2"] and api.send.sent[-1] == ("dev-2", "unpaired", {})
    st, body = await api.call("GET", "/api/v1/bindings?history=1", None, ADMIN_TOKEN)
    assert [(b["device_id"], b["valid_to_ms"] is None) for b in body["bindings"]] == [
        ("dev-1", False),
        ("dev-2", False),
    ]


async def test_device_registration_writes_the_broker_password_file(store: Store, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, broker={"password_file": str(tmp_path / "passwd")})
    app = make_app(store.db, cfg, Recorder())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            req = {"id": "dev-new", "secret": "ab" * 32, "broker_password": "pw-new", "fw": "1.0.0"}
            hdr = {"Authorization": "Bearer " + ADMIN_TOKEN}
            async with http.post("http://127.0.0.1:%d/api/v1/devices" % port, json=req, headers=hdr) as r:
                assert r.status == 201 and (await r.json()) == {"id": "dev-new", "created": True}
            async with http.post("http://127.0.0.1:%d/api/v1/devices" % port, json=req, headers=hdr) as r:
                assert r.status == 200 and (await r.json())["created"] is False
    finally:
        await runner.cleanup()
    row = await store.fetchone("SELECT fw FROM devices WHERE device_id = 'dev-new'")
    assert row is not None and row[0] == "1.0.0"
    assert (tmp_path / "passwd").read_text().startswith("dev-new:")


async def test_openapi_describes_every_route(api: Api) -> None:
    async with api.http.get(api.base + "/api/openapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert doc == openapi_spec() and doc["openapi"].startswith("3.")
    app = make_app(api.store.db, api.store.cfg, Recorder())
    app_routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    # + the complaints' routes (gateway/api/complaints.py), the QR channel's (gateway/api/qr.py),
    # the organisation's and the district's
    assert len(app_routes) == 9 + 14 + 11 + len(org_api.ROUTES) + len(district_api.ROUTES)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert app_routes == documented
    # Every $ref resolves.
    text = str(doc)
    for ref in set(re.findall(r"#/components/(\w+)/(\w+)", text)):
        assert ref[1] in doc["components"][ref[0]], ref
