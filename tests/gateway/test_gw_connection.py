"""The gateway's MQTT connection (gateway.mqtt.Connection): paho's documented external-loop
API on the asyncio loop, public API only. Through a real mosquitto (dynsec): bursts arrive
complete and in order; thousands of packets both ways; the gate's consumer keeps other tasks
running; a lost connection, a refused CONNECT or SUBSCRIBE and a client-id takeover each end
with one line that says why; the broker never sends a packet over our Maximum Packet Size.
And the rule itself: no private attribute of paho, aiomqtt or a store driver in gateway/."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from gateway import mqtt as gwire
from gateway import service
from gateway.config import MqttConfig
from gateway.incoming import Gate, GateLimits
from simulator.broker import Mosquitto, standard_acl

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The gateway's account (tied to its client id) and a peer that may use hcp/#."""
    b = Mosquitto(tmp_path / "mq", users={"gateway": "gw", "peer": "pw"},
                  acl=standard_acl() + "\nuser peer\ntopic readwrite hcp/#\n",
                  client_ids={"gateway": "conn-test"})
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(params=["3.1.1", "5"])
def proto(request: pytest.FixtureRequest) -> str:
    """The gateway's connection speaks either (its [mqtt] protocol); devices speak 3.1.1."""
    return str(request.param)


def _cfg(broker: Mosquitto, **kw: object) -> MqttConfig:
    args: dict[str, object] = {"host": broker.host, "port": broker.port, "username": "gateway",
                               "password": "gw", "client_id": "conn-test"}
    args.update(kw)
    return MqttConfig(**args)  # type: ignore[arg-type]


class Inbox:
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.got.append((topic, payload))

    async def wait(self, n: int, limit_s: float = 30.0) -> None:
        for _ in range(int(limit_s / 0.01)):
            if len(self.got) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("%d of %d messages" % (len(self.got), n))


def _peer(broker: Mosquitto) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, username="peer", password="pw", identifier="peer",
                          max_inflight_messages=1000)


async def test_bursts_through_mosquitto_arrive_complete_and_in_order(broker: Mosquitto, proto: str) -> None:
    rnd = random.Random(9)
    # Mostly record-sized payloads, some that span several socket reads (below MAX_PACKET).
    payloads = [bytes([i % 251]) * rnd.choice((1, 200, 300, 5000, 15000)) for i in range(3000)]
    inbox = Inbox()
    conn = gwire.Connection(_cfg(broker, protocol=proto), inbox)
    await conn.connect()
    try:
        await conn.subscribe("hcp/t/#", qos=1)
        async with _peer(broker) as pub:
            await asyncio.gather(*(pub.publish("hcp/t/%d" % i, p, qos=1) for i, p in enumerate(payloads)))
        await inbox.wait(len(payloads))
    finally:
        await conn.close()
    assert [t for t, _ in inbox.got] == ["hcp/t/%d" % i for i in range(len(payloads))]
    assert [p for _, p in inbox.got] == payloads


async def test_many_small_packets_both_ways_through_mosquitto(broker: Mosquitto, proto: str) -> None:
    """3000 QoS 1 messages handed over without waiting (as the acks are) while 3000 incoming
    ones are PUBACKed: every one arrives, and one awaited publish gets its PUBACK."""
    inbox = Inbox()
    conn = gwire.Connection(_cfg(broker, protocol=proto), inbox)
    await conn.connect()
    try:
        await conn.subscribe("hcp/up/#", qos=1)
        async with _peer(broker) as peer:
            await peer.subscribe("hcp/down/#", qos=1)
            assert all(conn.publish_nowait("hcp/down/%d" % i, b"a" * (i % 300)) for i in range(3000))
            await asyncio.gather(*(peer.publish("hcp/up/%d" % i, b"b", qos=1) for i in range(3000)))
            down: list[str] = []

            async def read() -> None:
                async for msg in peer.messages:
                    down.append(msg.topic.value)
                    if len(down) == 3001:
                        return

            reading = asyncio.create_task(read())
            await conn.publish("hcp/down/last", b"z", qos=1)     # waits for its PUBACK
            await asyncio.wait_for(reading, 30)
            await inbox.wait(3000)
        assert not conn.want_write()
    finally:
        await conn.close()
    assert sorted(down) == sorted(["hcp/down/%d" % i for i in range(3000)] + ["hcp/down/last"])
    assert [t for t, _ in inbox.got] == ["hcp/up/%d" % i for i in range(3000)]


async def test_every_message_in_order_and_other_tasks_keep_their_turns() -> None:
    """The gate's consumer (service._incoming_loop) takes a bounded number of queued messages
    per turn, so the committer, the reader and the writes keep running under a long queue."""
    n = 3000
    gate = Gate(GateLimits(device_rate=1e6, device_burst=10**6, queue_max=10**5), lambda *a: None)
    for i in range(n):
        gate.offer("hcp/1/up/dev-%d/rec" % (i % 7), b"x%d" % i)
    handled: list[bytes] = []
    done = asyncio.Event()

    class Sink:
        async def room(self) -> None:
            return None

        async def handle(self, topic: str, payload: bytes, arrival: int | None = None) -> None:
            handled.append(payload)
            if len(handled) == n:
                done.set()

    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other())
    consumer = asyncio.create_task(service._incoming_loop(gate, Sink()))  # type: ignore[arg-type]
    await asyncio.wait_for(done.wait(), 30)
    consumer.cancel()
    ticker.cancel()
    assert handled == [b"x%d" % i for i in range(n)]
    assert service.TURN_MAX < 100
    assert turns >= n // 100, turns


async def test_a_lost_connection_says_so_and_fails_what_waits(broker: Mosquitto, proto: str) -> None:
    conn = gwire.Connection(_cfg(broker, protocol=proto), Inbox())
    await conn.connect()
    await conn.subscribe("hcp/t/#", qos=1)
    broker.stop()
    why = await asyncio.wait_for(conn.wait_closed(), 30)
    assert why in ("connection lost", "connection closed"), why
    with pytest.raises(gwire.MqttError):
        await conn.publish("hcp/t/x", b"1", qos=1)
    await conn.close()


async def test_a_refused_connect_and_subscribe_are_one_line(broker: Mosquitto, proto: str) -> None:
    with pytest.raises(gwire.MqttError) as e:
        await gwire.Connection(_cfg(broker, protocol=proto, password="wrong"), Inbox()).connect()
    assert "refused" in str(e.value) and "\n" not in str(e.value), e.value
    with pytest.raises(gwire.MqttError, match="cannot connect to 127.0.0.1:1: "):
        await gwire.Connection(_cfg(broker, protocol=proto, port=1), Inbox()).connect()
    conn = gwire.Connection(_cfg(broker, protocol=proto), Inbox())
    await conn.connect()
    try:
        with pytest.raises(gwire.MqttError, match="refused"):
            await conn.subscribe("other/#", qos=1)     # outside the gateway's role: SUBACK 0x80
    finally:
        await conn.close()


async def test_a_client_id_takeover_ends_the_older_connection(broker: Mosquitto, proto: str) -> None:
    """Another client with our client id: the broker closes our connection. (mosquitto 2.0
    closes the socket before its DISCONNECT 'session taken over' is written, so the reason
    reads 'connection lost'; the service names the likely cause after repeated short
    connections: tests/gateway/test_gw_instances.py.)"""
    first = gwire.Connection(_cfg(broker, protocol=proto), Inbox())
    await first.connect()
    second = gwire.Connection(_cfg(broker, protocol=proto), Inbox())
    await second.connect()
    try:
        why = await asyncio.wait_for(first.wait_closed(), 10)
        assert why in ("connection lost", "connection closed") or "session taken over" in why, why
        await second.subscribe("hcp/t/#", qos=1)
        assert not second.closed
    finally:
        await first.close()
        await second.close()


async def test_a_packet_over_the_maximum_is_never_delivered(broker: Mosquitto) -> None:
    """MQTT 5 only: the Maximum Packet Size we announce at CONNECT."""
    inbox = Inbox()
    conn = gwire.Connection(_cfg(broker, protocol="5"), inbox)
    await conn.connect()
    try:
        await conn.subscribe("hcp/t/#", qos=1)
        async with _peer(broker) as pub:
            await pub.publish("hcp/t/big", b"x" * (gwire.MAX_PACKET + 1), qos=1)
            await pub.publish("hcp/t/small", b"y", qos=1)
        await inbox.wait(1)
        await asyncio.sleep(0.2)
    finally:
        await conn.close()
    assert inbox.got == [("hcp/t/small", b"y")]


# The check of issue 15: private attributes of paho, aiomqtt or the drivers, reached from outside.
PRIVATE = re.compile(
    r"(?<!self)\._(queue|client|execute|conn|sock_send|out_packet|packet_write|create_socket|"
    r"msgtime_mutex|sock_close|last_msg_out)\b|(getattr|setattr|hasattr)\([^,]+, *[\"']_[a-z]|getsource\(")


def test_gateway_code_uses_no_private_library_api() -> None:
    r = subprocess.run(["grep", "-rnP", PRIVATE.pattern, "gateway", "--include=*.py"], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stdout == "", r.stdout


async def test_on_connack_runs_before_the_messages_queued_behind_it(broker: Mosquitto, proto: str) -> None:
    """With a kept session the broker sends what it queued for us right behind the CONNACK,
    often in the same read: whoever answers them (the downlink of acks) must be told of the
    connection before the first of them is delivered (a failed fresh-clone run lost the acks of
    queued records to that window)."""
    first = gwire.Connection(_cfg(broker, protocol=proto), Inbox())
    await first.connect()
    await first.subscribe("hcp/t/#", qos=1)
    await first.close()
    async with _peer(broker) as pub:
        for i in range(50):
            await pub.publish("hcp/t/q", b"%d" % i, qos=1)
    events: list[str] = []

    def message(topic: str, payload: bytes) -> None:
        events.append("msg")

    conn = gwire.Connection(_cfg(broker, protocol=proto), message,
                            on_connack=lambda c: events.append("connack"))
    await conn.connect()
    try:
        for _ in range(3000):
            if events.count("msg") >= 50:
                break
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    assert conn.session_present
    assert events[0] == "connack" and events.count("connack") == 1 and events.count("msg") == 50
