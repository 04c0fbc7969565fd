"""A complaint's whole life by the HTTP API (/api/v1/complaints...) on a real aiohttp server
and a real store, on the app's clock: refusals as JSON errors, the appeal period, the lists of
due-soon and overdue work orders, the person acting recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN, Recorder, open_store
from aiohttp import web
from cmp_support import COMPLAINTS, Clock, Hall, local, service

from gateway.api import make_app
from simulator.netutil import free_port


@dataclass
class Api:
    base: str
    http: aiohttp.ClientSession
    hall: Hall

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = ADMIN_TOKEN
    ) -> tuple[int, Any]:
        headers = {"Authorization": "Bearer " + token} if token else {}
        kw: dict[str, Any] = {"json": body} if body is not None else {}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            return r.status, await r.json()


@pytest.fixture
async def api(tmp_path: Path, store_url: str) -> AsyncIterator[Api]:
    store = await open_store(tmp_path, store_url, complaints=dict(COMPLAINTS))
    clock = Clock(local(2026, 9, 30, 16))
    app = make_app(store.db, store.cfg, Recorder(), clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api("http://127.0.0.1:%d" % port, http, Hall(store, clock, service(store, clock)))
    finally:
        await runner.cleanup()
        await store.db.close()


async def test_a_complaints_whole_life_by_the_api(api: Api) -> None:
    cid = await api.hall.complaint(local(2026, 9, 30, 16), grade="vd")
    st, body = await api.call("GET", "/api/v1/complaints?open=1")
    assert st == 200 and body["total"] == 1 and body["hidden"] == 0
    c = body["complaints"][0]
    assert (c["id"], c["state"], c["grade_zh"], c["window_id"], c["staff_account"]) == (
        cid,
        "opened",
        "非常不满意",
        "A01",
        "zhang",
    )
    assert c["deadlines"]["contact"]["due"] == "2026-10-08 24:00+08:00"
    one = "/api/v1/complaints/%d" % cid
    api.hall.clock.t = local(2026, 10, 8, 9)
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("reasons", {"tags": ["V03"], "text": "态度生硬", "actor": "李四"}, "opened"),
        ("contact", {"note": "电话联系办事群众，了解情况", "actor": "李四"}, "contacted"),
        ("verify", {"valid": True, "note": "12345 热线核实属实", "actor": "12345"}, "rectifying"),
        ("rectify", {"note": "窗口人员已批评教育，加强培训", "actor": "李四"}, "rectified"),
        ("callback", {"grade": "s", "note": "群众表示满意", "actor": "李四"}, "callback_done"),
        ("close", {"actor": "李四"}, "closed"),
    ]
    for action, payload, state in steps:
        st, body = await api.call("POST", one + "/" + action, payload)
        assert st == 200, (action, body)
        assert body["state"] == state
    assert [(h["action"], h["actor"]) for h in body["history"]] == [
        ("open", "gateway"),
        ("reasons", "api:admin (李四)"),
        ("contact", "api:admin (李四)"),
        ("verify", "api:admin (12345)"),
        ("rectify", "api:admin (李四)"),
        ("callback", "api:admin (李四)"),
        ("close", "api:admin (李四)"),
    ]
    assert body["deadlines"]["contact"]["status"] == "met" and body["tag_names"] == ["服务态度恶劣"]
    st, err = await api.call("POST", one + "/rectify", {"note": "again"})
    assert (st, err["error"]) == (409, "bad_transition")
    assert err["message"] == "complaint %d is closed: rectify is possible only when it is rectifying" % cid

    # The appeal period (3 working days from 30 Sep 16:00) ended Saturday 10 October, 24:00.
    api.hall.clock.t = local(2026, 10, 11, 8)
    st, err = await api.call("POST", one + "/appeal", {"note": "wrong button"})
    assert (st, err["error"]) == (409, "appeal_too_late")


async def test_appeal_review_overturn_and_the_lists(api: Api) -> None:
    a = await api.hall.complaint(local(2026, 9, 30, 16), grade="d")
    b = await api.hall.complaint(local(2026, 9, 30, 16, 10), grade="vd")
    api.hall.clock.t = local(2026, 10, 9, 10)
    one = "/api/v1/complaints/%d" % b
    for payload in ({"note": "监控显示群众误按"},):
        st, body = await api.call("POST", one + "/appeal", {**payload, "actor": "zhang"})
        assert st == 200 and body["appeal_state"] == "appealed"
        assert body["deadlines"]["review"]["due"] == "2026-10-19 24:00+08:00"
    st, err = await api.call(
        "POST", one + "/review", {"decision": "overturn", "reason": "mistaken_press", "note": "x"}
    )
    assert (st, err["error"]) == (409, "bad_transition")  # start the review first
    st, body = await api.call("POST", one + "/review", {"decision": "start", "actor": "政务服务管理办公室"})
    assert st == 200 and body["appeal_state"] == "under_review"
    st, body = await api.call(
        "POST",
        one + "/review",
        {"decision": "overturn", "reason": "mistaken_press", "note": "核实为误评，评价结果不予采纳"},
    )
    assert st == 200 and (body["appeal_state"], body["state"]) == ("overturned", "closed")
    assert body["exclusion"]["reason"] == "mistaken_press"
    # Lists: contact for `a` was due 8 October 24:00: overdue now; nothing due soon.
    st, body = await api.call("GET", "/api/v1/complaints?due=overdue")
    assert st == 200 and [c["id"] for c in body["complaints"]] == [a]
    st, body = await api.call("GET", "/api/v1/complaints?due=soon")
    assert st == 200 and body["total"] == 0
    st, body = await api.call("GET", "/api/v1/complaints?state=closed")
    assert [c["id"] for c in body["complaints"]] == [b]
    st, body = await api.call("GET", "/api/v1/complaint-tags")
    assert st == 200 and body["in_force"] == "2026.1" and body["sets"]["2026.1"]["vd"][0]["code"] == "V01"
    st, body = await api.call("GET", "/api/v1/complaint-corrections")
    assert st == 200 and body["total"] == 0  # no uplink here: nothing went to a platform


@pytest.mark.parametrize(
    "method,path,payload,token,status,code",
    [
        ("GET", "/api/v1/complaints", None, None, 401, "unauthorized"),
        ("GET", "/api/v1/complaints", None, WINDOW_TOKEN, 401, "unauthorized"),
        ("GET", "/api/v1/complaints/999", None, ADMIN_TOKEN, 404, "unknown_complaint"),
        ("GET", "/api/v1/complaints/abc", None, ADMIN_TOKEN, 404, "not_found"),
        ("GET", "/api/v1/complaints?due=later", None, ADMIN_TOKEN, 400, "bad_due"),
        ("GET", "/api/v1/complaints?state=lost", None, ADMIN_TOKEN, 400, "bad_state"),
        (
            "POST",
            "/api/v1/complaints/1/contact",
            {"note": "x", "colour": 1},
            ADMIN_TOKEN,
            400,
            "unknown_field",
        ),
        ("POST", "/api/v1/complaints/1/contact", {"note": ""}, ADMIN_TOKEN, 400, "missing_note"),
        ("POST", "/api/v1/complaints/1/contact", ["x"], ADMIN_TOKEN, 400, "bad_input"),
        ("POST", "/api/v1/complaints/1/verify", {"note": "x"}, ADMIN_TOKEN, 400, "missing_field"),
        (
            "POST",
            "/api/v1/complaints/1/verify",
            {"valid": False, "reason": "x", "note": "y"},
            ADMIN_TOKEN,
            400,
            "bad_reason",
        ),
        ("POST", "/api/v1/complaints/1/callback", {"grade": "great"}, ADMIN_TOKEN, 400, "bad_grade"),
        ("POST", "/api/v1/complaints/1/reasons", {"tags": "V01"}, ADMIN_TOKEN, 400, "bad_input"),
        ("POST", "/api/v1/complaints/1/review", {"decision": "maybe"}, ADMIN_TOKEN, 400, "bad_decision"),
        (
            "POST",
            "/api/v1/complaints/1/exclude",
            {"reason": "ugly", "note": "x"},
            ADMIN_TOKEN,
            400,
            "bad_reason",
        ),
    ],
)
async def test_bad_requests_are_json_errors_and_change_nothing(
    api: Api, method: str, path: str, payload: Any, token: str | None, status: int, code: str
) -> None:
    cid = await api.hall.complaint(local(2026, 9, 30, 16))
    assert cid == 1
    st, body = await api.call(method, path, payload, token=token)
    assert (st, body["error"]) == (status, code), body
    assert "Traceback" not in body["message"]
    st, c = await api.call("GET", "/api/v1/complaints/1")
    assert (c["state"], c["verdict"], c["tags"], len(c["history"])) == ("opened", "pending", [], 1)
