"""Test helpers for the gateway: a protocol-level test device and an environment builder.

TestDevice is a small asyncio MQTT client (aiomqtt) that speaks protocol v1 like the real
firmware: it signs every message with its key, keeps records in a journal until the
gateway's ack (verified with the same key and the current boot) and can re-send them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from harness.store import is_pg, query

from protocol import messages, topics
from protocol.auth import Key
from protocol.ids import record_id
from simulator.broker import Mosquitto, standard_acl
from simulator.gateway_proc import GatewayProcess, write_config

GW_PASSWORD = "gwpass"
GW_CLIENT_ID = "hcp-gateway"
# A test-only account that may publish on any uplink topic (what the gateway's account could
# do before each account was tied to its client id): for messages no device ACL lets through.
INJECTOR = ("test-injector", "injector-pw")


@dataclass
class Received:
    topic: str
    m: dict[str, Any]
    at: float


@dataclass
class TestDevice:
    device_id: str
    secret_hex: str
    password: str
    host: str
    port: int
    boot: int = 1
    conn: int = 1
    n: int = 0
    seq: int = 0
    journal: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    acks: dict[str, int] = field(default_factory=dict)        # record id -> times acked
    received: list[Received] = field(default_factory=list)
    bad_commands: int = 0
    on_ack: Callable[[list[str]], None] | None = None
    _client: aiomqtt.Client | None = None
    _stack: contextlib.AsyncExitStack | None = None
    _reader: asyncio.Task[None] | None = None

    __test__ = False  # not a pytest test class

    @property
    def key(self) -> Key:
        return Key(self.secret_hex)

    def sign(self, t: str, fields: dict[str, Any], b: int | None = None, n: int | None = None,
             d: str | None = None) -> bytes:
        m = dict(fields)
        if n is None:
            self.n += 1
            n = self.n
        m.update(t=t, d=d or self.device_id, b=self.boot if b is None else b, n=n)
        return bytes(messages.sign(m, self.key))

    async def connect(self, announce: bool = True) -> None:
        will_payload = self.sign("status", {"s": "offline", "c": self.conn})
        self._stack = contextlib.AsyncExitStack()
        client = aiomqtt.Client(
            self.host, self.port, username=self.device_id, password=self.password,
            identifier=self.device_id, clean_session=True, keepalive=30,
            will=aiomqtt.Will(topics.up(self.device_id, "status"), will_payload, qos=1, retain=True))
        self._client = await self._stack.enter_async_context(client)
        await client.subscribe(topics.device_sub(self.device_id), qos=1)
        self._reader = asyncio.create_task(self._read())
        if announce:
            await self.publish("status", {"s": "online", "c": self.conn}, retain=True)

    async def disconnect(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._stack is not None:
            with contextlib.suppress(Exception):
                await self._stack.aclose()
        self._client = None

    async def _read(self) -> None:
        assert self._client is not None
        async for msg in self._client.messages:
            payload = bytes(msg.payload) if isinstance(msg.payload, bytes | bytearray) else b""
            try:
                m = messages.decode(payload, self.key, msg.topic.value)
            except Exception:
                self.bad_commands += 1
                continue
            if m["b"] != self.boot:
                self.bad_commands += 1  # the firmware drops commands of another boot
                continue
            self.received.append(Received(msg.topic.value, m, time.monotonic()))
            if m["t"] == "ack":
                ids = []
                for rb, rs in m["a"]:
                    rid = record_id(self.device_id, rb, rs)
                    self.acks[rid] = self.acks.get(rid, 0) + 1
                    self.journal.pop((rb, rs), None)
                    ids.append(rid)
                if self.on_ack is not None:
                    self.on_ack(ids)

    async def publish(self, t: str, fields: dict[str, Any], retain: bool = False, **kw: Any) -> bytes:
        payload = self.sign(t, fields, **kw)
        await self.publish_raw(topics.up(self.device_id, t), payload, retain=retain)
        return payload

    async def publish_raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1, retain=retain)

    def new_record(self, grade: str = "vs", kind: str = "walkup", inv: str = "", w: int = 0,
                   u: int | None = None) -> dict[str, Any]:
        self.seq += 1
        rec = {"k": kind, "rb": self.boot, "rs": self.seq, "g": grade, "i": inv, "w": w,
               "u": u if u is not None else 1000 * self.seq}
        self.journal[(self.boot, self.seq)] = rec
        return rec

    async def send_record(self, rec: dict[str, Any]) -> str:
        await self.publish("rec", rec)
        return record_id(self.device_id, rec["rb"], rec["rs"])

    async def press(self, **kw: Any) -> str:
        return await self.send_record(self.new_record(**kw))

    async def resend_unacked(self) -> int:
        recs = list(self.journal.values())
        for rec in recs:
            await self.send_record(rec)
        return len(recs)

    async def hello(self, up: int = 5000) -> None:
        await self.publish("hello", {"fw": "test-1", "up": up, "rst": "power", "cfg": 1,
                                     "jd": len(self.journal), "safe": False})

    async def hb(self, up: int = 60000) -> None:
        await self.publish("hb", {"up": up, "heap": 50000, "rssi": -60, "jd": len(self.journal),
                                  "fw": "test-1", "rc": 0, "rst": "power", "sync": False, "st": "idle"})

    def commands(self, t: str) -> list[dict[str, Any]]:
        return [r.m for r in self.received if r.m["t"] == t]


async def wait_for(pred: Callable[[], bool], limit_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + limit_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def db_query(db_path: Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A separate connection: sees exactly what is committed (SQLite or PostgreSQL)."""
    return query(db_path, sql, params)


def rejection_counts(db_path: Path | str) -> dict[str, int]:
    return {r: n for r, n in db_query(db_path, "SELECT reason, count FROM rejections")}


@dataclass
class GatewayEnv:
    tmp: Path
    broker: Mosquitto
    db_path: Path | str      # the SQLite file, or the PostgreSQL url
    config_path: Path
    gateway: GatewayProcess
    devices: dict[str, tuple[str, str]]   # id -> (secret_hex, broker password)

    def device(self, device_id: str) -> TestDevice:
        secret, pw = self.devices[device_id]
        return TestDevice(device_id, secret, pw, self.broker.host, self.broker.port)

    def count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return int(db_query(self.db_path, sql, params)[0][0])


def make_env(tmp: Path, device_ids: list[str], batch_ms: int = 5, batch_max: int = 500,
             extra_config: str = "", store_url: str | None = None) -> GatewayEnv:
    """Broker (gateway + device users, standard ACL), a DB with the devices registered,
    a config; the gateway process is created but not started."""
    devices = {d: (secrets.token_hex(32), "pw-" + d) for d in device_ids}
    users = {"gateway": GW_PASSWORD, INJECTOR[0]: INJECTOR[1], **{d: pw for d, (_, pw) in devices.items()}}
    # The hall's identity rules: the gateway's account tied to its client id, each device's to
    # its id (dynsec); the gateway may create device accounts through the control API.
    broker = Mosquitto(tmp / "mosquitto", users=users,
                       acl=standard_acl() + "\nuser %s\ntopic write hcp/1/up/#\n" % INJECTOR[0],
                       client_ids={"gateway": GW_CLIENT_ID})
    broker.start()
    (tmp / "gw").mkdir(parents=True, exist_ok=True)
    db_path: Path | str = (store_url if store_url is not None and is_pg(store_url)
                           else tmp / "gw" / "gateway.db")
    # Its own thread and loop: make_env may be called from inside an async test.
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        ex.submit(asyncio.run, _register_all(db_path, devices)).result()
    cfg = write_config(tmp / "gw" / "gateway.toml", mqtt_port=broker.port, mqtt_password=GW_PASSWORD,
                       db_path=db_path, batch_ms=batch_ms, batch_max=batch_max, extra=extra_config,
                       client_id=GW_CLIENT_ID, broker_toml=broker.gateway_broker_toml())
    return GatewayEnv(tmp, broker, db_path, cfg, GatewayProcess(cfg, log_level="DEBUG"), devices)


async def _register_all(db_path: Path | str, devices: dict[str, tuple[str, str]]) -> None:
    from gateway.broker_accounts import NoBrokerAccounts
    from gateway.devices import DeviceService
    from gateway.store import open_store

    store = await open_store(db_path)
    try:
        svc = DeviceService(store, NoBrokerAccounts())
        for d, (secret, pw) in devices.items():
            await svc.register(d, secret, pw, fw="test-1")
    finally:
        await store.close()
