"""A second `hcp-gateway serve` typed by hand beside the running service is refused with one
line, and the service keeps running: SQLite by the store's instance lock, PostgreSQL (a store
shared by design) by the heartbeats of instances with the same [mqtt] client id. A crashed
service is restarted at once (its fresh heartbeat belongs to a process that is gone)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gw_support import make_env
from harness.store import is_pg
from ops_support import cli

pytestmark = pytest.mark.slow


async def test_a_second_serve_beside_the_service_is_refused(tmp_path: Path, store_url: str) -> None:
    env = await asyncio.to_thread(make_env, tmp_path, ["dev-a"], store_url=store_url)
    try:
        await asyncio.to_thread(env.gateway.start)
        rc, out, err = await cli(env.config_path, "serve", limit_s=60)
        assert rc == 1, (out, err)
        assert "Traceback" not in out + err
        lines = [ln for ln in err.splitlines() if ln.startswith("gateway: ")]
        want = "already serving with [mqtt] client_id" if is_pg(store_url) else "already serving store"
        assert len(lines) == 1 and want in lines[0], err
        assert "gateway ready" not in out
        assert env.gateway.running

        # a crash: the next start (systemd's Restart=always) is not refused
        await asyncio.to_thread(env.gateway.kill)
        await asyncio.to_thread(env.gateway.start)
        assert env.gateway.running
        rc, out, err = await cli(env.config_path, "serve", limit_s=60)
        assert rc == 1 and "already serving" in err, (out, err)
    finally:
        await asyncio.to_thread(env.gateway.terminate)
        await asyncio.to_thread(env.broker.stop)
