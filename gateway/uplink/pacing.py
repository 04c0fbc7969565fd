"""Pacing of requests to the platform: a rate limit and exponential backoff with jitter.

Both wait on a stop event so a stopping gateway never sits out a long backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time


async def sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep; return True early (without error) when stop is set."""
    if seconds <= 0:
        return stop is not None and stop.is_set()
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


class RateLimiter:
    """At most `per_second` requests per second: starts are spaced by 1/per_second.

    Spacing rather than a burst bucket, so catching up after days offline sends an even
    stream the platform can plan for.
    """

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        now = time.monotonic()
        if now < self._next and await sleep_or_stop(self._next - now, stop):
            return True
        self._next = max(time.monotonic(), self._next) + self.interval
        return False


class Backoff:
    """Delay before retry n (1-based): d = min(max, base * 2**(n-1)), waited as d/2 + U(0, d/2).

    "Equal jitter": retries of many gateways spread out, yet each waits at least half the
    exponential step, which keeps the bound testable.
    """

    def __init__(self, base_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.rng = rng or random.Random()

    def step(self, n: int) -> float:
        return min(self.max_s, self.base_s * 2.0 ** (n - 1))

    def delay(self, n: int, retry_after_s: float | None = None) -> float:
        d = self.step(n)
        wait = d / 2 + self.rng.uniform(0, d / 2)
        if retry_after_s is not None:   # the platform asked for at least this much
            wait = max(wait, min(retry_after_s, self.max_s))
        return wait
