"""Crash safety: a SIGKILLed gateway loses nothing and stores nothing twice."""

from __future__ import annotations

import asyncio
import time

from gw_support import GatewayEnv, wait_for


def _wait_log(env: GatewayEnv, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in env.gateway.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"gateway never logged {text!r}\n{env.gateway.log_tail()}")
        time.sleep(0.02)


async def test_sigkill_between_receipt_and_commit_loses_nothing(gw_env_factory: object) -> None:
    # A 3 s group-commit window: the records sit received-but-uncommitted long enough to kill.
    env: GatewayEnv = gw_env_factory(["dev-a"], batch_ms=3000)  # type: ignore[operator]
    env.gateway.start()
    dev = env.device("dev-a")
    await dev.connect()
    try:
        await dev.hello()
        ids = [await dev.press(grade="s") for _ in range(20)]
        await asyncio.to_thread(_wait_log, env, "batch opened by dev-a:1:1")
        await asyncio.sleep(0.3)  # let the rest of the 20 arrive in the same open batch
        env.gateway.kill()
        assert env.count("SELECT count(*) FROM records") == 0
        assert dev.acks == {}
        assert len(dev.journal) == 20

        await asyncio.to_thread(env.gateway.start)
        # The device re-sends what is unacked (its journal); the broker may also redeliver
        # what the dead gateway had not PUBACKed. Either way: stored once, all acked.
        await dev.resend_unacked()
        await wait_for(lambda: all(i in dev.acks for i in ids), limit_s=15, what="acks after restart")
        await dev.resend_unacked()  # nothing left to send
    finally:
        await dev.disconnect()
    assert dev.journal == {}
    assert env.count("SELECT count(*) FROM records") == 20
    assert env.count("SELECT count(DISTINCT record_id) FROM records") == 20
    assert "Traceback" not in env.gateway.log_text()


async def test_records_queued_while_gateway_down_are_delivered_on_restart(gw_env_factory: object) -> None:
    """clean_session=False + fixed client id: the broker queues QoS 1 for the gateway."""
    env: GatewayEnv = gw_env_factory(["dev-a"])  # type: ignore[operator]
    env.gateway.start()
    env.gateway.terminate()  # the broker now holds the gateway's persistent session
    dev = env.device("dev-a")
    await dev.connect()
    try:
        await dev.hello()
        ids = [await dev.press(grade="vs") for _ in range(10)]
        await asyncio.sleep(0.2)
        assert dev.acks == {}
        await asyncio.to_thread(env.gateway.start)
        # No re-send: the queued copies alone must arrive.
        await wait_for(lambda: all(i in dev.acks for i in ids), limit_s=15, what="acks of queued records")
    finally:
        await dev.disconnect()
    assert env.count("SELECT count(*) FROM records") == 10
