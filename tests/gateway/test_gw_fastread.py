"""The gateway's buffered socket reads (gateway.mqtt.BufferedSocket): same bytes, same order,
nothing left behind in the buffer -- unit-tested on a socket pair, then through a real
mosquitto with bursts that put many packets (and packets split across reads) in one recv."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho_mqtt
import pytest

from gateway import mqtt as gwire
from gateway.config import MqttConfig
from simulator.broker import Mosquitto, standard_acl


def _pair() -> tuple[gwire.BufferedSocket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    return gwire.BufferedSocket(a), b


def test_small_reads_come_from_one_large_read() -> None:
    buffered, peer = _pair()
    try:
        peer.sendall(b"\x30\x05hello\x40\x02\x00\x01")
        assert buffered.recv(1) == b"\x30"
        assert buffered.pending() == 10
        assert buffered.recv(1) == b"\x05"
        assert buffered.recv(5) == b"hello"
        assert buffered.recv(2) == b"\x40\x02"
        assert buffered.recv(100) == b"\x00\x01"  # never more than is buffered
        assert buffered.pending() == 0
        with pytest.raises(BlockingIOError):
            buffered.recv(1)  # empty buffer and nothing on the socket: paho's "again"
        peer.sendall(b"xy")
        assert buffered.recv(10) == b"xy"  # a read that fits is returned as is
        peer.close()
        with pytest.raises(BlockingIOError):
            buffered.recv(1)  # one socket read per read callback: this one is over
        assert buffered.recv(1) == b""  # EOF passes through: paho sees the connection lost
    finally:
        buffered.close()  # delegated to the socket
        peer.close()


def test_random_read_sizes_give_back_the_stream_exactly() -> None:
    rnd = random.Random(4)
    buffered, peer = _pair()
    try:
        stream = bytes(rnd.randrange(256) for _ in range(300_000))
        got = bytearray()
        sent = 0
        while len(got) < len(stream):
            if sent < len(stream):
                n = rnd.choice((1, 7, 300, 70_000))
                peer.sendall(stream[sent:sent + n])
                sent += n
            while True:
                try:
                    data = buffered.recv(rnd.choice((1, 2, 50, 1000, 100_000)))
                except BlockingIOError:
                    break
                assert data
                got += data
        assert bytes(got) == stream
        assert buffered.pending() == 0
        assert buffered.fileno() >= 0 and buffered.gettimeout() == 0.0  # delegation
    finally:
        buffered.close()
        peer.close()


def test_aiomqtt_drains_pending_bytes() -> None:
    """The guard: aiomqtt's reader must loop while the socket reports pending() bytes."""
    assert gwire._aiomqtt_drains_pending()


async def test_bursts_through_mosquitto_arrive_complete_and_in_order(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mq", users={"gateway": "gw", "pub": "pw"},
                       acl=standard_acl() + "\nuser pub\ntopic write hcp/#\n")
    broker.start()
    try:
        cfg = MqttConfig(host=broker.host, port=broker.port, username="gateway", password="gw",
                         client_id="fastread-test")
        rnd = random.Random(9)
        # Mostly record-sized payloads, some big ones that span several 64 KB reads.
        payloads = [bytes([i % 251]) * rnd.choice((1, 200, 300, 5000, 150_000)) for i in range(3000)]
        async with gwire.session(cfg) as sub:
            paho = sub._client
            assert isinstance(paho._sock, gwire.BufferedSocket)
            await sub.subscribe("hcp/t/#", qos=1)
            async with aiomqtt.Client(broker.host, broker.port, username="pub", password="pw",
                                      max_inflight_messages=1000) as pub:
                await asyncio.gather(*(pub.publish("hcp/t/%d" % i, p, qos=1)
                                       for i, p in enumerate(payloads)))
            got: list[tuple[str, bytes]] = []

            async def read() -> None:
                async for msg in sub.messages:
                    assert isinstance(msg.payload, bytes)
                    got.append((msg.topic.value, msg.payload))
                    if len(got) == len(payloads):
                        return

            await asyncio.wait_for(read(), 30)
        assert [t for t, _ in got] == ["hcp/t/%d" % i for i in range(len(payloads))]
        assert [p for _, p in got] == payloads
    finally:
        broker.stop()


def _paho_on(sock: socket.socket) -> paho_mqtt.Client:
    client = paho_mqtt.Client(paho_mqtt.CallbackAPIVersion.VERSION2)
    client._sock = sock
    assert gwire._coalesce_writes(client)
    return client


def _packet(client: paho_mqtt.Client, command: int, body: bytes, qos: int) -> None:
    info = paho_mqtt.MQTTMessageInfo(1)
    client._out_packet.append({"command": command, "mid": 1, "qos": qos, "pos": 0,
                               "to_process": len(body), "packet": body, "info": info})


def test_coalesced_writes_keep_every_byte_in_order_through_partial_writes() -> None:
    rnd = random.Random(5)
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # force partial writes
    a.setblocking(False)
    b.setblocking(False)
    client = _paho_on(a)
    sends = 0
    real_send = a.send

    class Counting:
        def send(self, data: bytes) -> int:
            nonlocal sends
            sends += 1
            return real_send(data)

        def __getattr__(self, name: str) -> object:
            return getattr(a, name)

    client._sock = Counting()  # type: ignore[assignment]
    expected = bytearray()
    published: list[int] = []
    client.on_publish = lambda *args: published.append(1)
    for i in range(3000):
        if i % 500 == 250:
            command, qos = 0x30, 0  # QoS 0 PUBLISH: paho's own path (calls on_publish)
        else:
            command, qos = rnd.choice([(0x40, 1), (0x32, 1)])
        body = bytes([command]) + bytes(rnd.randrange(256) for _ in range(rnd.choice((3, 40, 300, 9000))))
        _packet(client, command, body, qos)
        expected += body
    got = bytearray()
    for _ in range(100_000):
        client._packet_write()
        with contextlib.suppress(BlockingIOError):
            got += b.recv(1 << 20)
        if not client._out_packet and len(got) == len(expected):
            break
    assert bytes(got) == bytes(expected)
    assert len(published) == 6  # the QoS 0 publishes, each reported once
    assert sends < 3000  # joined (most of these are refused sends on the full buffer)
    a.close()
    b.close()


def test_a_burst_of_pubacks_is_one_send() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    client = _paho_on(a)
    sent: list[int] = []
    real_send = a.send

    class Counting:
        def send(self, data: bytes) -> int:
            sent.append(len(data))
            return real_send(data)

        def __getattr__(self, name: str) -> object:
            return getattr(a, name)

    client._sock = Counting()  # type: ignore[assignment]
    for mid in range(1, 1001):
        _packet(client, 0x40, bytes([0x40, 2, mid >> 8, mid & 255]), 1)
    assert client._packet_write() == paho_mqtt.MQTT_ERR_SUCCESS
    assert sent == [4000] and not client._out_packet
    assert b.recv(8192) == b"".join(bytes([0x40, 2, m >> 8, m & 255]) for m in range(1, 1001))
    a.close()
    b.close()


async def test_many_small_packets_both_ways_through_mosquitto(tmp_path: Path) -> None:
    """The gateway client publishes 3000 QoS 1 messages straight to paho (as Downlink does)
    while PUBACKing 3000 incoming ones: all arrive, every PUBLISH is PUBACKed by the broker."""
    broker = Mosquitto(tmp_path / "mq", users={"gateway": "gw", "peer": "pw"},
                       acl=standard_acl() + "\nuser peer\ntopic readwrite hcp/#\n")
    broker.start()
    try:
        cfg = MqttConfig(host=broker.host, port=broker.port, username="gateway", password="gw",
                         client_id="coalesce-test")
        async with gwire.session(cfg) as gw, aiomqtt.Client(
                broker.host, broker.port, username="peer", password="pw", max_inflight_messages=1000) as peer:
            await gw.subscribe("hcp/up/#", qos=1)
            await peer.subscribe("hcp/down/#", qos=1)
            paho = gw._client
            infos = [paho.publish("hcp/down/%d" % i, b"a" * (i % 300), qos=1) for i in range(3000)]
            await asyncio.gather(*(peer.publish("hcp/up/%d" % i, b"b", qos=1) for i in range(3000)))
            down: list[str] = []
            up: list[str] = []

            async def read(client: aiomqtt.Client, into: list[str]) -> None:
                async for msg in client.messages:
                    into.append(msg.topic.value)
                    if len(into) == 3000:
                        return

            await asyncio.wait_for(asyncio.gather(read(peer, down), read(gw, up)), 30)
            for _ in range(500):
                if all(i.is_published() for i in infos):
                    break
                await asyncio.sleep(0.01)
            assert all(i.is_published() for i in infos)  # the broker's PUBACK came for each
            assert sorted(down) == sorted("hcp/down/%d" % i for i in range(3000))
            assert up == ["hcp/up/%d" % i for i in range(3000)]
    finally:
        broker.stop()
