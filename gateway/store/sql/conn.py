"""A DB-API connection seen through `?` placeholders, rows as tuples or dicts, and the
store's own error types (domain code never sees a driver exception)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from gateway.store.errors import IntegrityError

Params = Sequence[Any]


class Conn:
    def __init__(self, raw: Any, dialect: str, integrity_errors: tuple[type[BaseException], ...]) -> None:
        self.raw = raw
        self.dialect = dialect                  # "sqlite" | "postgresql"
        self._integrity = integrity_errors
        self._cache: dict[str, str] = {}
        self._sp = 0
        pg = dialect == "postgresql"
        self._translate: Callable[[str], str] = (
            (lambda s: s.replace("%", "%%").replace("?", "%s")) if pg else (lambda s: s))
        # Scalar max/min of two values.
        self.greatest = "GREATEST" if pg else "MAX"
        self.least = "LEAST" if pg else "MIN"

    def _sql(self, sql: str) -> str:
        out = self._cache.get(sql)
        if out is None:
            out = self._cache[sql] = self._translate(sql)
        return out

    def _cursor(self, sql: str, params: Params) -> Any:
        cur = self.raw.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
        except self._integrity as e:
            cur.close()
            raise IntegrityError(_first_line(e)) from e
        return cur

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""
        cur = self._cursor(sql, params)
        n = int(cur.rowcount)
        cur.close()
        return n

    def executemany(self, sql: str, seq: Iterable[Params]) -> None:
        rows = [tuple(p) for p in seq]
        if not rows:
            return
        cur = self.raw.cursor()
        try:
            cur.executemany(self._sql(sql), rows)
        except self._integrity as e:
            raise IntegrityError(_first_line(e)) from e
        finally:
            cur.close()

    def rows(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        cur = self._cursor(sql, params)
        try:
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def dicts(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        cur = self._cursor(sql, params)
        try:
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            cur.close()

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        cur = self._cursor(sql, params)
        try:
            r = cur.fetchone()
        finally:
            cur.close()
        return None if r is None else tuple(r)

    def one_dict(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        rows = self.dicts(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        r = self.one(sql, params)
        return None if r is None else r[0]

    def placeholders(self, n: int) -> str:
        return ",".join("?" * n)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit inside the transaction: undone alone if the block raises."""
        self._sp += 1
        name = "sp%d" % self._sp
        self.execute("SAVEPOINT " + name)
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK TO SAVEPOINT " + name)
            self.execute("RELEASE SAVEPOINT " + name)
            raise
        self.execute("RELEASE SAVEPOINT " + name)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
