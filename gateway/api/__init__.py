"""The gateway's HTTP API subsystem, started by gateway.service (`start(ctx)`).

It opens its own store connection (separate transactions from the ingest), configures the
attribution rules from the config, serves the app of gateway.api.app, and registers a
hello hook that restores a device's state (paired/unpaired, pending invitation).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import attribution, bindings, tls
from gateway.api import guard
from gateway.api.app import make_app
from gateway.api.settings import HttpSettings
from gateway.store.db import Database

if TYPE_CHECKING:
    from gateway.service import GatewayContext

log = logging.getLogger("gateway.api")

__all__ = ["make_app", "start", "ApiRunning"]


class ApiRunning:
    def __init__(self, label: str, runner: web.AppRunner | None, db: Database,
                 tasks: set[asyncio.Task[None]]) -> None:
        self.label = label
        self._runner = runner
        self._db = db
        self._tasks = tasks

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        if self._runner is not None:
            await self._runner.cleanup()
        await self._db.close()


async def start(ctx: GatewayContext) -> ApiRunning:
    cfg = ctx.config
    attribution.configure(attribution.AttributionRules.from_config(cfg))
    http = HttpSettings.from_config(cfg)
    ssl_context = tls.server_context(http.tls_cert, http.tls_key) if http.https else None
    db = await ctx.open_store()
    tasks: set[asyncio.Task[None]] = set()

    async def restore(device_id: str) -> None:
        try:
            for t, fields in await bindings.state_for_device(db.conn, device_id):
                await ctx.send_command(device_id, t, fields)
        except Exception as e:  # noqa: BLE001 - the next hello tries again
            log.warning("state for %s after hello not sent: %s", device_id, e)

    async def on_hello(device_id: str) -> None:
        # Not awaited in the MQTT receive loop: sending waits for the broker's PUBACK.
        task = asyncio.create_task(restore(device_id))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    ctx.ingest.hello_hooks.append(on_hello)
    if not http.enabled:
        # No token configured: nobody could use the API, so do not listen at all.
        return ApiRunning("http=off", None, db, tasks)
    app = make_app(db, cfg, ctx.send_command, on_registered=ctx.registry.rekey)
    # logger: aiohttp logs every request its parser refuses with a traceback; the guard's
    # logger counts them and logs one line per interval instead.
    server_log, _ = guard.server_logger()
    runner = web.AppRunner(app, access_log=None, logger=server_log)
    await runner.setup()
    site = web.TCPSite(runner, http.host, http.port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        await db.close()
        raise OSError(e.errno, "http API cannot listen on %s:%d: %s"
                      % (http.host, http.port, e.strerror)) from e
    port = http.port
    for addr in runner.addresses:  # the real port when [http] port = 0
        if isinstance(addr, tuple) and len(addr) >= 2:
            port = int(addr[1])
    return ApiRunning("%s=%s:%d" % ("https" if http.https else "http", http.host, port), runner, db, tasks)
