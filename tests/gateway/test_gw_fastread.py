"""The gateway's buffered socket reads (gateway.mqtt.BufferedSocket): same bytes, same order,
nothing left behind in the buffer -- unit-tested on a socket pair, then through a real
mosquitto with bursts that put many packets (and packets split across reads) in one recv."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import aiomqtt
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
