"""Alerts (gateway/alerts.py): each condition announced once to a real webhook receiver, with
its recovery notice, on a real store (both backends); state survives a new leader; a notice
owed by a leader that stopped half-way is sent by the next one. End to end through the
gateway process: a device that goes silent and comes back, a device whose journal grows, and
(PostgreSQL) two instances sharing the store announce each condition once: only the leader runs
alerts."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from gw_support import GW_CLIENT_ID, GW_PASSWORD, TestDevice, _register_all, wait_for
from harness.store import is_pg
from ops_support import WebhookReceiver

from gateway.alerts import (
    AlertEngine,
    AlertSettings,
    DiskSpace,
    JournalGrowing,
    PlatformRejections,
    PushFailures,
    SilentDevices,
    Source,
)
from gateway.config import parse_config
from gateway.devices import add_device
from gateway.notify import Notifier, NotifySettings
from gateway.store import Store, open_store
from gateway.store.rows import DeviceHealth
from protocol.ids import record_id
from simulator.broker import Mosquitto, standard_acl
from simulator.gateway_proc import GatewayProcess, write_config

TZ_HALL = {"timezone": "Asia/Shanghai", "opening_hours": ["00:00-24:00"],
           "opening_days": [1, 2, 3, 4, 5, 6, 7]}
CLOSED = {"timezone": "Asia/Shanghai", "opening_hours": ["00:00-00:01"], "opening_days": [1]}


class Clock:
    def __init__(self) -> None:
        self.t = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.t


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    h = await WebhookReceiver().start()
    try:
        yield h
    finally:
        await h.stop()


async def _engine(store: Store, hook: WebhookReceiver, sources: list[Source], clock: Clock) -> tuple[
        AlertEngine, Notifier]:
    notifier = Notifier(NotifySettings.from_mapping({"webhook": [{"name": "duty", "url": hook.url}]}))
    await notifier.start()
    cfg = parse_config({"store": {"path": "x.db"}, "hall": TZ_HALL}, Path("/tmp"))
    return AlertEngine(store, notifier, sources, cfg.hall.tz, clock=clock, hall_id="hall-7"), notifier


async def _cycle(engine: AlertEngine, notifier: Notifier) -> Any:
    c = await engine.run_once()
    assert await notifier.flush(10)
    return c


async def _device(store: Store, device_id: str, at_ms: int) -> None:
    await store.write(lambda tx: add_device(tx, device_id, secrets.token_hex(32), "t", "cli:test", at_ms))


async def _health(store: Store, device_id: str, last_seen: int, jd: int = 0) -> None:
    h = DeviceHealth(device_id, last_seen, True, 1, 1, 1, "t", jd, 1, "power", None, None)
    await store.write(lambda tx: tx.devices.save_health([h]))


def hall(raw: dict[str, Any]) -> Any:
    return parse_config({"store": {"path": "x.db"}, "hall": raw}, Path("/tmp")).hall


async def test_silent_device_in_opening_hours_is_announced_once_and_recovers(store: Store,
                                                                             hook: WebhookReceiver) -> None:
    clock = Clock()
    await _device(store, "dev-s", clock.t - 3600_000)
    await _health(store, "dev-s", clock.t - 1200_000)       # heard 20 minutes ago
    await _device(store, "dev-ok", clock.t - 3600_000)
    await _health(store, "dev-ok", clock.t - 10_000)
    engine, notifier = await _engine(store, hook, [SilentDevices(store, hall(TZ_HALL), 600)], clock)
    try:
        c = await _cycle(engine, notifier)
        assert c.opened == ["device_silent:dev-s"]
        [n] = hook.received
        assert n["kind"] == "alert.device_silent" and n["severity"] == "warning"
        assert "dev-s" in n["subject"] and "+08:00" in n["body"] and n["payload"]["device_id"] == "dev-s"
        assert hook.headers[0]["X-HCP-Delivery"] == "alert-%d" % n["payload"]["alert_id"]
        for _ in range(3):                                   # once per condition
            clock.t += 60_000
            await _cycle(engine, notifier)
        assert len(hook.received) == 1
        await _health(store, "dev-s", clock.t)              # heard again
        c = await _cycle(engine, notifier)
        assert c.resolved == ["device_silent:dev-s"]
        rec = hook.of("alert.device_silent.recovered")
        assert len(rec) == 1 and rec[0]["severity"] == "info" and rec[0]["payload"]["alert_id"] == \
            n["payload"]["alert_id"]
        await _cycle(engine, notifier)
        assert len(hook.received) == 2
        rows, total = await store.read(lambda tx: tx.alerts.history())
        assert total == 1 and rows[0].resolved_ms == clock.t and rows[0].recovery_notified_ms == clock.t
    finally:
        await notifier.aclose()


async def test_silent_device_outside_opening_hours_raises_nothing(store: Store,
                                                                  hook: WebhookReceiver) -> None:
    clock = Clock()
    await _device(store, "dev-n", clock.t - 86400_000)
    engine, notifier = await _engine(store, hook, [SilentDevices(store, hall(CLOSED), 600)], clock)
    try:
        c = await _cycle(engine, notifier)
        assert c.opened == [] and hook.received == []
    finally:
        await notifier.aclose()


async def test_growing_journal_alert_with_hysteresis(store: Store, hook: WebhookReceiver) -> None:
    clock = Clock()
    await _device(store, "dev-j", clock.t)
    engine, notifier = await _engine(store, hook, [JournalGrowing(store, 50, 5)], clock)
    try:
        await _health(store, "dev-j", clock.t, jd=20)
        assert (await _cycle(engine, notifier)).opened == []        # below the alert level
        await _health(store, "dev-j", clock.t, jd=63)
        assert (await _cycle(engine, notifier)).opened == ["journal:dev-j"]
        assert "63" in hook.received[0]["subject"] and hook.received[0]["kind"] == "alert.journal_growing"
        await _health(store, "dev-j", clock.t, jd=20)               # falling, not yet clear
        c = await _cycle(engine, notifier)
        assert c.resolved == [] and len(hook.received) == 1
        await _health(store, "dev-j", clock.t, jd=0)
        assert (await _cycle(engine, notifier)).resolved == ["journal:dev-j"]
        assert hook.kinds() == ["alert.journal_growing", "alert.journal_growing.recovered"]
    finally:
        await notifier.aclose()


async def _run(store: Store, outcome: str, at: int, error: str | None = None) -> None:
    def w(tx: Any) -> None:
        rid = tx.uplink.start_run("retry", None, at)
        tx.uplink.finish_run(rid, outcome, 0, 0, 0, error, at)
    await store.write(w)


async def test_push_failures_after_n_runs_and_recovery_on_success(store: Store,
                                                                  hook: WebhookReceiver) -> None:
    clock = Clock()
    engine, notifier = await _engine(store, hook, [PushFailures(store, 3)], clock)
    try:
        for i in range(2):
            await _run(store, "unavailable", clock.t + i, "HTTP 503 maintenance")
            assert (await _cycle(engine, notifier)).opened == []
        await _run(store, "stopped", clock.t + 5)                   # a stop is not a failure
        assert (await _cycle(engine, notifier)).opened == []
        await _run(store, "unavailable", clock.t + 10, "timeout after 30.0 s")
        assert (await _cycle(engine, notifier)).opened == ["push_failed"]
        [n] = hook.received
        assert n["kind"] == "alert.push_failed" and "3" in n["subject"] and "timeout" in n["body"]
        await _run(store, "unavailable", clock.t + 20, "timeout")
        assert (await _cycle(engine, notifier)).opened == []          # still the same condition
        await _run(store, "done", clock.t + 30)
        assert (await _cycle(engine, notifier)).resolved == ["push_failed"]
        # refused credentials: at once, critical
        await _run(store, "refused", clock.t + 40, "auth: token request refused")
        assert (await _cycle(engine, notifier)).opened == ["push_failed"]
        assert hook.received[-1]["severity"] == "critical" and "app_secret" in hook.received[-1]["body"]
        assert hook.kinds() == ["alert.push_failed", "alert.push_failed.recovered", "alert.push_failed"]
    finally:
        await notifier.aclose()


async def _records(store: Store, device: str, n: int, at: int) -> list[str]:
    rows = [{"record_id": record_id(device, 1, i), "device_id": device, "rb": 1, "rs": i, "kind": "walkup",
             "grade": "vs", "invitation_id": None, "device_wall_s": at // 1000, "uptime_ms": i,
             "pressed_at_ms": at, "time_source": "device", "received_at_ms": at, "msg_boot": 1,
             "binding_id": None, "window_id": None, "staff_account": None, "flags": ""}
            for i in range(1, n + 1)]
    await store.write(lambda tx: tx.records.insert_many(rows))
    return [r["record_id"] for r in rows]


async def test_platform_rejections_one_alert_per_code(store: Store, hook: WebhookReceiver) -> None:
    clock = Clock()
    await _device(store, "dev-r", clock.t)
    ids = await _records(store, "dev-r", 5, clock.t)
    engine, notifier = await _engine(store, hook, [PlatformRejections(store, 1)], clock)
    try:
        await store.write(lambda tx: tx.uplink.reject([(i, "bad_dept", "deptCode unknown") for i in ids[:3]],
                                                      "platform", clock.t))
        assert (await _cycle(engine, notifier)).opened == ["platform_rejected:bad_dept"]
        await store.write(lambda tx: tx.uplink.reject([(ids[3], "bad_time", "future")], "platform", clock.t))
        assert (await _cycle(engine, notifier)).opened == ["platform_rejected:bad_time"]
        # more of a known code: no second notice
        await store.write(lambda tx: tx.uplink.reject([(ids[4], "bad_dept", "x")], "platform", clock.t))
        assert (await _cycle(engine, notifier)).opened == []
        first = hook.of("alert.platform_rejected")[0]
        assert first["payload"]["records"] == 3 and "uplink rejections" in first["body"]
        await store.write(lambda tx: tx.uplink.requeue(code="bad_dept"))
        assert (await _cycle(engine, notifier)).resolved == ["platform_rejected:bad_dept"]
        assert hook.kinds() == ["alert.platform_rejected", "alert.platform_rejected",
                                "alert.platform_rejected.recovered"]
    finally:
        await notifier.aclose()


async def test_disk_filling_and_recovery(store: Store, hook: WebhookReceiver, tmp_path: Path) -> None:
    clock = Clock()
    disk = DiskSpace(store, [tmp_path], min_free_pct=99.999, min_days=30)     # any used disk is "full"
    engine, notifier = await _engine(store, hook, [disk], clock)
    try:
        assert (await _cycle(engine, notifier)).opened == ["disk:%s" % tmp_path]
        n = hook.received[0]
        assert n["kind"] == "alert.disk" and str(tmp_path) in n["subject"] and n["payload"]["free_bytes"] > 0
        disk.min_pct = 0.0                                                      # room again
        assert (await _cycle(engine, notifier)).resolved == ["disk:%s" % tmp_path]
        assert hook.kinds() == ["alert.disk", "alert.disk.recovered"]
    finally:
        await notifier.aclose()


async def test_a_new_leader_neither_repeats_nor_forgets(store: Store, hook: WebhookReceiver) -> None:
    clock = Clock()
    await _device(store, "dev-l", clock.t - 3600_000)
    src = [SilentDevices(store, hall(TZ_HALL), 600)]
    first, n1 = await _engine(store, hook, src, clock)
    await _cycle(first, n1)
    await n1.aclose()
    second, n2 = await _engine(store, hook, src, clock)        # another instance took the lease
    try:
        await _cycle(second, n2)
        assert hook.kinds() == ["alert.device_silent"]
        # a leader that stored an alert and stopped before announcing it: the next one announces it
        await store.write(lambda tx: tx.alerts.open("journal:dev-l", "alert.journal_growing", "warning",
                                                    "评价器积压：dev-l", {"body": "积压"}, clock.t))
        await _cycle(second, n2)
        assert hook.kinds() == ["alert.device_silent", "alert.journal_growing"]
        await _cycle(second, n2)
        assert len(hook.received) == 2
    finally:
        await n2.aclose()


async def test_a_failing_source_does_not_resolve_its_alerts(store: Store, hook: WebhookReceiver) -> None:
    clock = Clock()
    await _device(store, "dev-f", clock.t - 3600_000)
    silent = SilentDevices(store, hall(TZ_HALL), 600)
    engine, notifier = await _engine(store, hook, [silent], clock)
    try:
        await _cycle(engine, notifier)

        async def broken(now_ms: int) -> list[Any]:
            raise ConnectionError("store away")
        silent.conditions = broken  # type: ignore[method-assign]
        c = await _cycle(engine, notifier)
        assert c.failed_sources == ["device_silent"] and c.resolved == []
        assert hook.kinds() == ["alert.device_silent"]
    finally:
        await notifier.aclose()


def test_alert_settings_in_the_config(tmp_path: Path) -> None:
    from gateway.config import ConfigError
    store = {"path": "g.db"}
    cfg = parse_config({"store": store, "alerts": {"journal_depth": 30, "disk_paths": ["d"]}}, tmp_path)
    s: AlertSettings = cfg.sections["alerts"]
    assert s.journal_depth == 30 and s.disk_paths == (tmp_path / "d",)
    assert parse_config({"store": {"path": "g.db"}}, tmp_path).sections["alerts"].disk_paths == (tmp_path,)
    with pytest.raises(ConfigError) as e:
        parse_config({"store": store, "alerts": {"journal_depht": 3, "check_every_s": -1}}, tmp_path)
    assert "did you mean journal_depth" in str(e.value) and "check_every_s" in str(e.value)
    with pytest.raises(ConfigError, match="journal_clear"):
        parse_config({"store": store, "alerts": {"journal_depth": 5, "journal_clear": 5}}, tmp_path)


# ---- end to end through the gateway process ---------------------------------------------------

@pytest.mark.slow
async def test_the_service_alerts_through_its_leader_only(tmp_path: Path, store_url: str) -> None:
    """A device goes silent and comes back; another's journal grows and drains: each announced
    once, with its recovery, by the service. On PostgreSQL two instances share the store: the
    leader alone runs alerts (still one notice each)."""
    instances = 2 if is_pg(store_url) else 1
    hook = await WebhookReceiver().start()
    devices = {d: (secrets.token_hex(32), "pw-" + d) for d in ("dev-a", "dev-b")}
    users = {"gateway": GW_PASSWORD, "gateway-2": GW_PASSWORD, **{d: pw for d, (_, pw) in devices.items()}}
    acl = standard_acl() + "\nuser gateway-2\ntopic readwrite hcp/#\n"
    broker = Mosquitto(tmp_path / "mq", users=users, acl=acl,
                       client_ids={"gateway": GW_CLIENT_ID, "gateway-2": "hcp-gateway-2"})
    await asyncio.to_thread(broker.start)
    url = store_url if is_pg(store_url) else str(tmp_path / "gw" / "gateway.db")
    (tmp_path / "gw").mkdir(exist_ok=True)
    await _register_all(url, {})      # the store exists before the service starts
    extra = ('\n[hall]\ntimezone = "Asia/Shanghai"\nopening_hours = ["00:00-24:00"]\n'
             "opening_days = [1, 2, 3, 4, 5, 6, 7]\n"
             "[alerts]\ncheck_every_s = 0.2\nsilent_after_s = 3\njournal_depth = 10\njournal_clear = 0\n"
             + hook.notify_toml())
    gws = []
    for i in range(instances):
        cfg = write_config(tmp_path / "gw" / ("gateway%d.toml" % i), mqtt_port=broker.port,
                           mqtt_password=GW_PASSWORD, db_path=url, extra=extra,
                           client_id="hcp-gateway" + ("-2" if i else ""))
        if i:
            cfg.write_text(cfg.read_text().replace('username = "gateway"', 'username = "gateway-2"'))
        gws.append(GatewayProcess(cfg, workdir=tmp_path / ("w%d" % i)))
    a = TestDevice("dev-a", devices["dev-a"][0], devices["dev-a"][1], broker.host, broker.port)
    b = TestDevice("dev-b", devices["dev-b"][0], devices["dev-b"][1], broker.host, broker.port)
    talking = {"dev-a": True, "dev-b": True}

    async def heartbeats(d: TestDevice) -> None:
        while True:
            if talking[d.device_id]:
                await d.hb()
            await asyncio.sleep(0.4)

    beating: list[asyncio.Task[None]] = []
    try:
        for g in gws:
            await asyncio.to_thread(g.start)
        # registered now (the running services learn them from the change feed) and heard at once
        await _register_all(url, devices)
        for d in (a, b):
            await d.connect()
            await d.hello()
            beating.append(asyncio.create_task(heartbeats(d)))
        await asyncio.sleep(3.0)
        assert hook.received == []
        # dev-a falls silent (power cut: no will reaches anyone, nothing more is heard)
        talking["dev-a"] = False
        await a.disconnect()
        for _ in range(12):                                    # dev-b's journal grows (its hb says so)
            b.new_record()
        await wait_for(lambda: len(hook.received) >= 2, 20, "two alerts")
        assert sorted(hook.kinds()) == ["alert.device_silent", "alert.journal_growing"]
        assert hook.of("alert.device_silent")[0]["payload"]["device_id"] == "dev-a"
        await a.connect()
        talking["dev-a"] = True
        b.journal.clear()
        await wait_for(lambda: len(hook.received) >= 4, 20, "two recoveries")
        await asyncio.sleep(1.0)                               # nothing more comes
        assert sorted(hook.kinds()) == ["alert.device_silent", "alert.device_silent.recovered",
                                        "alert.journal_growing", "alert.journal_growing.recovered"]
        rows = [json.loads(r[0]) for r in _q(url, "SELECT detail_json FROM alerts")]
        assert len(rows) == 2
        raised = [g.log_text().count("alert raised:") for g in gws]
        assert sorted(raised) == [0] * (instances - 1) + [2], raised     # the leader's log alone
    finally:
        for t in beating:
            t.cancel()
        for d in (a, b):
            await d.disconnect()
        for g in gws:
            await asyncio.to_thread(g.terminate)
        await asyncio.to_thread(broker.stop)
        await hook.stop()


def _q(url: str, sql: str) -> list[tuple[Any, ...]]:
    from harness.store import query
    return query(url, sql)

