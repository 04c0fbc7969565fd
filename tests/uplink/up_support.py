"""Helpers for the uplink tests: seeding the real gateway store, fast settings."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from gateway.store import Store, open_store
from gateway.store.api import Tx
from gateway.uplink.settings import UplinkSettings

T = TypeVar("T")
TZ = ZoneInfo("Asia/Shanghai")


class Row(tuple):  # type: ignore[type-arg]
    """A row readable by position and by column name (as the tests read them)."""

    def __new__(cls, names: Sequence[str], values: Sequence[Any]) -> Row:
        r = super().__new__(cls, values)
        r._names = list(names)  # type: ignore[attr-defined]
        return r

    def __getitem__(self, k: Any) -> Any:  # type: ignore[override]
        if isinstance(k, str):
            return tuple.__getitem__(self, self._names.index(k))  # type: ignore[attr-defined]
        return tuple.__getitem__(self, k)

    def keys(self) -> list[str]:
        return list(self._names)  # type: ignore[attr-defined]


class _Batch:
    def __init__(self) -> None:
        self.ops: list[tuple[str, str, Any]] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.ops.append(("one", sql, tuple(params)))

    async def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        self.ops.append(("many", sql, [tuple(p) for p in seq]))


class Database:
    """The gateway's Store, plus raw SQL for seeding and inspecting (tests only)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.backend = store.backend
        self.label = store.label

    async def read(self, fn: Callable[[Tx], T]) -> T:
        return await self.store.read(fn)

    async def write(self, fn: Callable[[Tx], T]) -> T:
        return await self.store.write(fn)

    async def close(self) -> None:
        await self.store.close()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        def q(tx: Tx) -> list[Row]:
            rows = tx.raw.dicts(sql, params)  # type: ignore[attr-defined]
            return [Row(list(r.keys()), list(r.values())) for r in rows]
        return await self.store.read(q)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Batch]:
        """Statements queued, then run in one unit of work when the block ends."""
        b = _Batch()
        yield b

        def run(tx: Tx) -> None:
            for kind, sql, p in b.ops:
                if kind == "one":
                    tx.raw.execute(sql, p)  # type: ignore[attr-defined]
                else:
                    tx.raw.executemany(sql, p)  # type: ignore[attr-defined]
        await self.store.write(run)


async def open_db(url: str | Path, run_migrations: bool = True) -> Database:
    return Database(await open_store(url, run_migrations))
DEPT = "11540102MB0000001X"
GRADES = ("vs", "s", "bs", "d", "vd")


def local_ms(date: str, hh: int = 10, mm: int = 0, ss: int = 0) -> int:
    d = dt.date.fromisoformat(date)
    return int(dt.datetime(d.year, d.month, d.day, hh, mm, ss, tzinfo=TZ).timestamp() * 1000)


class Seeder:
    """Writes devices, windows, clerks, bindings, invitations and records the way the core does."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seq: dict[tuple[str, int], int] = {}
        self.n = 0

    async def device(self, device_id: str, window: str, clerk: str) -> None:
        async with self.db.transaction() as c:
            await c.execute("INSERT INTO devices (device_id, secret_hex, created_at) VALUES (?, ?, 0)",
                            (device_id, "00" * 32))
            await c.execute("INSERT INTO windows (window_id, dept_code, name, created_ms)"
                            " VALUES (?, ?, ?, 0)",
                            (window, DEPT, "window " + window))
            await c.execute("INSERT INTO staff (account, display_name, created_ms) VALUES (?, ?, 0)",
                            (clerk, clerk))
            await c.execute("INSERT INTO bindings (device_id, window_id, staff_account, valid_from_ms,"
                            " created_by) VALUES (?, ?, ?, 0, 'test')", (device_id, window, clerk))

    async def records(self, device_id: str, date: str, count: int, kind: str = "rated", boot: int = 1,
                      with_invitation: bool = True, applicant_type: int | None = 1,
                      case_no: str | None = None, dept_code: str = "") -> list[str]:
        """count records on a local date, 10:00 + i seconds; returns their record ids."""
        ids = []
        recs: list[tuple[Any, ...]] = []
        invs: list[tuple[Any, ...]] = []
        row = await self.db.fetchone("SELECT id, window_id, staff_account FROM bindings WHERE device_id = ?",
                                     (device_id,))
        assert row is not None
        binding, window, clerk = row["id"], row["window_id"], row["staff_account"]
        for i in range(count):
            self.n += 1
            seq = self.seq.get((device_id, boot), 0) + 1
            self.seq[(device_id, boot)] = seq
            rid = "%s:%d:%d" % (device_id, boot, seq)
            ids.append(rid)
            t = local_ms(date) + i * 1000
            grade = None if kind == "unrated" else GRADES[self.n % 5]
            inv = None
            if with_invitation and kind in ("rated", "unrated", "extra"):
                inv = "inv-%d" % self.n
                status = "rated" if kind == "rated" else "unrated"
                invs.append((inv, device_id, window, clerk, binding, case_no or "CASE-%06d" % self.n,
                             "T0001", "居民身份证换领", dept_code, applicant_type, 60, status, t - 60000,
                             t + 60000, rid, grade, "test"))
            recs.append((rid, device_id, boot, seq, kind, grade, inv, t // 1000, 1000 + i, t, "device",
                         t + 50, boot, binding, window, clerk, ""))
        async with self.db.transaction() as c:
            await c.executemany(
                "INSERT INTO invitations (id, device_id, window_id, staff_account, binding_id, case_no,"
                " task_code, task_name, dept_code, applicant_type, countdown_s, status, created_ms,"
                " expires_ms, record_id, grade, created_by) VALUES (%s)" % ",".join("?" * 17), invs)
            await c.executemany(
                "INSERT INTO records (record_id, device_id, rb, rs, kind, grade, invitation_id,"
                " device_wall_s, uptime_ms, pressed_at_ms, time_source, received_at_ms, msg_boot,"
                " binding_id, window_id, staff_account, flags) VALUES (%s)" % ",".join("?" * 17), recs)
        return ids


def fast_settings(url: str, **kw: Any) -> UplinkSettings:
    base: dict[str, Any] = dict(url=url, backoff_base_s=0.01, backoff_max_s=0.05, request_timeout_s=2.0,
                                max_batches_per_second=1000.0, batch_size=50, area_code="540102")
    base.update(kw)
    return UplinkSettings(**base)




class CaseFlow:
    """Invitations through the gateway's own functions (create supersedes, expire_due expires)
    and device records through its attribution (which closes invitations as the ingest does)."""

    def __init__(self, db: Database, seeder: Seeder) -> None:
        self.db = db
        self.seeder = seeder
        self.n = 0

    async def invite(self, window: str, at_ms: int, case_no: str | None = None) -> str:
        from gateway.invitations import InvitationRequest, InvitationRules, create
        self.n += 1
        req = InvitationRequest(case_no=case_no or "CASE-INV-%04d" % self.n, window_id=window,
                                task_code="T0001", task_name="居民身份证换领", applicant_type=1)
        out = await create(self.db, req, "test", InvitationRules(default_countdown_s=60, grace_s=30), at_ms)
        return out.invitation.id

    async def expire(self, at_ms: int) -> list[str]:
        from gateway.invitations import expire_due
        return await expire_due(self.db, at_ms)

    async def cancel(self, inv_id: str, at_ms: int) -> None:
        from gateway.invitations import cancel
        await cancel(self.db, inv_id, "test", at_ms)

    async def device_record(self, device_id: str, kind: str, invitation_id: str | None, pressed_ms: int,
                            grade: str | None = None, boot: int = 1) -> str:
        """Store one device record the way the ingest does: attribution first, then the insert."""
        from gateway.attribution import AttributionRules, attribute_sync
        seq = self.seeder.seq.get((device_id, boot), 0) + 1
        self.seeder.seq[(device_id, boot)] = seq
        rid = "%s:%d:%d" % (device_id, boot, seq)
        rec: dict[str, Any] = {"record_id": rid, "device_id": device_id, "kind": kind, "grade": grade,
                               "invitation_id": invitation_id, "pressed_at_ms": pressed_ms, "flags": ""}
        await self.db.write(lambda tx: attribute_sync(tx, rec, AttributionRules()))
        async with self.db.transaction() as c:
            await c.execute(
                "INSERT INTO records (record_id, device_id, rb, rs, kind, grade, invitation_id,"
                " device_wall_s, uptime_ms, pressed_at_ms, time_source, received_at_ms, msg_boot,"
                " binding_id, window_id, staff_account, flags)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'device', ?, ?, ?, ?, ?, ?)",
                (rid, device_id, boot, seq, kind, grade, invitation_id, pressed_ms // 1000, 1000,
                 pressed_ms, pressed_ms + 50, boot, rec["binding_id"], rec["window_id"], rec["staff_account"],
                 rec["flags"]))
        return rid
