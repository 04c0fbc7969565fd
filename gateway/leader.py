"""One leader at a time among the gateway instances sharing a store.

The daily push, the near-real-time push and invitation expiry must run on one instance only
(nothing pushed twice). Each instance tries to take the store's lease named "leader" every
RENEW_S; the holder renews it, and while it holds it runs the leader jobs. If the holder dies
its lease runs out after TTL_S and another instance takes over. A holder that cannot renew in
time (store unreachable) stops its jobs before its lease can have run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.clock import now_ms
from gateway.store import Store

log = logging.getLogger("gateway.leader")

LEASE = "leader"
TTL_S = 10.0
RENEW_S = 2.0

Job = Callable[[asyncio.Event], Coroutine[Any, Any, None]]   # runs until the event is set


def instance_id() -> str:
    return "%s:%d" % (socket.gethostname(), os.getpid())


class Leader:
    def __init__(self, store: Store, holder: str, jobs: list[tuple[str, Job]],
                 ttl_s: float = TTL_S, renew_s: float = RENEW_S) -> None:
        self.store = store
        self.holder = holder
        self.jobs = jobs
        self.ttl_ms = int(ttl_s * 1000)
        self.renew_s = renew_s
        self.is_leader = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._shutdown = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.label = "leader=" + holder

    def start(self) -> Leader:
        self._task = asyncio.create_task(self.run(), name="leader")
        return self

    async def stop(self) -> None:
        """Stop the jobs (they finish their step), hand the lease back, end run()."""
        self._shutdown.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=15.0)
            if not self._task.done():
                self._task.cancel()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._shutdown.is_set():
                started = loop.time()
                try:
                    have = await asyncio.wait_for(self._acquire(), self.renew_s * 2)
                except Exception as e:  # noqa: BLE001 - the store may be away for a while
                    log.warning("leader lease not renewed: %s", e)
                    have = False
                if have and not self.is_leader:
                    log.info("this instance (%s) is the leader: running %s", self.holder,
                             ", ".join(n for n, _ in self.jobs) or "nothing")
                    self._start_jobs()
                elif not have and self.is_leader:
                    log.warning("leader lease lost: stopping %s", ", ".join(n for n, _ in self.jobs))
                    await self._stop_jobs()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._shutdown.wait(),
                                           max(0.0, self.renew_s - (loop.time() - started)))
        finally:
            was_leader = self.is_leader   # _stop_jobs clears it: read it first
            await self._stop_jobs()
            if was_leader:
                with contextlib.suppress(Exception):
                    await self.store.write(lambda tx: tx.leases.release(LEASE, self.holder))

    async def _acquire(self) -> bool:
        t = now_ms()
        return await self.store.write(lambda tx: tx.leases.acquire(LEASE, self.holder, t, self.ttl_ms))

    def _start_jobs(self) -> None:
        self.is_leader = True
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(job(self._stop), name=name) for name, job in self.jobs]

    async def _stop_jobs(self) -> None:
        was = self.is_leader
        self.is_leader = False
        if not was:
            return
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10.0)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
