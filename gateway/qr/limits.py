"""Rate limits and refusal counts of the public QR page (no HTTP here: the page and the service
share them; the gateway saves the counts with `refusals_job`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.store import Store

log = logging.getLogger("gateway.qr.page")

REFUSAL_LOG_S = 60.0


class RateLimiter:
    """At most `per_min` events per key in any 60 s (a sliding log per key); memory bounded
    (the keys least recently seen are forgotten first)."""

    MAX_KEYS = 20000

    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_min = per_min
        self.clock = clock
        self._log: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        now = self.clock()
        times = [t for t in self._log.get(key, ()) if now - t < 60.0]
        if len(times) >= self.per_min:
            self._log[key] = times
            self._log.move_to_end(key)
            return False
        times.append(now)
        self._log[key] = times
        self._log.move_to_end(key)
        while len(self._log) > self.MAX_KEYS:
            self._log.popitem(last=False)
        return True


class Refusals:
    """Counts of refused requests by reason, saved to the rejections table (prefixed qr_)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self._unsaved: dict[str, int] = {}
        self._last_log: dict[str, float] = {}

    def add(self, reason: str) -> None:
        self.totals[reason] = self.totals.get(reason, 0) + 1
        self._unsaved[reason] = self._unsaved.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last_log.get(reason, -1e9) >= REFUSAL_LOG_S:
            self._last_log[reason] = now
            log.warning("QR page refused a request: %s (%d so far)", reason, self.totals[reason])

    async def save(self, store: Store) -> None:
        if not self._unsaved:
            return
        counts, self._unsaved = {"qr_" + k: v for k, v in self._unsaved.items()}, {}
        at = int(time.time() * 1000)
        try:
            await store.write(lambda tx: tx.rejections.add_counts(counts, at))
        except BaseException:
            for k, v in counts.items():
                self._unsaved[k[3:]] = self._unsaved.get(k[3:], 0) + v
            raise


async def refusals_job(refusals: Refusals, store: Store, every_s: float = 5.0) -> None:
    """Save the refusal counts every few seconds until cancelled (then once more)."""
    try:
        while True:
            await asyncio.sleep(every_s)
            try:
                await refusals.save(store)
            except Exception as e:  # noqa: BLE001 - the store may be away for a moment
                log.warning("QR refusal counts not saved: %s", e)
    finally:
        with contextlib.suppress(Exception):
            await refusals.save(store)
