"""Secrets never reach a log at any level (issue 14 item 5): before, DEBUG logged the SQL
parameters of a device registration (aiosqlite's statement log), the secret among them."""

from __future__ import annotations

import logging
import secrets

import pytest
from adm_support import ADMIN_TOKEN, Recorder, Store

from gateway.api import make_app


async def test_registration_at_debug_logs_no_secret(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    import aiohttp
    from aiohttp import web
    caplog.set_level(logging.DEBUG)          # every logger, every level
    logging.getLogger().setLevel(logging.DEBUG)
    used = [secrets.token_hex(32), secrets.token_hex(32)]
    pw = "pw-" + secrets.token_hex(8)
    app = make_app(store.db, store.cfg, Recorder())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            for secret in used:   # a registration, then a re-key
                async with http.post("http://127.0.0.1:%d/api/v1/devices" % port,
                                     headers={"Authorization": "Bearer " + ADMIN_TOKEN},
                                     json={"id": "dev-9", "secret": secret, "broker_password": pw}) as r:
                    assert r.status in (200, 201), await r.text()
    finally:
        await runner.cleanup()
    text = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert caplog.records, "nothing was logged at DEBUG: the test would prove nothing"
    for secret in used:
        assert secret not in text
    assert pw not in text
    audit = await store.fetchall("SELECT detail_json FROM audit_log")
    assert all(pw not in a[0] and all(s not in a[0] for s in used) for a in audit)
