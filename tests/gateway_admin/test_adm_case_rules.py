"""Cases as the report and the province count them (issue 16, "Also fix"): a withdrawn case is
not a case, and an invitation the province could never accept is refused at the API (or filled
from configured defaults). Real store, real aiohttp server. Each failed before issue 16."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from adm_support import WINDOW_TOKEN, Recorder, Store, open_store
from aiohttp import web

from gateway import bindings, invitations, reports
from gateway.api import make_app
from gateway.invitations import InvitationRequest, InvitationRules
from simulator.netutil import free_port

S = 1000
DEPT = "11370303004253591J"


async def test_a_withdrawn_case_is_not_counted_as_a_case(store: Store) -> None:
    t0 = int(dt.datetime(2026, 11, 24, 9, 0, tzinfo=store.cfg.hall.tz).timestamp()) * S
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "t", at_ms=t0)
    rules = InvitationRules()
    out = await invitations.create(
        store.db, InvitationRequest(case_no="W-1", window_id="A01"), "t", rules, at_ms=t0
    )
    await invitations.cancel(store.db, out.invitation.id, "t", at_ms=t0 + 5 * S)  # withdrawn
    out = await invitations.create(
        store.db, InvitationRequest(case_no="W-2", window_id="A01"), "t", rules, at_ms=t0 + 60 * S
    )
    await store.rec("dev-1", "rated", t0 + 70 * S, "vs", out.invitation.id)
    rep = await reports.day_report(store.db, store.cfg, "2026-11-24")
    z = next(r for r in rep.rows if r.staff_account == "zhang")
    assert (z.cases, z.ratings, z.cancelled, z.rating_rate) == (1, 1, 1, 1.0)
    assert rep.total.cases == 1 and rep.total.rating_rate == 1.0


async def _serve(store: Store) -> AsyncIterator[str]:
    app = make_app(store.db, store.cfg, Recorder())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await bindings.pair(store.db, "dev-1", "A01", "zhang", "test")
    try:
        yield "http://127.0.0.1:%d" % port
    finally:
        await runner.cleanup()


async def _post(base: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            base + "/api/v1/invitations", json=body, headers={"Authorization": "Bearer " + WINDOW_TOKEN}
        ) as r,
    ):
        return r.status, await r.json()


UPLINK = {"url": "http://127.0.0.1:9", "area_code": "370303"}


async def test_invitation_the_province_cannot_take_is_refused_naming_the_field(
    tmp_path: Path, store_url: str
) -> None:
    store = await open_store(tmp_path, store_url, uplink=dict(UPLINK))
    try:
        async for base in _serve(store):
            full = {
                "window": "A01",
                "case_no": "P-1",
                "task_code": "T1",
                "task_name": "换领",
                "dept_code": DEPT,
                "applicant_type": 1,
            }
            for missing in ("applicant_type", "task_code", "task_name"):
                body = {k: v for k, v in full.items() if k != missing}
                st, ans = await _post(base, body)
                assert (st, ans["error"]) == (400, "missing_field"), (missing, ans)
                assert ans["message"].startswith(missing + " is required by the provincial platform")
            st, ans = await _post(base, {**full, "dept_code": "12"})
            assert (st, ans["error"]) == (400, "bad_dept_code") and "dept_code" in ans["message"]
            st, ans = await _post(base, full)
            assert st == 201, ans
    finally:
        await store.db.close()


async def test_missing_fields_are_filled_from_configured_defaults(tmp_path: Path, store_url: str) -> None:
    store = await open_store(
        tmp_path,
        store_url,
        uplink=dict(UPLINK),
        invitations={
            "default_applicant_type": 1,
            "default_task_code": "DEFAULT-T",
            "default_task_name": "综合受理",
        },
    )
    try:
        async for base in _serve(store):
            st, ans = await _post(base, {"window": "A01", "case_no": "P-2"})  # dept from the window
            assert st == 201, ans
            inv = await invitations.get_invitation(store.db, ans["invitation_id"])
            assert (inv.applicant_type, inv.task_code, inv.task_name) == (1, "DEFAULT-T", "综合受理")
    finally:
        await store.db.close()
