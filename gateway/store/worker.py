"""A thread that owns one database connection and runs units of work on it, in order.

Both backends use it: the unit of work is a plain synchronous function over the store's
repositories, so a whole ingest batch (dedupe, attribution, insert, anchors, commit) is one
hand-over to this thread, not one per statement, and the event loop never blocks on the
database. Results come back through the caller's event loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")

_STOP = object()


class Worker(Generic[C]):
    def __init__(self, name: str, connect: Callable[[], C], close: Callable[[C], None]) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._connect = connect
        self._close = close
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            conn = self._connect()
        except BaseException as e:  # noqa: BLE001 - handed to the opener
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                item = self._q.get()
                if item is _STOP:
                    return
                fn, fut, loop = item
                try:
                    out = fn(conn)
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    loop.call_soon_threadsafe(_set_exception, fut, e)
                else:
                    loop.call_soon_threadsafe(_set_result, fut, out)
        finally:
            self._close(conn)

    async def started(self) -> None:
        """Wait until the connection is open; raise what opening it raised."""
        await asyncio.to_thread(self._ready.wait)
        if self._error is not None:
            await asyncio.to_thread(self._thread.join)
            raise self._error

    async def call(self, fn: Callable[[C], T]) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._q.put((fn, fut, loop))
        return await fut

    def call_sync(self, fn: Callable[[C], T], timeout: float = 30.0) -> T:
        """For code outside an event loop (start-up checks): block until fn has run."""
        done = threading.Event()
        box: list[Any] = []

        class _Fut:
            def cancelled(self) -> bool:
                return False

        def run(conn: C) -> None:
            try:
                box.append((True, fn(conn)))
            except BaseException as e:  # noqa: BLE001
                box.append((False, e))
            done.set()

        self._q.put((run, _Fut(), _NoLoop()))
        if not done.wait(timeout):
            raise TimeoutError("database worker did not answer within %.0fs" % timeout)
        ok, val = box[0]
        if not ok:
            raise val
        return val  # type: ignore[no-any-return]

    async def stop(self) -> None:
        self._q.put(_STOP)
        await asyncio.to_thread(self._thread.join, 30.0)


class _NoLoop:
    def call_soon_threadsafe(self, *_: Any) -> None:
        pass


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.cancelled():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.cancelled():
        fut.set_exception(exc)
