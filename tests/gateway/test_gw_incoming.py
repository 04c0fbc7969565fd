"""gateway.mqtt.incoming: aiomqtt's messages without a task and an asyncio.wait per message.
Through a real mosquitto: every message, in order; other tasks keep running while a long
queue is drained; a lost connection still ends the iteration with MqttError."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from gateway import mqtt as gwire
from gateway.config import MqttConfig
from simulator.broker import Mosquitto, standard_acl

N = 3000


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The gateway's user and a publisher that may write anywhere under hcp/."""
    b = Mosquitto(tmp_path / "mq", users={"gateway": "gw", "pub": "pw"},
                  acl=standard_acl() + "\nuser pub\ntopic write hcp/#\n")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _cfg(broker: Mosquitto) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, username="gateway", password="gw",
                      client_id="incoming-test")


async def test_every_message_in_order_and_other_tasks_keep_their_turns(broker: Mosquitto) -> None:
    async with gwire.session(_cfg(broker)) as sub:
        await sub.subscribe("hcp/t/#", qos=1)
        async with aiomqtt.Client(broker.host, broker.port, username="pub", password="pw",
                                  max_inflight_messages=1000) as pub:
            await asyncio.gather(*(pub.publish("hcp/t/%d" % i, b"x" * 200, qos=1) for i in range(N)))
        for _ in range(1000):             # all of them queued: the drain path is what runs
            if len(sub.messages) >= N:
                break
            await asyncio.sleep(0.01)
        assert len(sub.messages) == N
        turns = 0

        async def other() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(other())
        got: list[str] = []
        async for msg in gwire.incoming(sub):
            got.append(msg.topic.value)
            if len(got) == N:
                break
        ticker.cancel()
    assert got == ["hcp/t/%d" % i for i in range(N)]
    # A bounded number of queued messages per turn (DRAIN_MAX), then aiomqtt's iterator
    # yields to the loop: other tasks ran at least once per 100 messages.
    assert gwire.DRAIN_MAX < 100
    assert turns >= N // 100, turns


async def test_a_lost_connection_ends_the_iteration_with_mqtterror(broker: Mosquitto) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with gwire.session(_cfg(broker)) as sub:
            await sub.subscribe("hcp/t/#", qos=1)

            async def consume() -> None:
                async for _ in gwire.incoming(sub):
                    pass

            reader = asyncio.create_task(consume())
            await asyncio.sleep(0.2)
            broker.stop()
            await asyncio.wait_for(reader, 10)
