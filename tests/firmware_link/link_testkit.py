"""Real parts for the link tests: host HAL with a real-time clock, the real journal, a small
app stand-in (the link only needs on_link/on_command/state_name/clock/safe), and a gateway
stand-in on aiomqtt (an independent MQTT implementation) that records uplink messages and acks
records with commands signed by the device key."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt

from firmware.clock import Clock
from firmware.hal.host import HostHal, VirtualClock
from firmware.journal import Journal
from protocol import messages, topics
from protocol.auth import Key

SECRET = "5a" * 32
DEVICE = "dev-a"          # a user of tests/harness TEST_USERS, password "pa"
DEVICE_PASSWORD = "pa"
GATEWAY = ("gateway", "gwpass")


def make_hal(root: Path) -> HostHal:
    root.mkdir(parents=True, exist_ok=True)
    return HostHal(root=str(root), clock=VirtualClock(speed=1))


def make_journal(hal: HostHal, boot: int) -> Journal:
    j = Journal(hal).open()
    j.begin(boot)
    return j


def make_cfg(port: int, password: str = DEVICE_PASSWORD, hb_s: int = 180) -> dict[str, Any]:
    return {"device_id": DEVICE, "secret": SECRET, "hb_s": hb_s, "cfg": 3,
            "broker": {"host": "127.0.0.1", "port": port, "password": password}}


class StubApp:
    """The app as the link sees it; the real state machine is tested by the firmware team."""

    def __init__(self, hal: HostHal) -> None:
        self.clock = Clock(hal)
        self.safe = False
        self.links: list[bool] = []
        self.commands: list[dict[str, Any]] = []

    def on_link(self, up: bool) -> None:
        self.links.append(up)

    def on_command(self, msg: dict[str, Any]) -> None:
        self.commands.append(msg)

    def state_name(self) -> str:
        return "idle"


async def until(cond: Callable[[], Any], limit_s: float = 10.0, what: str = "condition") -> None:
    """Poll cond every 10 ms; fail the test after limit_s."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.01)


class GatewayStub:
    """Subscribes to every uplink topic; optionally acks each `rec` it sees (auto_ack)."""

    def __init__(self, port: int, key: Key | None = None, boot: int = 1, auto_ack: bool = False,
                 client_id: str = "gw-test", persistent: bool = False, ack_delay_s: float = 0.0) -> None:
        self.port = port
        self.key = key or Key(SECRET)
        self.boot = boot
        self.auto_ack = auto_ack
        self.ack_delay_s = ack_delay_s
        self.client_id = client_id
        self.persistent = persistent      # clean_session=0: the broker queues for us while away
        self.received: list[tuple[str, dict[str, Any], bool]] = []   # (topic, message, retain)
        self.undecodable: list[tuple[str, str]] = []
        self.connections = 0
        self.n = 0
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._stopping = False

    def of_type(self, t: str) -> list[dict[str, Any]]:
        return [m for (_, m, _) in self.received if m["t"] == t]

    def record_ids(self) -> list[tuple[int, int]]:
        return [(m["rb"], m["rs"]) for m in self.of_type("rec")]

    async def start(self) -> GatewayStub:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def _run(self) -> None:
        while True:   # reconnect like a real gateway when the broker restarts
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, username=GATEWAY[0], password=GATEWAY[1],
                                          identifier=self.client_id, clean_session=not self.persistent) as c:
                    self._client = c
                    self.connections += 1
                    await c.subscribe(topics.up("+", "+"), qos=1)
                    self._ready.set()
                    async for msg in c.messages:
                        await self._on(msg)
            except aiomqtt.MqttError:
                # aiomqtt's __aexit__ can turn our cancellation into an MqttError: only
                # reconnect when nobody asked us to stop.
                self._client = None
                if self._stopping:
                    return
                await asyncio.sleep(0.05)

    async def _on(self, msg: aiomqtt.Message) -> None:
        payload = bytes(msg.payload) if isinstance(msg.payload, (bytes, bytearray)) else b""
        try:
            m = messages.decode(payload, self.key, str(msg.topic))
        except Exception as e:
            self.undecodable.append((str(msg.topic), repr(e)))
            return
        self.received.append((str(msg.topic), m, bool(msg.retain)))
        if self.auto_ack and m["t"] == "rec":
            if self.ack_delay_s:
                await asyncio.sleep(self.ack_delay_s)
            await self.ack([[m["rb"], m["rs"]]])

    def signed_ack(self, pairs: list[list[int]], boot: int | None = None, n: int | None = None,
                   key: Key | None = None) -> bytes:
        if n is None:
            self.n += 1
            n = self.n
        m = {"t": "ack", "d": DEVICE, "b": self.boot if boot is None else boot, "n": n, "a": pairs}
        return messages.sign(m, key or self.key)

    async def ack(self, pairs: list[list[int]], **kw: Any) -> None:
        await self.publish_down("ack", self.signed_ack(pairs, **kw))

    async def publish_down(self, kind: str, payload: bytes) -> None:
        assert self._client is not None
        await self._client.publish(topics.down(DEVICE, kind), payload, qos=1)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                # aiomqtt's graceful disconnect in __aexit__ waits without a limit and sometimes
                # never completes after a cancel: bound it (the broker fixture stops anyway).
                await asyncio.wait_for(self._task, 1)
            except (TimeoutError, asyncio.CancelledError, aiomqtt.MqttError):
                pass


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
