"""firmware/mqtt/session.py's Session (CPython asyncio) against a real mosquitto, plus two scripted
TCP peers for what a healthy broker never does (swallow a PUBACK, stop answering pings)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

# The repo root first: tests/protocol/ (no __init__) would otherwise shadow the protocol package.
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]
from link_testkit import DEVICE, DEVICE_PASSWORD, GATEWAY, make_hal, until  # noqa: E402

from firmware.mqtt.packets import MQTTError, read_packet  # noqa: E402
from firmware.mqtt.session import Session  # noqa: E402
from protocol import topics  # noqa: E402
from simulator.broker import Mosquitto  # noqa: E402

UP_STATUS = topics.up(DEVICE, "status")


Inbox = list[tuple[str, bytes]]


def client(hal: Any, password: str = DEVICE_PASSWORD, **kw: Any) -> tuple[Session, Inbox]:
    got: list[tuple[str, bytes]] = []

    def on_message(topic: str, payload: bytes, retain: bool, dup: bool) -> None:
        got.append((topic, payload))

    kw.setdefault("tick_ms", 50)
    return Session(hal, DEVICE, user=DEVICE, password=password, on_message=on_message, **kw), got


async def connect(c: Session, hal: Any, broker: Mosquitto) -> bool:
    r, w = await hal.net.open(broker.host, broker.port)
    return await c.connect(r, w, clean=False, timeout_ms=5000)


async def test_connect_with_password_and_publish_qos1_gets_puback(broker: Mosquitto, tmp_path: Path) -> None:
    hal = make_hal(tmp_path / "dev")
    c, _ = client(hal)
    await connect(c, hal, broker)
    assert c.connected
    pid = await c.publish(topics.up(DEVICE, "hb"), b"x", qos=1)
    assert pid > 0 and c.inflight_count() == 1
    await until(lambda: c.inflight_count() == 0, 5, "PUBACK")
    assert c.counters == {}
    await c.disconnect()


async def test_wrong_password_is_a_clear_refusal(broker: Mosquitto, tmp_path: Path) -> None:
    hal = make_hal(tmp_path / "dev")
    c, _ = client(hal, password="wrong")
    with pytest.raises(MQTTError) as ei:   # connect_refused(rc) builds it: code "refused", rc
        await connect(c, hal, broker)
    assert ei.value.code == "refused"
    assert ei.value.rc in (4, 5)       # mosquitto 2 answers 5 "not authorized" for MQTT 3.1.1
    assert "CONNACK" in str(ei.value)
    c.close()


async def test_receives_subscribed_qos1_message(broker: Mosquitto, tmp_path: Path) -> None:
    hal = make_hal(tmp_path / "dev")
    c, got = client(hal)
    await connect(c, hal, broker)
    assert await c.subscribe(topics.device_sub(DEVICE), 1) == 1
    async with aiomqtt.Client(broker.host, broker.port, username=GATEWAY[0], password=GATEWAY[1]) as gw:
        await gw.publish(topics.down(DEVICE, "time"), b"hello-device", qos=1)

        async def pump() -> None:
            while not got:
                await c.wait()
                await c.service()

        await asyncio.wait_for(pump(), 5)
    assert got == [(topics.down(DEVICE, "time"), b"hello-device")]
    await c.disconnect()


async def test_retained_will_appears_when_connection_is_cut(broker: Mosquitto, tmp_path: Path) -> None:
    hal = make_hal(tmp_path / "dev")
    c, _ = client(hal)
    c.will = (UP_STATUS, b"offline-will", 1, True)
    await connect(c, hal, broker)
    await c.publish(UP_STATUS, b"online", qos=1, retain=True)
    await until(lambda: c.inflight_count() == 0, 5, "PUBACK")
    hal.net.cut()                     # Wi-Fi gone: TCP aborted, no DISCONNECT
    c.close()
    # A subscriber arriving later gets the retained will: the broker published it on the cut.
    async with aiomqtt.Client(broker.host, broker.port, username=GATEWAY[0], password=GATEWAY[1]) as gw:
        await gw.subscribe(UP_STATUS, qos=1)

        async def first() -> aiomqtt.Message:
            async for m in gw.messages:
                if m.payload == b"offline-will":
                    return m
            raise AssertionError("unreachable")

        m = await asyncio.wait_for(first(), 5)
        assert m.retain


async def test_persistent_session_gets_qos1_sent_while_away(broker: Mosquitto, tmp_path: Path) -> None:
    hal = make_hal(tmp_path / "dev")
    c, got = client(hal)
    await connect(c, hal, broker)
    await c.subscribe(topics.device_sub(DEVICE), 1)
    hal.net.cut()
    c.close()
    async with aiomqtt.Client(broker.host, broker.port, username=GATEWAY[0], password=GATEWAY[1]) as gw:
        await gw.publish(topics.down(DEVICE, "invite"), b"while-away", qos=1)
    hal.net.restore()
    sp = await connect(c, hal, broker)
    assert sp is True                 # clean_session=0: the broker kept the session...

    async def pump() -> None:
        while not got:
            await c.wait()
            await c.service()

    await asyncio.wait_for(pump(), 5)   # ...and its queued QoS 1 message
    assert got == [(topics.down(DEVICE, "invite"), b"while-away")]
    await c.disconnect()


async def test_window_is_bounded(broker: Mosquitto, tmp_path: Path) -> None:
    hal = make_hal(tmp_path / "dev")
    c, _ = client(hal, window=3)
    await connect(c, hal, broker)
    peak = 0

    async def publish_all() -> None:
        nonlocal peak
        for i in range(20):
            await c.publish(topics.up(DEVICE, "rec"), b"%d" % i, qos=1)
            peak = max(peak, c.inflight_count())

    await asyncio.wait_for(publish_all(), 10)
    await until(lambda: c.inflight_count() == 0, 5, "all PUBACKs")
    assert peak == 3
    await c.disconnect()


# -- scripted peers --------------------------------------------------------------------------

class ScriptedBroker:
    """A real TCP server speaking just enough MQTT: CONNACK (session present), and then, per
    connection, the behaviour the test picks. Records every packet it reads."""

    def __init__(self, puback: bool = True, pingresp: bool = True) -> None:
        self.puback = puback
        self.pingresp = pingresp
        self.packets: list[tuple[int, int, bytes]] = []   # (connection no, first byte, body)
        self.conns = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> ScriptedBroker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.conns += 1
        n = self.conns
        try:
            while True:
                first, body, _ = await read_packet(r)
                self.packets.append((n, first, bytes(body)))
                kind = first >> 4
                if kind == 1:
                    w.write(b"\x20\x02\x01\x00" if n > 1 else b"\x20\x02\x00\x00")
                elif kind == 3 and (first >> 1) & 3 == 1 and self.puback:
                    tl = (body[0] << 8) | body[1]
                    w.write(b"\x40\x02" + bytes(body[2 + tl:4 + tl]))
                elif kind == 12 and self.pingresp:
                    w.write(b"\xd0\x00")
                await w.drain()
        except (MQTTError, ConnectionError):
            pass
        finally:
            w.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_unacked_publish_is_resent_with_dup_and_same_id_after_reconnect(tmp_path: Path) -> None:
    peer = await ScriptedBroker(puback=False).start()
    hal = make_hal(tmp_path / "dev")
    c, _ = client(hal)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", peer.port)
        await c.connect(r, w)
        pid = await c.publish("hcp/1/up/dev-a/rec", b"r1", qos=1)
        await until(lambda: len(peer.packets) == 2, 5, "PUBLISH at the peer")
        c.close()                                     # connection lost before the PUBACK
        peer.puback = True
        r, w = await asyncio.open_connection("127.0.0.1", peer.port)
        assert await c.connect(r, w) is True
        await until(lambda: c.inflight_count() == 0, 5, "PUBACK of the re-sent PUBLISH")
        pubs = [(n, f, b) for (n, f, b) in peer.packets if f >> 4 == 3]
        assert [(n, f) for (n, f, _) in pubs] == [(1, 0x32), (2, 0x3A)]   # second one: DUP set
        assert pubs[0][2] == pubs[1][2]                                   # same id, same bytes
        assert (pubs[1][2][-4] << 8 | pubs[1][2][-3]) == pid
        assert c.resent == 1
        await c.disconnect()
    finally:
        await peer.stop()


async def test_missing_pingresp_is_detected_as_dead(tmp_path: Path) -> None:
    peer = await ScriptedBroker(pingresp=False).start()
    hal = make_hal(tmp_path / "dev")
    c, _ = client(hal, keepalive_s=1)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", peer.port)
        await c.connect(r, w)
        t0 = hal.ticks_ms()

        async def run() -> None:
            while True:
                await c.wait()
                await c.service()

        with pytest.raises(MQTTError) as ei:
            await asyncio.wait_for(run(), 5)
        assert ei.value.code == "dead"
        elapsed = hal.ticks_diff(hal.ticks_ms(), t0)
        assert 900 <= elapsed <= 1500               # ping at 500 ms idle, dead 500 ms later
        assert any(f == 0xC0 for (_, f, _) in peer.packets)
        c.close()
    finally:
        await peer.stop()


async def test_answered_pings_keep_the_connection(tmp_path: Path) -> None:
    peer = await ScriptedBroker().start()
    hal = make_hal(tmp_path / "dev")
    c, _ = client(hal, keepalive_s=1)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", peer.port)
        await c.connect(r, w)

        async def run() -> None:
            while True:
                await c.wait()
                await c.service()

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(run(), 2.5)
        assert sum(1 for (_, f, _) in peer.packets if f == 0xC0) >= 3
        assert c.connected and c.error is None
        await c.disconnect()
    finally:
        await peer.stop()


class _FailingOwner:
    """An owner whose up() fails half-way (after it began announcing)."""

    def __init__(self) -> None:
        self.ups = 0
        self.downs = 0

    def will(self, conn_no: int) -> tuple[str, bytes, int, bool]:
        return (UP_STATUS, b"offline", 1, True)

    async def up(self) -> None:
        self.ups += 1
        raise OSError(104, "connection reset during the announcement")

    async def service(self) -> None:
        raise AssertionError("never served: up() failed")

    def down(self) -> None:
        self.downs += 1


async def test_client_calls_down_after_a_failed_up(broker: Mosquitto, tmp_path: Path) -> None:
    """firmware/mqtt/client.py: once owner.up() has begun, owner.down() follows even when up() fails,
    so the link never leaves the app 'online' after a half-done announcement; the failure is counted
    and the client reconnects with backoff."""
    from firmware.mqtt.client import Client

    hal = make_hal(tmp_path / "dev")
    c = Client(hal, DEVICE, broker.host, broker.port, user=DEVICE, password=DEVICE_PASSWORD, tick_ms=50)
    c.backoff_min_ms, c.backoff_max_ms = 50, 100
    owner = _FailingOwner()
    task = asyncio.create_task(c.run(owner))
    try:
        await until(lambda: owner.ups >= 2, 10, "two attempts")
        assert owner.downs >= owner.ups - 1 and not c.online
        assert c.errors.get("oserror", 0) >= 1 and "announcement" in c.last_error
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        c.close()
