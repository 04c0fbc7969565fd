"""A gateway subsystem (gateway.service.serve's `extra`) that fails at start after DELAY_S:
the shutdown tests sweep the delay across the MQTT connect, so the failure lands before,
during and after the broker's CONNACK."""

from __future__ import annotations

import asyncio
from typing import Any

DELAY_S = 0.0


class SubsystemStartFailed(RuntimeError):
    pass


async def start() -> Any:
    await asyncio.sleep(DELAY_S)
    raise SubsystemStartFailed(f"test subsystem failed at start after {DELAY_S * 1000:.1f} ms")
