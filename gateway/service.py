"""The gateway service: every subsystem built and wired here, in one place.

`serve(config)` runs until cancelled (SIGTERM/SIGINT in `python -m gateway serve`). It opens
the store, builds the broker accounts, the device registry, the downlink, ingest (with
attribution), the device service, the HTTP API and the leader (which runs the uplink
scheduler and invitation expiry on one instance at a time), and hands each what it needs.
It prints one readiness line once the MQTT subscription is in place and every subsystem has
started, e.g. "gateway ready mqtt=127.0.0.1:1883 http=127.0.0.1:8080 pid=1234"; the test
runner (simulator/gateway_proc.py) waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import aiomqtt

from gateway import bindings, health, invitations, timesync
from gateway.api import start_http
from gateway.api.settings import HttpSettings
from gateway.attribution import Attribution, AttributionRules
from gateway.broker_accounts import broker_accounts
from gateway.clock import now_ms
from gateway.complaints import ComplaintHook, ComplaintService, ComplaintSettings, complaints_job
from gateway.config import Config
from gateway.devices import DeviceService
from gateway.ingest import Ingest
from gateway.leader import Job, Leader, instance_id
from gateway.mqtt import Downlink, incoming, session
from gateway.notify import Notifier, NotifySettings
from gateway.registry import DeviceRegistry
from gateway.store import Store, open_store
from gateway.uplink.adapters import corrections_mode
from gateway.uplink.scheduler import run_scheduler
from gateway.uplink.settings import load_settings
from gateway.workdays import WorkCalendar
from protocol import topics

log = logging.getLogger("gateway.service")

FLUSH_EVERY_S = 1.0
CHANGES_EVERY_S = 0.25     # how soon a re-key by another process is in force here
EXPIRE_EVERY_S = 1.0
# Stopping a task: cancel, wait this long, cancel again (a cancel can be lost, see
# _stop_task), for at most TASK_STOP_LIMIT_S in all.
TASK_CANCEL_RETRY_S = 0.25
TASK_STOP_LIMIT_S = 5.0
SUBSYSTEM_STOP_LIMIT_S = 10.0


class Running(Protocol):
    label: str

    async def stop(self) -> None: ...


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


async def _flush_loop(store: Store, registry: DeviceRegistry, anchors: timesync.Anchors,
                      ingest: Ingest) -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY_S)
        try:
            await _flush(store, registry, anchors, ingest)
        except Exception:
            log.exception("periodic flush of device health failed; will retry")


async def _flush(store: Store, registry: DeviceRegistry, anchors: timesync.Anchors, ingest: Ingest) -> None:
    # Anchors first: whoever sees a heartbeat's health fields stored also finds its anchor.
    await anchors.save(store, now_ms())
    await registry.flush()
    await ingest.rejections.save(store)


async def _changes_loop(registry: DeviceRegistry) -> None:
    """Re-keys by the API, the CLI or another instance are in force here within CHANGES_EVERY_S."""
    while True:
        await asyncio.sleep(CHANGES_EVERY_S)
        try:
            await registry.poll_changes()
        except Exception as e:  # noqa: BLE001 - the store may be away for a moment
            log.warning("change feed not read: %s", e)


class _NotifierRunning:
    """The notifier as a running subsystem: waiting notifications get a moment at shutdown."""

    label = "notify"

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def stop(self) -> None:
        await self.notifier.aclose(drain_s=3.0)


def _uplink_job(store: Store, config: Config) -> Job:
    async def job(stop: asyncio.Event) -> None:
        await run_scheduler(store, config, stop)
    return job


async def serve(config: Config, ready: asyncio.Event | None = None, *,
                extra: Sequence[Callable[[], Awaitable[Running]]] = ()) -> None:
    """extra: further subsystems to start after the API (tests use it for a failing one)."""
    http_settings = HttpSettings.from_raw(config.raw)
    uplink_settings = load_settings(config) if "uplink" in config.raw else None
    rules = AttributionRules.from_config(config)
    store = await open_store(config.store.url)
    tasks: list[asyncio.Task[None]] = []
    running: list[Running] = []
    ingest: Ingest | None = None
    downlink: Downlink | None = None
    registry = DeviceRegistry(store)
    anchors = timesync.Anchors()
    stopping = asyncio.Event()
    try:
        n = await registry.load()
        downlink = Downlink(registry)
        ingest = Ingest(config, store, registry, anchors, downlink, attribute=Attribution(rules))
        devices = DeviceService(store, broker_accounts(config.broker), on_rekey=registry.rekey)
        # 差评 work orders: opened inside ingest's batch, announced and watched by the leader.
        complaints = ComplaintService(store, config.sections.get("complaints") or ComplaintSettings(),
                                      WorkCalendar(config.sections.get("calendar")), config.hall,
                                      corrections=corrections_mode(uplink_settings))
        ingest.record_hooks.append(ComplaintHook(complaints))
        notifier = Notifier(config.sections.get("notify") or NotifySettings())
        await notifier.start()
        running.append(_NotifierRunning(notifier))
        send = downlink.send_command
        restoring: set[asyncio.Task[None]] = set()

        async def restore(device_id: str) -> None:
            try:
                for t, fields in await bindings.state_for_device(store, device_id):
                    await send(device_id, t, fields)
            except Exception as e:  # noqa: BLE001 - the next hello tries again
                log.warning("state for %s after hello not sent: %s", device_id, e)

        async def on_hello(device_id: str) -> None:
            # Not awaited in the MQTT receive loop: sending waits for the broker's PUBACK.
            task = asyncio.create_task(restore(device_id))
            restoring.add(task)
            task.add_done_callback(restoring.discard)

        ingest.hello_hooks.append(on_hello)
        # The QR channel ([qr]): plates, receipt links and the public page, over the same
        # complaint service and command sender as the devices.
        qr = None
        if config.sections.get("qr") is not None:
            from gateway.qr.limits import refusals_job
            from gateway.qr.service import QrService
            qr = QrService.from_config(store, config, complaints, send)
            assert qr is not None
            tasks.append(asyncio.create_task(refusals_job(qr.refusals, store), name="qr-refusals"))
        jobs: list[tuple[str, Job]] = [
            ("invitation-expiry", invitations.expiry_job(store, now_ms, EXPIRE_EVERY_S)),
            ("complaints", complaints_job(complaints, notifier))]
        uplink_label = "uplink=off"
        if uplink_settings is not None and uplink_settings.enabled:
            jobs.append(("uplink", _uplink_job(store, config)))
            uplink_label = "uplink=%s@%s" % (uplink_settings.adapter, uplink_settings.url)
        leader = Leader(store, instance_id(), jobs)
        # The HTTP port first: a port already taken ends the start before any MQTT connection
        # exists (a paho client left half-connected at exit printed a traceback).
        running.append(await start_http(store, config, send, devices, http_settings, complaints=complaints,
                                        qr=qr))
        connected = asyncio.Event()
        tasks.append(asyncio.create_task(ingest.run_committer(), name="committer"))
        tasks.append(asyncio.create_task(_flush_loop(store, registry, anchors, ingest), name="flush"))
        tasks.append(asyncio.create_task(_stats_loop(ingest, downlink), name="stats"))
        tasks.append(asyncio.create_task(_changes_loop(registry), name="changes"))
        dev_cfg = config.devices
        tasks.append(asyncio.create_task(
            health.health_task(registry, dev_cfg.silent_after_s, dev_cfg.health_check_s, now_ms),
            name="health"))
        tasks.append(asyncio.create_task(_mqtt_loop(config, ingest, downlink, connected, stopping),
                                         name="mqtt"))
        running.append(leader.start())
        for start_extra in extra:
            running.append(await start_extra())
        await _wait_first(connected, tasks)
        labels = " ".join(r.label for r in running if r is not leader)
        print(f"gateway ready mqtt={config.mqtt.host}:{config.mqtt.port} {labels} {uplink_label} "
              f"store={store.backend} devices={n} pid={os.getpid()}", flush=True)
        if ready is not None:
            ready.set()
        # asyncio.wait (unlike gather) leaves the tasks running when serve() is cancelled,
        # so the shutdown below can still commit and ack over the live connection.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        stopping.set()
        await _shutdown(store, tasks, running, ingest, downlink, registry, anchors)


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


async def _shutdown(store: Store, tasks: list[asyncio.Task[None]], running: list[Running],
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
            await _flush(store, registry, anchors, ingest)
    await store.close()
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
