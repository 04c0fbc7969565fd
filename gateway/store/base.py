"""The store: units of work run by a writer thread and a reader thread, one connection each.

`await store.write(fn)` runs fn(tx) inside one transaction (COMMIT when fn returns, ROLLBACK
if it raises) on the writer's connection, so writes of one process never interleave; ingest
puts a whole batch into one such call (group commit: one fsync for many records).
`await store.read(fn)` runs fn(tx) in a read transaction on the reader's connection (a
consistent snapshot; never blocks the writer). fn is synchronous and must not await: it sees
only the repositories of tx (gateway.store.api.Tx), never SQL or a driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from gateway.store.sql.conn import Conn
from gateway.store.sql.tx import SqlTx
from gateway.store.worker import Worker

T = TypeVar("T")


class SqlStore:
    backend = "sql"
    begin_write = "BEGIN"
    begin_read = "BEGIN"

    def __init__(self, writer: Worker[Conn], reader: Worker[Conn], label: str) -> None:
        self._writer = writer
        self._reader = reader
        self.label = label          # for logs and the readiness line: never a password
        self._closed = False
        self._txs: dict[int, SqlTx] = {}   # one (stateless) SqlTx per connection, reused

    async def write(self, fn: Callable[[Any], T]) -> T:
        return await self._writer.call(lambda c: self._unit(c, fn, self.begin_write))

    async def read(self, fn: Callable[[Any], T]) -> T:
        return await self._reader.call(lambda c: self._unit(c, fn, self.begin_read))

    def _unit(self, conn: Conn, fn: Callable[[Any], T], begin: str) -> T:
        tx = self._txs.get(id(conn))
        if tx is None:
            tx = self._txs[id(conn)] = SqlTx(conn)
        conn.execute(begin)
        try:
            out = fn(tx)
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (I/O error) can leave the transaction open: close it.
            self._rollback(conn)
            raise
        return out

    def _rollback(self, conn: Conn) -> None:
        try:
            conn.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - nothing open (the COMMIT did end it)
            pass

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._writer.stop()
        await self._reader.stop()
        self._on_closed()

    def _on_closed(self) -> None:
        pass
