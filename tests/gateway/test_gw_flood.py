"""Issue 14, item 4: a flood from one device. The incoming gate (gateway/incoming.py): a
per-device token bucket and one queue bounded in messages and bytes; every drop counted
(`rate_limited`, `queue_full`) and the flooding device flagged in `health`. Unit tests of the
gate on a fake clock, then the real path: a device floods QoS 0 1 KB messages through
mosquitto while another device's records are all stored and acked, and the gateway stays up.
(How fast the other device's acks stay under the flood is a benchmark: bench/flood.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiomqtt
import pytest
from gw_support import GatewayEnv, rejection_counts, wait_for

from gateway import cli
from gateway.incoming import Gate, GateLimits
from protocol import topics


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _gate(**kw: float) -> tuple[Gate, Clock, list[tuple[str, str]]]:
    clock = Clock()
    drops: list[tuple[str, str]] = []
    gate = Gate(GateLimits(**kw), lambda reason, dev, at: drops.append((reason, dev)),  # type: ignore[arg-type]
                clock=clock, wall_ms=lambda: 1)
    return gate, clock, drops


def test_a_device_beyond_its_burst_is_rate_limited_and_refills() -> None:
    gate, clock, drops = _gate(device_rate=10, device_burst=20, queue_max=1000)
    for _ in range(25):
        gate.offer("hcp/1/up/dev-a/rec", b"x")
    assert len(gate) == 20 and drops == [("rate_limited", "dev-a")] * 5
    gate.offer("hcp/1/up/dev-b/rec", b"y")        # another device has its own bucket
    assert len(gate) == 21
    clock.t += 0.5                                  # 5 tokens back
    for _ in range(6):
        gate.offer("hcp/1/up/dev-a/hb", b"x")
    assert len(gate) == 26 and drops[-1] == ("rate_limited", "dev-a") and len(drops) == 6
    clock.t += 1000                                 # never more than the burst
    for _ in range(30):
        gate.offer("hcp/1/up/dev-a/rec", b"x")
    assert len(gate) == 46


def test_the_queue_is_bounded_in_messages_and_bytes() -> None:
    gate, _, drops = _gate(device_rate=1e6, device_burst=10**6, queue_max=10, queue_max_bytes=65536)
    for i in range(12):
        gate.offer("hcp/1/up/dev-%d/rec" % i, b"x")
    assert len(gate) == 10 and drops == [("queue_full", "dev-10"), ("queue_full", "dev-11")]
    gate2, _, drops2 = _gate(device_rate=1e6, device_burst=10**6, queue_max=1000, queue_max_bytes=65536)
    for _ in range(70):
        gate2.offer("hcp/1/up/dev-a/rec", b"x" * 1024)
    assert len(gate2) == 64 and len(drops2) == 6
    assert gate2.get_nowait() is not None and len(gate2) == 63   # room again
    gate2.offer("hcp/1/up/dev-a/rec", b"x" * 1024)
    assert len(gate2) == 64


def test_buckets_of_invented_ids_stay_bounded() -> None:
    from gateway import incoming
    gate, clock, _ = _gate(device_rate=1, device_burst=1, queue_max=10)
    for i in range(incoming._MAX_BUCKETS + 500):
        gate.offer("hcp/1/up/x%d/rec" % i, b"")
        gate.get_nowait()
    assert len(gate._buckets) <= incoming._MAX_BUCKETS
    clock.t += incoming._IDLE_S + 1
    gate.offer("hcp/1/up/new/rec", b"")
    assert len(gate._buckets) == 1                 # the idle ones were swept


def _cli(config: Path, *args: str) -> int:
    try:
        cli.main(["--config", str(config), *args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


async def test_a_flooding_device_is_limited_counted_and_flagged_while_another_is_served(
        gw_env_factory: object, capsys: object) -> None:
    env: GatewayEnv = gw_env_factory(["dev-a", "dev-f"])  # type: ignore[operator]
    text = env.config_path.read_text()
    limits = "[ingest]\ndevice_rate = 50\ndevice_burst = 100\nquench_s = 0\n"   # rate limit only
    env.config_path.write_text(text.replace("[ingest]\n", limits, 1))
    env.gateway.start()
    dev = env.device("dev-a")
    await dev.connect()
    flood_payload = b"\x00" * 1024
    sent = 0
    try:
        async with aiomqtt.Client(env.broker.host, env.broker.port, username="dev-f",
                                  password=env.devices["dev-f"][1], identifier="dev-f",
                                  max_queued_outgoing_messages=0) as flooder:
            async def flood() -> None:
                nonlocal sent
                for _ in range(20000):
                    await flooder.publish(topics.up("dev-f", "rec"), flood_payload, qos=0)
                    sent += 1
                    if sent % 200 == 0:
                        await asyncio.sleep(0)

            flooding = asyncio.create_task(flood())
            rids = []
            for _ in range(20):
                rids.append(await dev.press())
                await asyncio.sleep(0.02)
            await flooding
        await wait_for(lambda: all(r in dev.acks for r in rids), 30, "acks for the other device")
    finally:
        await dev.disconnect()
    assert env.gateway.running
    counts = await _eventually_counted(env)
    assert counts.get("rate_limited", 0) > sent // 2, (counts, sent)
    assert env.count("SELECT count(*) FROM records WHERE device_id = 'dev-a'") == 20
    # health: the flooding device is flagged (and that is a finding: exit 1)
    code = await asyncio.to_thread(_cli, env.config_path, "--json", "health")
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    devs = {d["device_id"]: d for d in json.loads(out)["devices"]}
    assert devs["dev-f"]["flooding"] and devs["dev-f"]["limited"] > 0
    assert not devs["dev-a"]["flooding"]
    assert code == 1


async def _eventually_counted(env: GatewayEnv) -> dict[str, int]:
    await wait_for(lambda: rejection_counts(env.db_path).get("rate_limited", 0) > 0, 10,
                   "rate_limited counted")
    await asyncio.sleep(1.5)     # the next flush
    return rejection_counts(env.db_path)


async def test_a_flooding_device_is_quenched_at_the_broker_and_let_back_in(gw_env_factory: object) -> None:
    """dynsec: the flooder's account is disabled (thrown out, refused while quenched), then
    enabled again by the leader when the quench runs out; its records then go through."""
    env: GatewayEnv = gw_env_factory(["dev-a", "dev-f"])  # type: ignore[operator]
    text = env.config_path.read_text()
    limits = "[ingest]\ndevice_rate = 50\ndevice_burst = 100\nquench_s = 8\nquench_drops_per_s = 200\n"
    env.config_path.write_text(text.replace("[ingest]\n", limits, 1))
    env.gateway.start()
    pw = env.devices["dev-f"][1]

    async def flood() -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client(env.broker.host, env.broker.port, username="dev-f", password=pw,
                                      identifier="dev-f") as flooder:
                for _ in range(20000):
                    await flooder.publish(topics.up("dev-f", "rec"), b"\x00" * 1024, qos=0)
                    await asyncio.sleep(0)

    flooding = asyncio.create_task(flood())
    try:
        await wait_for(lambda: "disabled" in env.gateway.log_text(), 10, "the quench")
        with pytest.raises(aiomqtt.MqttError):         # refused while quenched
            async with aiomqtt.Client(env.broker.host, env.broker.port, username="dev-f", password=pw,
                                      identifier="dev-f"):
                pass
    finally:
        flooding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flooding
    assert "device dev-f floods" in env.gateway.log_text()
    assert env.count("SELECT count(*) FROM devices WHERE quenched_until IS NOT NULL") == 1
    await wait_for(lambda: "quench over" in env.gateway.log_text(), 30, "the quench to run out")
    dev = env.device("dev-f")                       # back in: a real record is stored and acked
    await dev.connect()
    try:
        rid = await dev.press()
        await wait_for(lambda: rid in dev.acks, 10, "ack after the quench")
    finally:
        await dev.disconnect()
    assert env.count("SELECT count(*) FROM devices WHERE quenched_until IS NOT NULL") == 0
