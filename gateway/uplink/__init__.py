"""Uplink to the provincial 好差评 platform: adapters, client, push runs, scheduler,
reconciliation. See docs/uplink.md.

The gateway service calls start(ctx) (gateway.service.SUBSYSTEMS): with an [uplink]
section in the config the scheduler runs as a task until the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any


@dataclass
class UplinkRunning:
    label: str
    stop_event: asyncio.Event
    task: asyncio.Task[None] | None

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 10.0)


async def start(ctx: Any) -> UplinkRunning:
    from gateway.uplink.scheduler import run_scheduler
    from gateway.uplink.settings import load_settings

    stop = asyncio.Event()
    raw = getattr(ctx.config, "raw", {}) or {}
    if "uplink" not in raw:
        return UplinkRunning("uplink=off", stop, None)
    settings = load_settings(ctx.config)   # UplinkConfigError (a ConfigError) stops the start
    if not settings.enabled:
        return UplinkRunning("uplink=off", stop, None)
    task = asyncio.create_task(run_scheduler(ctx.db, ctx.config, stop), name="uplink")
    return UplinkRunning("uplink=%s@%s" % (settings.adapter, settings.url), stop, task)
