"""firmware/link.py end to end on CPython asyncio: the real host HAL (real-time clock, real
TCP), the real flash journal, a real mosquitto, and a gateway stand-in on aiomqtt that acks
with commands signed by the device key."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# The repo root first: tests/protocol/ (no __init__) would otherwise shadow the protocol package.
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]
from link_testkit import (  # noqa: E402
    DEVICE,
    SECRET,
    GatewayStub,
    StubApp,
    make_cfg,
    make_hal,
    make_journal,
    until,
)

from firmware.link import Link  # noqa: E402
from protocol import topics  # noqa: E402
from protocol.auth import Key  # noqa: E402
from simulator.broker import Mosquitto  # noqa: E402

BOOT = 7


class Rig:
    """One device (HAL, journal, app, link task) plus the gateway stand-in."""

    def __init__(self, root: Path, broker: Mosquitto, **cfg: Any) -> None:
        self.broker = broker
        self.hal = make_hal(root)
        self.journal = make_journal(self.hal, BOOT)
        self.app = StubApp(self.hal)
        self.link = Link(self.hal, make_cfg(broker.port, **cfg), Key(SECRET), BOOT, self.journal, self.app)
        self.link.client.backoff_min_ms = 100     # tests do not wait 1..60 s between attempts
        self.link.client.backoff_max_ms = 800
        self.task: asyncio.Task[None] | None = None
        self.peak = 0
        self._watch: asyncio.Task[None] | None = None

    def add(self, n: int) -> None:
        for i in range(n):
            self.journal.append("walkup", "vs s bs d vd".split()[i % 5], "", 0, 1000 + i)
        self.link.kick()

    def start(self) -> None:
        self.task = asyncio.create_task(self.link.run())
        self._watch = asyncio.create_task(self._watch_window())

    async def _watch_window(self) -> None:
        # Runs between every two steps of the other tasks (sleep(0)), so it sees every
        # in-flight count the client ever reaches.
        while True:
            self.peak = max(self.peak, self.link.inflight())
            await asyncio.sleep(0)

    async def stop(self) -> None:
        for t in (self.task, self._watch):
            if t is not None:
                t.cancel()
                try:
                    await t
                except asyncio.CancelledError:
                    pass
        self.link.close()
        self.journal.close()


@pytest.fixture
async def rig(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[Rig]:
    r = Rig(tmp_path / "dev", broker)
    yield r
    await r.stop()


@pytest.fixture
async def gateway(broker: Mosquitto) -> AsyncIterator[GatewayStub]:
    g = await GatewayStub(broker.port, boot=BOOT).start()
    yield g
    await g.stop()


async def test_connect_announces_status_hello_treq(rig: Rig, gateway: GatewayStub) -> None:
    rig.start()
    await until(lambda: gateway.of_type("treq"), 10, "treq")
    assert rig.app.links == [True] and rig.link.connected
    status = gateway.of_type("status")
    assert [(m["s"], m["c"]) for m in status] == [("online", 1)]
    assert [r for (t, _, r) in gateway.received if t.endswith("/status")] == [False]  # live, not stale
    hello = gateway.of_type("hello")[0]
    assert hello["fw"] and hello["cfg"] == 3 and hello["jd"] == 0 and hello["safe"] is False
    assert hello["rst"] == "power-on" and hello["b"] == BOOT
    ns = [m["n"] for (_, m, _) in gateway.received]
    assert ns == sorted(ns) and len(set(ns)) == len(ns)      # per-boot counter, never reused


async def test_backlog_of_50_arrives_in_order_within_the_window(rig: Rig, broker: Mosquitto) -> None:
    gw = await GatewayStub(broker.port, boot=BOOT, auto_ack=True).start()
    try:
        rig.add(50)
        rig.start()
        await until(lambda: rig.journal.depth() == 0, 20, "journal emptied by acks")
        assert gw.record_ids() == [(BOOT, s) for s in range(1, 51)]   # in order, none twice
        assert 1 <= rig.peak <= rig.link.client.window == 8
        assert rig.link.records_acked == 50 and rig.link.rejected == {}
        recs = gw.of_type("rec")
        assert recs[0]["k"] == "walkup" and recs[0]["g"] == "vs" and recs[0]["u"] == 1000
    finally:
        await gw.stop()


async def test_new_record_is_sent_on_kick(rig: Rig, broker: Mosquitto) -> None:
    gw = await GatewayStub(broker.port, boot=BOOT, auto_ack=True).start()
    try:
        rig.start()
        await until(lambda: rig.link.connected, 10, "connection")
        rig.add(1)
        await until(lambda: rig.journal.depth() == 0, 5, "record acked")
        assert gw.record_ids() == [(BOOT, 1)]
    finally:
        await gw.stop()


async def test_broker_restart_mid_backlog_loses_nothing(rig: Rig, broker: Mosquitto) -> None:
    gw = await GatewayStub(broker.port, boot=BOOT, auto_ack=True, persistent=True, client_id="gw-persist",
                           ack_delay_s=0.02).start()
    try:
        rig.add(50)
        rig.start()
        await until(lambda: len(gw.record_ids()) >= 10, 10, "first records")
        at_restart = len(gw.record_ids())
        await asyncio.to_thread(broker.restart)
        await until(lambda: rig.journal.depth() == 0, 30, "journal emptied by acks after the restart")
        ids = gw.record_ids()
        assert set(ids) == {(BOOT, s) for s in range(1, 51)}      # nothing lost (duplicates allowed)
        assert rig.link.client.reconnects >= 1 and rig.app.links[:2] == [True, False] and rig.app.links[-1]
        assert rig.peak <= 8
        assert at_restart < 50                                    # the restart really was mid-backlog
        assert "bad_mac" not in rig.link.rejected
        print("restart: %d recs before, %d deliveries for 50 records, reconnects %d, resent(DUP) %d, "
              "rejected %s, errors %s" % (at_restart, len(ids), rig.link.client.reconnects,
                                          rig.link.client.resent, rig.link.rejected, rig.link.client.errors))
    finally:
        await gw.stop()


async def test_wifi_cut_publishes_will_then_reconnects_and_resends(rig: Rig, gateway: GatewayStub) -> None:
    rig.start()
    await until(lambda: rig.link.connected, 10, "connection")
    rig.add(3)                                 # no auto-ack: the records stay unacked
    await until(lambda: len(gateway.record_ids()) == 3, 5, "3 records")
    rig.hal.net.cut()
    await until(lambda: [m["s"] for m in gateway.of_type("status")][-1:] == ["offline"], 5, "will")
    offline = gateway.of_type("status")[-1]
    assert offline["c"] == 1 and offline["b"] == BOOT
    await until(lambda: rig.app.links == [True, False], 5, "on_link(False)")
    rig.hal.net.restore()
    await until(lambda: len(gateway.record_ids()) >= 6, 10, "records re-sent after reconnect")
    assert sorted(set(gateway.record_ids())) == [(BOOT, 1), (BOOT, 2), (BOOT, 3)]
    statuses = [(m["s"], m["c"]) for m in gateway.of_type("status")]
    assert statuses == [("online", 1), ("offline", 1), ("online", 2)]
    assert rig.link.client.reconnects == 1 and rig.app.links == [True, False, True]
    assert rig.journal.depth() == 3            # PUBACKs never delete: only the gateway's ack does


async def test_forged_replayed_and_malformed_commands_are_counted_not_applied(
        rig: Rig, gateway: GatewayStub) -> None:
    rig.add(3)
    rig.start()
    await until(lambda: len(gateway.record_ids()) == 3, 10, "3 records")
    other = Key("a5" * 32)
    await gateway.ack([[BOOT, 1]], key=other, n=100)            # forged: wrong key
    await gateway.ack([[BOOT, 1]], boot=BOOT + 1, n=101)        # stale boot
    await gateway.publish_down("ack", b"{not json")              # malformed
    await gateway.publish_down("invite", gateway.signed_ack([[BOOT, 1]], n=102))   # wrong topic
    await gateway.ack([[BOOT, 1]], n=5)                         # the real one
    await until(lambda: rig.journal.depth() == 2, 5, "valid ack applied")
    await gateway.ack([[BOOT, 2]], n=5)                         # valid mac, replayed n
    await gateway.ack([[BOOT, 3]], n=1000)                      # valid, far ahead
    await until(lambda: rig.journal.depth() == 1, 5, "second valid ack")
    await gateway.ack([[BOOT, 2]], n=900)                       # older than the window: replay
    await until(lambda: sum(rig.link.rejected.values()) == 6, 5, "6 rejections")
    assert rig.link.rejected == {"bad_mac": 1, "wrong_boot": 1, "not_json": 1, "topic_mismatch": 1,
                                 "replay": 2}
    assert [(r["rb"], r["rs"]) for r in rig.journal.pending(10)] == [(BOOT, 2)]
    assert rig.link.connected and rig.link.client.reconnects == 0       # never crashed the link


async def test_other_commands_go_to_the_app(rig: Rig, gateway: GatewayStub) -> None:
    from protocol import messages

    rig.start()
    await until(lambda: rig.link.connected, 10, "connection")
    m = {"t": "time", "d": DEVICE, "b": BOOT, "n": 1, "w": 1767225600, "u": 5}
    await gateway.publish_down("time", messages.sign(m, Key(SECRET)))
    await until(lambda: rig.app.commands, 5, "command delivered")
    assert rig.app.commands[0]["t"] == "time" and rig.app.commands[0]["w"] == 1767225600


async def test_heartbeat_fields(tmp_path: Path, broker: Mosquitto, gateway: GatewayStub) -> None:
    r = Rig(tmp_path / "dev", broker, hb_s=1)
    try:
        r.start()
        await until(lambda: gateway.of_type("hb"), 5, "heartbeat")
        hb = gateway.of_type("hb")[0]
        assert hb["st"] == "idle" and hb["sync"] is False and hb["rc"] == 0 and hb["jd"] == 0
        assert hb["heap"] > 0 and -127 <= hb["rssi"] <= 0 and hb["rst"] == "power-on"
        assert hb["up"] >= 1000
    finally:
        await r.stop()


async def test_wrong_password_retries_with_backoff_and_counts(tmp_path: Path, broker: Mosquitto) -> None:
    r = Rig(tmp_path / "dev", broker, password="nope")
    try:
        r.start()
        await until(lambda: r.link.client.errors.get("refused", 0) >= 3, 10, "three refusals")
        assert r.app.links == [] and not r.link.connected
        assert "not authorized" in r.link.client.last_error or "bad user name" in r.link.client.last_error
        assert any("refused" in line for line in r.hal.logs)
    finally:
        await r.stop()


def test_backoff_is_jittered_exponential_and_capped(tmp_path: Path) -> None:
    hal = make_hal(tmp_path / "dev")
    link = Link(hal, make_cfg(1), Key(SECRET), 1, None, None)
    seen: list[int] = []
    for _ in range(12):
        seen.append(link.client.backoff_ms())
    assert all(1000 <= d <= 60000 for d in seen)
    assert seen[0] <= 1000 * 1 and max(seen[6:]) > 8000     # ceiling doubles up to the cap
    link.client._attempt = 30
    many = [link.client.backoff_ms() for _ in range(200)]
    assert max(many) <= 60000 and min(many) < 30000 and len(set(many)) > 50   # full jitter
    assert topics.up(DEVICE, "rec") == link._t_rec


class _SilentNet:
    """A network whose TCP connect never completes (a host that drops SYNs)."""

    def __init__(self) -> None:
        self.opens = 0
        self.cancelled = 0

    def is_up(self) -> bool:
        return True

    def rssi(self) -> int:
        return -60

    async def open(self, host: str, port: int) -> Any:
        self.opens += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def test_tcp_connect_is_bounded_by_connect_timeout(tmp_path: Path) -> None:
    hal = make_hal(tmp_path / "dev")
    net = _SilentNet()
    hal.net = net  # type: ignore[assignment]
    journal = make_journal(hal, BOOT)
    link = Link(hal, make_cfg(1883), Key(SECRET), BOOT, journal, StubApp(hal))
    link.client.connect_timeout_ms = 300
    link.client.backoff_min_ms = 50
    link.client.backoff_max_ms = 100
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.client.errors.get("timeout", 0) >= 2, 5.0)
    finally:
        task.cancel()
        link.close()
    assert net.opens >= 2 and net.cancelled >= 2    # each hung connect was abandoned, then retried
    assert "TCP connect" in link.client.last_error and not link.connected
    journal.close()
