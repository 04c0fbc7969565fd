"""A 差评 opens its complaint by itself, in the same unit of work as its record, through the
real path: test device -> real mosquitto -> gateway process (ingest's batch) -> real store;
a re-sent record never opens a second one; the duty manager's webhook hears of it once."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from gw_support import GatewayEnv, db_query, wait_for

from simulator.netutil import free_port

ADMIN = "admin-token-" + "a" * 16
WINDOW = "window-token-" + "w" * 16


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append({"delivery": request.headers["X-HCP-Delivery"], **json.loads(await request.read())})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/duty", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield "http://127.0.0.1:%d/duty" % port, got
    finally:
        await runner.cleanup()


def _seed(env: GatewayEnv) -> None:
    async def go() -> None:
        from gateway import bindings
        from gateway.store import open_store

        store = await open_store(env.db_path)
        try:
            await bindings.add_window(store, "A01", "11370303004253591T", "综合窗口", "test")
            await bindings.add_staff(store, "zhang", "张三", "test")
            await bindings.pair(store, "dev-a", "A01", "zhang", "test")
        finally:
            await store.close()

    asyncio.run(go())


def _invite(port: int, case_no: str) -> str:
    body = json.dumps({"window": "A01", "case_no": case_no, "task_name": "换领居民身份证"}).encode()
    req = urllib.request.Request(
        "http://127.0.0.1:%d/api/v1/invitations" % port,
        data=body,
        method="POST",
        headers={"Authorization": "Bearer " + WINDOW, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(json.loads(r.read())["invitation_id"])


async def test_a_bad_rating_opens_its_complaint_once_with_its_record(
    gw_env_factory: Any, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = webhook
    port = free_port()
    extra = (
        '\n[http]\nhost = "127.0.0.1"\nport = %d\nadmin_token = "%s"\nwindow_token = "%s"\n'
        "\n[complaints]\ncheck_every_s = 0.2\n"
        '\n[[notify.webhook]]\nname = "duty"\nurl = "%s"\nkinds = ["complaint.*"]\n'
        % (port, ADMIN, WINDOW, url)
    )
    env: GatewayEnv = gw_env_factory(["dev-a"], extra_config=extra)
    await asyncio.to_thread(_seed, env)
    env.gateway.start()
    dev = env.device("dev-a")
    at_ack: list[int] = []

    def on_ack(ids: list[str]) -> None:
        # The moment the ack arrives, the complaint is committed too (one unit of work).
        for rid in ids:
            at_ack.append(len(db_query(env.db_path, "SELECT 1 FROM complaints WHERE record_id = ?", (rid,))))

    dev.on_ack = on_ack
    await dev.connect()
    try:
        await dev.hello()
        await wait_for(lambda: bool(dev.commands("paired")), what="paired")
        inv = await asyncio.to_thread(_invite, port, "370303-2026-000777")
        await wait_for(lambda: bool(dev.commands("invite")), what="invite")
        rec = dev.new_record(grade="vd", kind="rated", inv=inv, w=int(time.time()))  # a synced clock
        rid = await dev.send_record(rec)
        await wait_for(lambda: dev.acks.get(rid) == 1, what="ack")
        await dev.send_record(rec)  # the ack was "lost": the device re-sends
        await dev.send_record(rec)
        await wait_for(lambda: dev.acks.get(rid, 0) >= 2, what="second ack")
        good = dev.new_record(grade="vs", kind="walkup")
        gid = await dev.send_record(good)  # not a 差评, not a rating: no complaint
        await wait_for(lambda: gid in dev.acks, what="ack of the walk-up")
        await wait_for(lambda: len(got) >= 1, limit_s=15, what="the duty manager's webhook")
        await asyncio.sleep(0.6)  # a few more rounds of the leader's job
    finally:
        await dev.disconnect()
    assert at_ack[0] == 1
    rows = db_query(
        env.db_path,
        "SELECT id, record_id, grade, case_no, window_id, staff_account, staff_name,"
        " dept_code, state, contact_due_ms FROM complaints",
    )
    assert len(rows) == 1
    cid, crid, grade, case_no, window, staff, name, dept, state, due = rows[0]
    assert (crid, grade, case_no, window, staff, name, dept, state) == (
        rid,
        "vd",
        "370303-2026-000777",
        "A01",
        "zhang",
        "张三",
        "11370303004253591T",
        "opened",
    )
    assert due is not None
    assert [g["kind"] for g in got] == ["complaint.opened"]
    assert got[0]["delivery"] == "complaint-%d-opened" % cid and got[0]["payload"]["record_id"] == rid
