"""Ingest's direct path (messages handled in paho's read callback, not via aiomqtt's queue):
what it takes, what it hands to the queued path, and that no message overtakes an earlier
one. In process, with a real SQLite store and, for the routing, a real mosquitto and the
service's own MQTT loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from gw_support import GW_PASSWORD, TestDevice, db_query, wait_for

from gateway import mqtt as gwire
from gateway import service, timesync
from gateway.config import Config, parse_config
from gateway.ingest import Ingest
from gateway.store.db import Database, open_db
from gateway.store.devices import DeviceRegistry, register_device
from protocol import cjson, messages, topics
from simulator.broker import Mosquitto, standard_acl

SECRET = "3c" * 32


@dataclass
class Core:
    cfg: Config
    db: Database
    ingest: Ingest
    dev: TestDevice


@contextlib.asynccontextmanager
async def core(tmp: Path, port: int = 1) -> AsyncIterator[Core]:
    path = tmp / "gw.db"
    cfg = parse_config({"store": {"path": str(path)}, "ingest": {"batch_ms": 5},
                        "mqtt": {"port": port, "password": GW_PASSWORD, "client_id": "direct-test"}}, tmp)
    db = await open_db(path)
    try:
        await register_device(db, cfg, "dev-a", SECRET, "pw-dev-a")
        registry = DeviceRegistry(db)
        await registry.load()
        downlink = gwire.Downlink(registry)
        ingest = Ingest(cfg, db, registry, timesync.Anchors(), downlink)
        yield Core(cfg, db, ingest, TestDevice("dev-a", SECRET, "pw-dev-a", "127.0.0.1", port))
    finally:
        await db.close()


def rec(dev: TestDevice, **kw: Any) -> tuple[str, bytes]:
    return topics.up(dev.device_id, "rec"), dev.sign("rec", dev.new_record(**kw))


def treq(dev: TestDevice, u: int) -> tuple[str, bytes]:
    return topics.up(dev.device_id, "treq"), dev.sign("treq", {"u": u})


async def test_direct_path_takes_what_needs_no_await(tmp_path: Path) -> None:
    async with core(tmp_path) as c:
        ing, dev = c.ingest, c.dev
        assert ing.handle_now(*rec(dev))
        hb = dev.sign("hb", {"up": 60000, "heap": 1, "rssi": -60, "jd": 0, "fw": "f", "rc": 0,
                             "rst": "power", "sync": False, "st": "idle"})
        assert ing.handle_now(topics.up("dev-a", "hb"), hb)
        assert ing.handle_now(topics.up("dev-a", "hb"), hb)  # replay: refused right here
        assert ing.handle_now(topics.up("dev-a", "rec"), b"{not json")  # refused right here
        assert ing.rejections.totals == {"replay": 1, "not_json": 1}
        assert ing.stats.received == 4 and ing.stats.records_received == 1
        assert ing.pending == 1


@pytest.mark.parametrize("kind", ["unknown_device", "bad_mac", "treq", "hello_with_hook"])
async def test_declined_messages_and_everything_after_them_wait_for_the_queue(
        tmp_path: Path, kind: str) -> None:
    async with core(tmp_path) as c:
        ing, dev = c.ingest, c.dev
        hooked: list[str] = []
        if kind == "unknown_device":
            other = TestDevice("dev-x", SECRET, "", "127.0.0.1", 1)
            first = rec(other)
        elif kind == "bad_mac":
            m = messages.parse(dev.sign("rec", dev.new_record()))
            m["mac"] = "0" * 64
            first = topics.up("dev-a", "rec"), cjson.encode(m)
        elif kind == "treq":
            first = treq(dev, 5000)
        else:
            async def hook(d: str) -> None:
                hooked.append(d)
            ing.hello_hooks.append(hook)
            first = topics.up("dev-a", "hello"), dev.sign(
                "hello", {"fw": "f", "up": 5000, "rst": "power", "cfg": 1, "jd": 0, "safe": False})
        later = [rec(dev, w=0, u=9000), rec(dev)]
        assert not ing.handle_now(*first)
        # Later messages must not overtake the declined one, though each alone would be direct.
        assert [ing.handle_now(*m) for m in later] == [False, False]
        assert ing.stats.received == 0 and ing.pending == 0
        # The service loop hands the queued messages to handle() in order ...
        for m in [first, *later]:
            await ing.handle(*m)
        # ... after which the direct path is open again.
        assert ing.handle_now(*rec(dev))
        assert ing.stats.received == 4
        assert ing.pending == 3
        if kind == "treq":
            # The rec queued behind the treq saw the treq's time anchor.
            assert ing.anchors.cached("dev-a", 1)[0]
        if kind == "hello_with_hook":
            assert hooked == ["dev-a"]
        expected = {"unknown_device": {"unknown_device": 1}, "bad_mac": {"bad_mac": 1}}.get(kind, {})
        assert ing.rejections.totals == expected


async def test_messages_arrive_directly_through_the_service_loop(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The path is off by default (gateway.ingest.DIRECT_PATH, see there); it must still work.
    monkeypatch.setattr("gateway.ingest.DIRECT_PATH", True)
    broker = Mosquitto(tmp_path / "mq", users={"gateway": GW_PASSWORD, "dev-a": "pw-dev-a"},
                       acl=standard_acl())
    broker.start()
    try:
        async with core(tmp_path, broker.port) as c:
            ing, dev = c.ingest, c.dev
            queued_calls = 0
            handle = ing.handle

            async def counting_handle(topic: str, payload: bytes) -> None:
                nonlocal queued_calls
                queued_calls += 1
                await handle(topic, payload)

            ing.handle = counting_handle  # type: ignore[method-assign]
            connected, stopping = asyncio.Event(), asyncio.Event()
            loop_task = asyncio.create_task(
                service._mqtt_loop(c.cfg, ing, ing.downlink, connected, stopping))
            committer = asyncio.create_task(ing.run_committer())
            try:
                await asyncio.wait_for(connected.wait(), 10)
                await dev.connect()
                ids = [await dev.press() for _ in range(300)]
                await wait_for(lambda: all(dev.acks.get(r) == 1 for r in ids), 15, "acks")
                assert queued_calls == 0  # status and 300 recs: all direct
                # treq goes through the queue (its reply is signed with an awaited counter);
                # the records right behind it wait for it, and are still stored and acked.
                await dev.publish("treq", {"u": 7000})
                ids2 = [await dev.press(w=0) for _ in range(20)]
                await wait_for(lambda: all(dev.acks.get(r) == 1 for r in ids2), 15, "acks after treq")
                await wait_for(lambda: bool(dev.commands("time")), 10, "time reply")
                assert queued_calls >= 1
                assert ing.stats.records_received == 320 and ing.rejections.totals == {}
            finally:
                await dev.disconnect()
                stopping.set()
                for t in (loop_task, committer):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await t
        rows = db_query(tmp_path / "gw.db", "SELECT count(*), count(DISTINCT record_id) FROM records")
        assert rows == [(320, 320)]
    finally:
        broker.stop()
