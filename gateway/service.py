"""The gateway service: MQTT ingest, group committer, health, and the other subsystems.

`serve(config)` runs until cancelled (SIGTERM/SIGINT in `python -m gateway serve`). It
prints one readiness line once the MQTT subscription is in place and every subsystem has
started, e.g. "gateway ready mqtt=127.0.0.1:1883 http=127.0.0.1:8080 pid=1234"; the test
runner (simulator/gateway_proc.py) waits for it.

Other subsystems plug in without this file knowing them: a module in SUBSYSTEMS that
defines `async def start(ctx: GatewayContext) -> Running` is started after the store is
open and stopped (`await running.stop()`) before it closes; `running.label` (e.g.
"http=127.0.0.1:8080") goes into the readiness line.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiomqtt

from gateway import health, timesync
from gateway.config import Config
from gateway.ingest import Ingest, load_attribution
from gateway.mqtt import Downlink, incoming, session
from gateway.store.db import Database, open_db
from gateway.store.devices import DeviceRegistry, now_ms
from protocol import topics

log = logging.getLogger("gateway.service")

SUBSYSTEMS = ("gateway.api", "gateway.uplink")
FLUSH_EVERY_S = 1.0
# Stopping a task: cancel, wait this long, cancel again (a cancel can be lost, see
# _stop_task), for at most TASK_STOP_LIMIT_S in all.
TASK_CANCEL_RETRY_S = 0.25
TASK_STOP_LIMIT_S = 5.0
SUBSYSTEM_STOP_LIMIT_S = 10.0


class Running(Protocol):
    label: str

    async def stop(self) -> None: ...


@dataclass
class GatewayContext:
    """What a subsystem gets: config, the core's store and its command sender."""

    config: Config
    db: Database                      # the ingest's connection: prefer open_store() for writers
    registry: DeviceRegistry
    downlink: Downlink
    ingest: Ingest
    send_command: Callable[[str, str, dict[str, Any]], Awaitable[None]]
    extra: dict[str, Any] = field(default_factory=dict)

    async def open_store(self) -> Database:
        """A separate connection to the same database (own transactions; WAL makes this cheap)."""
        return await open_db(self.config.store.path, run_migrations=False)


async def _mqtt_loop(cfg: Config, ingest: Ingest, downlink: Downlink, connected: asyncio.Event,
                     stopping: asyncio.Event) -> None:
    backoff = 0.2
    while not stopping.is_set():
        try:
            async with session(cfg.mqtt) as client:
                await client.subscribe(topics.up("+", "+"), qos=1)
                downlink.client = client
                backoff = 0.2
                if not connected.is_set():
                    connected.set()
                else:
                    log.info("reconnected to mqtt %s:%d", cfg.mqtt.host, cfg.mqtt.port)
                async for message in incoming(client):
                    payload = message.payload
                    if not isinstance(payload, bytes | bytearray):
                        payload = str(payload).encode()
                    await ingest.handle(message.topic.value, bytes(payload))
        except aiomqtt.MqttError as e:
            downlink.client = None
            if stopping.is_set():
                return  # an MqttError raised while we were being stopped is not a reason to retry
            log.warning("mqtt %s:%d: %s; retrying in %.1fs", cfg.mqtt.host, cfg.mqtt.port, e, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


STATS_EVERY_S = 10.0


async def _stats_loop(ingest: Ingest, downlink: Downlink) -> None:
    """One INFO line per interval while traffic flows: operators see rates without tooling."""
    last = (0, 0)
    while True:
        await asyncio.sleep(STATS_EVERY_S)
        s = ingest.stats
        if (s.received, s.acked) != last:
            log.info("ingest: received %d, records %d, stored %d, duplicates %d, acked %d, batches %d, "
                     "pending %d, rejected %s, commands sent %d failed %d",
                     s.received, s.records_received, s.stored, s.duplicates, s.acked, s.batches,
                     ingest.pending, dict(ingest.rejections.totals), downlink.sent, downlink.failed)
            last = (s.received, s.acked)


async def _flush_loop(db: Database, registry: DeviceRegistry, anchors: timesync.Anchors,
                      ingest: Ingest) -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY_S)
        try:
            await _flush(db, registry, anchors, ingest)
        except Exception:
            log.exception("periodic flush of device health failed; will retry")


async def _flush(db: Database, registry: DeviceRegistry, anchors: timesync.Anchors, ingest: Ingest) -> None:
    # Anchors first: whoever sees a heartbeat's health fields stored also finds its anchor.
    async with db.transaction() as conn:
        await anchors.save(conn, now_ms())
    await registry.flush()
    await ingest.rejections.save(db)


async def _start_subsystems(ctx: GatewayContext, started: list[Running]) -> None:
    """Start each subsystem, appending it to `started` at once: if a later one fails, the
    shutdown still stops those already running."""
    for name in SUBSYSTEMS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            continue
        mod = importlib.import_module(name)
        start = getattr(mod, "start", None)
        if start is None:
            continue
        started.append(await start(ctx))


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    db = await open_db(config.store.path)
    tasks: list[asyncio.Task[None]] = []
    running: list[Running] = []
    ingest: Ingest | None = None
    downlink: Downlink | None = None
    registry = DeviceRegistry(db)
    anchors = timesync.Anchors()
    stopping = asyncio.Event()
    try:
        n = await registry.load()
        downlink = Downlink(registry)
        ingest = Ingest(config, db, registry, anchors, downlink, attribute=load_attribution())
        ctx = GatewayContext(config, db, registry, downlink, ingest, downlink.send_command)
        connected = asyncio.Event()
        tasks.append(asyncio.create_task(ingest.run_committer(), name="committer"))
        tasks.append(asyncio.create_task(_flush_loop(db, registry, anchors, ingest), name="flush"))
        tasks.append(asyncio.create_task(_stats_loop(ingest, downlink), name="stats"))
        dev_cfg = config.devices
        tasks.append(asyncio.create_task(
            health.health_task(registry, dev_cfg.silent_after_s, dev_cfg.health_check_s, now_ms),
            name="health"))
        tasks.append(asyncio.create_task(_mqtt_loop(config, ingest, downlink, connected, stopping),
                                         name="mqtt"))
        await _start_subsystems(ctx, running)
        await _wait_first(connected, tasks)
        labels = " ".join(r.label for r in running) or "http=off"
        print(f"gateway ready mqtt={config.mqtt.host}:{config.mqtt.port} {labels} "
              f"devices={n} pid={os.getpid()}", flush=True)
        log.info("attribution hook: %s", "gateway.attribution" if ingest.attribute else "none")
        if ready is not None:
            ready.set()
        # asyncio.wait (unlike gather) leaves the tasks running when serve() is cancelled,
        # so the shutdown below can still commit and ack over the live connection.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        stopping.set()
        await _shutdown(db, tasks, running, ingest, downlink, registry, anchors)


async def _wait_first(connected: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Wait for the MQTT subscription, surfacing a task that died first (e.g. a DB error)."""
    waiter = asyncio.create_task(connected.wait())
    try:
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    for t in done:
        if t is not waiter:
            t.result()  # raises its exception
            raise RuntimeError(f"task {t.get_name()} ended before the gateway was ready")


async def _shutdown(db: Database, tasks: list[asyncio.Task[None]], running: list[Running],
                    ingest: Ingest | None, downlink: Downlink | None, registry: DeviceRegistry,
                    anchors: timesync.Anchors) -> None:
    # Stop receiving first, then commit+ack what was received, then close the store.
    mqtt_tasks = [t for t in tasks if t.get_name() == "mqtt"]
    other = [t for t in tasks if t.get_name() != "mqtt"]
    for r in reversed(running):
        await _bounded(r.stop(), SUBSYSTEM_STOP_LIMIT_S, f"stopping {r.label}")
    committer_done = False
    if ingest is not None:
        ingest.accepting = False
    for t in other:
        await _stop_task(t)
    if ingest is not None and downlink is not None and downlink.client is not None:
        with contextlib.suppress(Exception):
            await ingest.drain()
            await downlink.drain()
            committer_done = True
    for t in mqtt_tasks:
        await _stop_task(t)
    if ingest is not None:
        with contextlib.suppress(Exception):
            await _flush(db, registry, anchors, ingest)
    await db.close()
    if ingest is not None:
        log.info("stopped: %s%s", ingest.stats, "" if committer_done else " (queued records not committed)")


async def _stop_task(task: asyncio.Task[None]) -> None:
    """Cancel and wait, again and again, within a time limit. A single cancel can be lost: on
    Python 3.11 asyncio.wait_for (inside aiomqtt) returns the result of a future that
    completes together with the cancel (the broker's CONNACK) and drops the cancel; and a
    task that catches the CancelledError may carry on. Never waits without a bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TASK_STOP_LIMIT_S
    while not task.done():
        if loop.time() >= deadline:
            log.error("task %s did not stop within %.0fs; leaving it", task.get_name(), TASK_STOP_LIMIT_S)
            return
        task.cancel()
        await asyncio.wait({task}, timeout=TASK_CANCEL_RETRY_S)
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())


async def _bounded(coro: Coroutine[Any, Any, None], limit_s: float, what: str) -> None:
    """Await coro for at most limit_s (then cancel it); log, never raise, if it fails."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=limit_s)
    if not done:
        log.error("%s did not finish within %.0fs", what, limit_s)
        await _stop_task(task)
    elif not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %r", what, task.exception())


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
