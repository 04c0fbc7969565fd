"""Device health: status ordering by (b, c), hello/hb fields, time anchors, silent devices."""

from __future__ import annotations

import json

from gw_support import GatewayEnv, db_query, wait_for
from harness.store import execute

from gateway.broker_accounts import NoBrokerAccounts
from gateway.devices import DeviceService
from gateway.health import silent_devices
from gateway.store import open_store


def _dev_row(env: GatewayEnv, device_id: str) -> dict[str, object]:
    rows = db_query(env.db_path, "SELECT online, status_b, status_c, reconnects, fw, journal_depth,"
                    " last_hb_json, boot FROM devices WHERE device_id = ?", (device_id,))
    keys = ("online", "status_b", "status_c", "reconnects", "fw", "journal_depth", "last_hb_json", "boot")
    return dict(zip(keys, rows[0], strict=True))


async def test_status_order_and_heartbeat(gw_env: GatewayEnv) -> None:
    dev = gw_env.device("dev-a")
    await dev.connect()          # status online (b=1, c=1)
    try:
        await dev.hello(up=2000)
        await dev.hb(up=62000)
        await wait_for(lambda: _dev_row(gw_env, "dev-a")["last_hb_json"] is not None, what="hb flushed")
        row = _dev_row(gw_env, "dev-a")
        assert row["online"] == 1 and (row["status_b"], row["status_c"]) == (1, 1)
        assert row["reconnects"] == 1 and row["fw"] == "test-1" and row["boot"] == 1
        assert json.loads(str(row["last_hb_json"]))["up"] == 62000
        anchors = db_query(gw_env.db_path, "SELECT boot, anchor_ms FROM device_boots WHERE device_id='dev-a'")
        assert len(anchors) == 1 and anchors[0][0] == 1

        # an older will (an earlier connection, c=0) arriving late: ignored
        await dev.publish("status", {"s": "offline", "c": 0})
        # the will of the current connection: offline
        await dev.publish("status", {"s": "offline", "c": 1})
        await wait_for(lambda: _dev_row(gw_env, "dev-a")["online"] == 0, what="offline")
        # a stale "online" of that same connection cannot undo its will
        await dev.publish("status", {"s": "online", "c": 1})
        # a newer connection can
        await dev.publish("status", {"s": "online", "c": 2})
        await wait_for(lambda: _dev_row(gw_env, "dev-a")["status_c"] == 2, what="reconnect")
        row = _dev_row(gw_env, "dev-a")
        assert row["online"] == 1 and row["reconnects"] == 2
        # a will from the previous boot can never override the new boot's online
        dev.boot = 2
        await dev.publish("status", {"s": "online", "c": 1})
        dev.boot = 1
        await dev.publish("status", {"s": "offline", "c": 5})
        await wait_for(lambda: _dev_row(gw_env, "dev-a")["status_b"] == 2, what="boot 2 online")
    finally:
        await dev.disconnect()
    row = _dev_row(gw_env, "dev-a")
    assert row["online"] == 1 and row["boot"] == 2


async def test_silent_devices_query(store_url: str) -> None:
    db = await open_store(store_url)
    try:
        for d in ("dev-a", "dev-b", "dev-c"):
            await DeviceService(db, NoBrokerAccounts()).register(d, "ab" * 32, "pw")
        now = 10_000_000
        execute(store_url, "UPDATE devices SET last_seen = ? WHERE device_id = 'dev-a'", (now - 5_000,))
        execute(store_url, "UPDATE devices SET last_seen = ? WHERE device_id = 'dev-b'", (now - 700_000,))
        silent = await silent_devices(db, now, 600)
    finally:
        await db.close()
    assert [s["device_id"] for s in silent] == ["dev-b", "dev-c"]  # dev-c was never seen
