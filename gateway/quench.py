"""Quenching a flooding device at the broker.

The incoming gate drops what a device sends beyond its rate limit (gateway/incoming.py), but
only after the gateway has read it: one connection carries every device's messages, so a
flood the gateway cannot read as fast as it comes in queues up in the broker and the kernel
ahead of everyone else's (measured on this 2-core machine: seconds). Only the broker can stop
it at the source. A device whose messages are dropped faster than [ingest] quench_drops_per_s
(far beyond anything a real device sends) has its broker account disabled for [ingest]
quench_s seconds (BrokerAccounts.set_enabled: dynsec's disableClient; the broker disconnects
it and refuses it meanwhile), then enabled again. Nothing is lost: the device keeps its
records in its journal and sends them when it is back. The end of a quench is kept in the
store (devices.quenched_until), so a restart, or another instance, enables it in time; the
leader does (`release_job`). Without dynsec (password file, or no broker accounts) a device is
only rate-limited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.broker_accounts import BrokerAccounts, BrokerAccountsError
from gateway.leader import Job
from gateway.store import Store
from gateway.store.api import Tx

log = logging.getLogger("gateway.quench")

RELEASE_EVERY_S = 1.0
WINDOW_MS = 250


class Quencher:
    def __init__(self, store: Store, accounts: BrokerAccounts, quench_s: int, drops_per_s: int,
                 clock_ms: Callable[[], int]) -> None:
        self.store = store
        self.accounts = accounts
        self.quench_s = quench_s
        self.drops_per_s = drops_per_s
        self.clock_ms = clock_ms
        self._window: dict[str, list[int]] = {}     # device -> [second, drops in it]
        self._busy: set[str] = set()                 # quench under way (or refused: not ours)
        self._tasks: set[asyncio.Task[None]] = set()
        self.quenched = 0
        self.label = ""     # a Running subsystem of serve() (stopped at shutdown), not in the ready line

    @property
    def enabled(self) -> bool:
        return self.quench_s > 0

    def note_drop(self, device_id: str, at_ms: int) -> None:
        """A message of device_id dropped by its rate limit (from the gate, synchronous)."""
        if not self.enabled or device_id in self._busy:
            return
        # Counted in windows of WINDOW_MS: a flood is recognised within a fraction of a second
        # (every message read meanwhile is one the other devices wait behind).
        slot = at_ms // WINDOW_MS
        w = self._window.get(device_id)
        if w is None or w[0] != slot:
            if len(self._window) > 10000:
                self._window.clear()
            w = self._window[device_id] = [slot, 0]
        w[1] += 1
        if w[1] * 1000 > self.drops_per_s * WINDOW_MS:
            self._busy.add(device_id)
            task = asyncio.get_running_loop().create_task(self._quench(device_id, w[1]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _quench(self, device_id: str, drops: int) -> None:
        until = self.clock_ms() + self.quench_s * 1000
        try:
            # The store first: if we die right after disabling, whoever leads enables it in time.
            await self.store.write(_set_quenched(device_id, until))
            if not await self.accounts.set_enabled(device_id, False):
                await self.store.write(_set_quenched(device_id, None))
                return        # these broker accounts cannot: rate-limited only (stays busy)
        except Exception as e:  # noqa: BLE001 - a quench that fails must not take the service down
            log.warning("device %s floods (%d messages dropped in %d ms) but could not be quenched: %s",
                        device_id, drops, WINDOW_MS, e)
            self._busy.discard(device_id)
            return
        self.quenched += 1
        log.warning("device %s floods (%d messages dropped in %d ms): its broker account is disabled"
                    " for %d s", device_id, drops, WINDOW_MS, self.quench_s)
        await asyncio.sleep(self.quench_s)
        self._busy.discard(device_id)
        self._window.pop(device_id, None)

    async def release_due(self) -> list[str]:
        """Enable the accounts whose quench has run out; the devices enabled."""
        now = self.clock_ms()
        due = await self.store.read(lambda tx: tx.devices.quench_over(now))
        done = []
        for device_id in due:
            try:
                await self.accounts.set_enabled(device_id, True)
            except BrokerAccountsError as e:
                log.warning("device %s: quench over, but its broker account was not enabled: %s",
                            device_id, e)
                continue
            await self.store.write(_set_quenched(device_id, None))
            log.info("device %s: quench over, broker account enabled again", device_id)
            done.append(device_id)
        return done

    def release_job(self, every_s: float = RELEASE_EVERY_S) -> Job:
        """A leader job: release_due every `every_s` until stopped."""
        async def job(stop: asyncio.Event) -> None:
            while not stop.is_set():
                try:
                    await self.release_due()
                except Exception as e:  # noqa: BLE001 - the store or broker may be away a moment
                    log.warning("releasing quenched devices failed: %s; will retry", e)
                try:
                    await asyncio.wait_for(stop.wait(), every_s)
                except TimeoutError:
                    pass
        return job

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)


def _set_quenched(device_id: str, until_ms: int | None) -> Callable[[Tx], None]:
    def unit(tx: Tx) -> None:
        tx.devices.set_quenched(device_id, until_ms)
    return unit
