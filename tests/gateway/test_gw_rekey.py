"""Re-keying takes effect at once (issue 20): after a device is registered again with a new
secret by another process (the CLI, another gateway instance), the running gateway refuses
the old secret within its change-feed poll (0.25 s) -- before, it kept accepting it forever.
Runs on both store backends."""

from __future__ import annotations

import asyncio
import secrets

from gw_support import GatewayEnv, rejection_counts, wait_for

from gateway.broker_accounts import NoBrokerAccounts
from gateway.devices import DeviceService
from gateway.store import open_store


async def test_old_secret_refused_at_once_after_rekey_by_another_process(gw_env: GatewayEnv) -> None:
    dev = gw_env.device("dev-a")
    await dev.connect()
    try:
        rid = await dev.press()
        await wait_for(lambda: rid in dev.acks, what="ack with the first secret")
        old = dev.secret_hex
        new = secrets.token_hex(32)
        # Another process: its own store connection, not the gateway's registry.
        store = await open_store(gw_env.db_path)
        try:
            await DeviceService(store, NoBrokerAccounts()).register("dev-a", new, "pw-dev-a")
        finally:
            await store.close()
        await asyncio.sleep(0.6)   # a couple of change-feed polls, far below the old 5 s key re-read
        before = rejection_counts(gw_env.db_path).get("bad_mac", 0)
        stale = await dev.press()          # still signed with the old secret
        await asyncio.sleep(0.5)
        assert stale not in dev.acks, "the old secret was still accepted"
        await wait_for(lambda: rejection_counts(gw_env.db_path).get("bad_mac", 0) > before,
                       what="bad_mac counted for the old secret")
        dev.secret_hex = new
        fresh = await dev.press()
        await wait_for(lambda: fresh in dev.acks, what="ack with the new secret")
        assert old != new
    finally:
        await dev.disconnect()
