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
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from gateway import bindings, health, invitations, oplog, supervision, timesync
from gateway.alerts import AlertEngine, AlertSettings, alerts_job, builtin_sources
from gateway.api import start_http
from gateway.api.settings import HttpSettings
from gateway.attribution import Attribution, AttributionRules
from gateway.clock import now_ms
from gateway.complaints import ComplaintHook, ComplaintService, ComplaintSettings, complaints_job
from gateway.config import Config, MqttConfig, check_private
from gateway.devices import device_service
from gateway.incoming import Gate, GateLimits
from gateway.ingest import RATE_LIMITED, Ingest
from gateway.instances import Beat, MqttState, refuse_a_twin
from gateway.leader import Job, Leader, instance_id
from gateway.mqtt import Connection, Downlink, MqttError
from gateway.notify import Notifier, NotifySettings
from gateway.quench import Quencher
from gateway.registry import DeviceRegistry
from gateway.store import Store, claim_single_instance, open_store
from gateway.store import check_private as check_store_private
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


def subscriptions(cfg: MqttConfig) -> tuple[list[str], list[str]]:
    """(topics to subscribe, topics to unsubscribe) for the config: the device uplink, plain
    for one instance or shared by the instances of [mqtt] shared_group. Shared, every instance
    also subscribes to the status topics plainly: each keeps the same online view, and gets
    the retained statuses at start (MQTT 5 sends no retained messages to a shared
    subscription). The other form is unsubscribed: the broker keeps a persistent session's
    subscriptions, and a switch must not leave both."""
    plain = topics.up("+", "+")
    if not cfg.shared_group:
        return [plain], ["$share/%s/%s" % ("hcp", plain)]
    return ["$share/%s/%s" % (cfg.shared_group, plain), topics.up("+", "status")], [plain]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


async def _mqtt_loop(cfg: Config, gate: Gate, downlink: Downlink, connected: asyncio.Event,
                     stopping: asyncio.Event, state: MqttState | None = None) -> None:
    """state: whether we are connected (and why not), for the instance heartbeat (doctor)."""
    state = state or MqttState()
    backoff = 0.2
    where = "%s:%d" % (cfg.mqtt.host, cfg.mqtt.port)
    subscribe, unsubscribe = subscriptions(cfg.mqtt)
    takeover = TakeoverWatch(cfg.mqtt.client_id, where)
    while not stopping.is_set():
        # Downlink from the CONNACK on (set in the reader callback that parsed it), not from the
        # SUBACKs: with our kept session the broker delivers what it queued for us right behind
        # the CONNACK, and the acks and state replies of those messages (send_nowait drops them
        # while there is no client) must go out.
        conn = Connection(cfg.mqtt, gate.offer, on_connack=downlink.attach)
        try:
            await conn.connect()
            takeover.connected()
            for t in subscribe:
                await conn.subscribe(t, qos=1)
            for t in unsubscribe:
                with contextlib.suppress(MqttError):
                    await conn.unsubscribe(t)
            state.set(True)
            backoff = 0.2
            if not connected.is_set():
                connected.set()
            else:
                log.info("reconnected to mqtt %s", where)
            why = await conn.wait_closed()
            downlink.client = None
            state.set(False, _one_line(why))
            if stopping.is_set():
                return
            log.warning("mqtt %s: %s; reconnecting in %.1fs", where, why, backoff)
            takeover.lost(why)
        except MqttError as e:
            downlink.client = None
            state.set(False, _one_line(str(e)))
            if stopping.is_set():
                return  # an error while we were being stopped is not a reason to retry
            log.warning("mqtt %s: %s; retrying in %.1fs", where, e, backoff)
        finally:
            if downlink.client is conn:
                downlink.client = None
            try:
                await conn.close()
            except BaseException:
                conn.abort()     # cancelled while closing: drop it now
                raise
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


class TakeoverWatch:
    """Names the likely cause when the broker keeps dropping us right after we connect.

    Two clients with one client id knock each other off in a loop (each CONNECT ends the other
    one's connection). An MQTT 5 broker may say so (DISCONNECT 0x8E, gateway.mqtt names it);
    mosquitto 2.0 closes the socket before that packet is written, so after SHORT_S-short
    connections STREAK times in a row this says what it most likely is, once per streak."""

    SHORT_S = 30.0
    STREAK = 3

    def __init__(self, client_id: str, where: str) -> None:
        self.client_id = client_id
        self.where = where
        self.streak = 0
        self._since = 0.0
        self.said = False

    def connected(self) -> None:
        self._since = time.monotonic()

    def lost(self, why: str) -> None:
        if "session taken over" in why:
            log.error("mqtt %s: %s", self.where, why)
            return
        if time.monotonic() - self._since > self.SHORT_S:
            self.streak, self.said = 0, False
            return
        self.streak += 1
        if self.streak >= self.STREAK and not self.said:
            self.said = True
            log.error("mqtt %s: the broker dropped our connection %d times in a row within %.0f s of"
                      " connecting: most likely another client uses our client id %r (a second gateway"
                      " instance with the same [mqtt] client_id? the broker's log says 'Client %s already"
                      " connected, closing old connection'); every instance needs its own client_id",
                      self.where, self.streak, self.SHORT_S, self.client_id, self.client_id)


# Messages handled per turn before the consumer lets the loop run other work (the reader, the
# committer, the writes).
TURN_MAX = 64


async def _incoming_loop(gate: Gate, ingest: Ingest) -> None:
    """The gate's consumer: each message to ingest, in arrival order, while records waiting
    for the commit are below [ingest] pending_max (else the gate's queue fills and drops)."""
    while True:
        topic, payload, arrival = await gate.get()
        await ingest.room()
        await ingest.handle(topic, payload, arrival)
        for _ in range(TURN_MAX):
            item = gate.get_nowait()
            if item is None:
                break
            await ingest.room()
            await ingest.handle(*item)
        await asyncio.sleep(0)


STATS_EVERY_S = 10.0


async def _stats_loop(ingest: Ingest, downlink: Downlink, gate: Gate) -> None:
    """One INFO line per interval while traffic flows: operators see rates without tooling."""
    last = (0, 0)
    while True:
        await asyncio.sleep(STATS_EVERY_S)
        s = ingest.stats
        if (s.received, s.acked) != last:
            log.info("ingest: received %d, records %d, stored %d, duplicates %d, acked %d, batches %d, "
                     "pending %d, rejected %s, commands sent %d failed %d, gate dropped %d queued %d"
                     " (max %d)",
                     s.received, s.records_received, s.stored, s.duplicates, s.acked, s.batches,
                     ingest.pending, _counts(ingest.rejections.totals), downlink.sent, downlink.failed,
                     gate.dropped, len(gate), gate.high_water)
            last = (s.received, s.acked)


def _counts(counts: Any) -> str:
    """reason=n, ... (never a Python dict's repr in a log line)."""
    return ", ".join("%s=%d" % (k, v) for k, v in sorted(dict(counts).items())) or "none"


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


async def _changes_loop(registry: DeviceRegistry, on_notes: Callable[[list[tuple[str, str]]], Awaitable[None]]
                        ) -> None:
    """Re-keys by the API, the CLI or another instance are in force here within CHANGES_EVERY_S;
    the other notes (binding changes made by the CLI) go to on_notes."""
    while True:
        await asyncio.sleep(CHANGES_EVERY_S)
        try:
            notes = await registry.poll_changes()
            if notes:
                await on_notes(notes)
        except Exception as e:  # noqa: BLE001 - the store may be away for a moment
            log.warning("change feed not read: %s", e)


class _NotifierRunning:
    """The notifier as a running subsystem: waiting notifications get a moment at shutdown."""

    label = "notify"

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def stop(self) -> None:
        await self.notifier.aclose(drain_s=3.0)


def _supervision(config: Config) -> supervision.SupervisionSettings:
    s = config.sections.get("supervision")
    return s if s is not None else supervision.SupervisionSettings.from_config(config)


def _uplink_job(store: Store, config: Config) -> Job:
    async def job(stop: asyncio.Event) -> None:
        await run_scheduler(store, config, stop)
    return job


async def serve(config: Config, ready: asyncio.Event | None = None, *,
                extra: Sequence[Callable[[], Awaitable[Running]]] = ()) -> None:
    """extra: further subsystems to start after the API (tests use it for a failing one)."""
    http_settings = HttpSettings.from_config(config)
    uplink_settings = load_settings(config) if "uplink" in config.raw else None
    rules = AttributionRules.from_config(config)
    check_private(config)               # secrets never in a file everyone may read
    instance = claim_single_instance(config.store.url)
    try:
        store = await open_store(config.store.url, create=False)
    except BaseException:
        instance.release()
        raise
    try:
        check_store_private(config.store.url)   # after open_store: a damaged file says so first
        await refuse_a_twin(store, config.mqtt.client_id, instance_id())
    except BaseException:
        await store.close()
        instance.release()
        raise
    tasks: list[asyncio.Task[None]] = []
    running: list[Running] = []
    ingest: Ingest | None = None
    downlink: Downlink | None = None
    registry = DeviceRegistry(store)
    anchors = timesync.Anchors()
    stopping = asyncio.Event()
    mqtt_state = MqttState()
    beat: Beat | None = None
    try:
        n = await registry.load()
        downlink = Downlink(registry)
        ingest = Ingest(config, store, registry, anchors, downlink, attribute=Attribution(rules))
        devices = device_service(store, config, on_rekey=registry.rekey)
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
        quencher = Quencher(store, devices.accounts, config.ingest.quench_s, config.ingest.quench_drops_per_s,
                            now_ms)
        jobs: list[tuple[str, Job]] = [
            ("invitation-expiry", invitations.expiry_job(store, now_ms, EXPIRE_EVERY_S)),
            ("quench-release", quencher.release_job()),
            ("complaints", complaints_job(complaints, notifier)),
            ("presence", supervision.presence_job(store, now_ms, _supervision(config).presence_every_s))]
        uplink_label = "uplink=off"
        if uplink_settings is not None and uplink_settings.enabled:
            jobs.append(("uplink", _uplink_job(store, config)))
            uplink_label = "uplink=%s@%s" % (uplink_settings.adapter, uplink_settings.url)
        # Operations (issue 20): admin actions in the log, alerts through the notifier. Further
        # alert sources plug in here (alerts.Source): e.g. overdue 差评 work orders (issue 16).
        jobs.append(("admin-log", oplog.admin_log_job(store)))
        alert_settings: AlertSettings = config.sections.get("alerts") or AlertSettings.from_config(config)
        if alert_settings.enabled:
            with_uplink = uplink_settings is not None and uplink_settings.enabled
            engine = AlertEngine(store, notifier, builtin_sources(store, config, alert_settings, with_uplink),
                                 config.hall.tz, hall_id=config.hall.id)
            jobs.append(("alerts", alerts_job(engine, alert_settings.check_every_s)))
        leader = Leader(store, instance_id(), jobs)
        beat = Beat(store, config.mqtt.client_id, instance=instance_id(), mqtt=mqtt_state)
        # The HTTP port first: a port already taken ends the start before any MQTT connection
        # exists (a paho client left half-connected at exit printed a traceback).
        running.append(await start_http(store, config, send, devices, http_settings, complaints=complaints,
                                        qr=qr))
        connected = asyncio.Event()
        tasks.append(asyncio.create_task(ingest.run_committer(), name="committer"))
        tasks.append(asyncio.create_task(_flush_loop(store, registry, anchors, ingest), name="flush"))
        async def tell_devices(notes: list[tuple[str, str]]) -> None:
            # One instance tells the devices of a binding change the CLI made: the leader.
            if leader.is_leader:
                await bindings.deliver_noted(store, send, notes)

        tasks.append(asyncio.create_task(_changes_loop(registry, tell_devices), name="changes"))
        dev_cfg = config.devices
        tasks.append(asyncio.create_task(
            health.health_task(registry, dev_cfg.silent_after_s, dev_cfg.health_check_s, now_ms),
            name="health"))
        ic = config.ingest
        running.append(quencher)

        def dropped(reason: str, device_id: str, at_ms: int) -> None:
            assert ingest is not None
            ingest.dropped(reason, device_id, at_ms)
            if reason == RATE_LIMITED:
                quencher.note_drop(device_id, at_ms)

        gate = Gate(GateLimits(ic.device_rate, ic.device_burst, ic.queue_max, ic.queue_max_bytes), dropped)
        tasks.append(asyncio.create_task(_incoming_loop(gate, ingest), name="incoming"))
        tasks.append(asyncio.create_task(_stats_loop(ingest, downlink, gate), name="stats"))
        tasks.append(asyncio.create_task(
            _mqtt_loop(config, gate, downlink, connected, stopping, mqtt_state), name="mqtt"))
        tasks.append(asyncio.create_task(beat.run(), name="beat"))
        running.append(leader.start())
        for start_extra in extra:
            running.append(await start_extra())
        await _wait_first(connected, tasks)
        labels = " ".join(r.label for r in running if r is not leader and r.label and r.label != "notify")
        beat.detail.update(http=labels, store=store.backend)
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
        try:
            await _shutdown(store, tasks, running, ingest, downlink, registry, anchors, beat)
        finally:
            instance.release()


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
                    anchors: timesync.Anchors, beat: Beat | None = None) -> None:
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
    if beat is not None:
        with contextlib.suppress(Exception):
            await beat.forget()
    await store.close()
    if ingest is not None:
        s = ingest.stats
        log.info("stopped: received %d, records %d, stored %d, duplicates %d, acked %d, batches %d, "
                 "commit failures %d%s", s.received, s.records_received, s.stored, s.duplicates, s.acked,
                 s.batches, s.commit_failures, "" if committer_done else " (queued records not committed)")


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
        exc = task.exception()
        log.debug("task %s ended with %s: %s", task.get_name(), type(exc).__name__, exc)


async def _bounded(coro: Coroutine[Any, Any, None], limit_s: float, what: str) -> None:
    """Await coro for at most limit_s (then cancel it); log, never raise, if it fails."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=limit_s)
    if not done:
        log.error("%s did not finish within %.0fs", what, limit_s)
        await _stop_task(task)
    elif not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        log.error("%s failed: %s: %s", what, type(exc).__name__, exc)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Text (the time with its zone) or JSON lines on stderr (gateway/oplog.py)."""
    oplog.configure(level, fmt)
