"""The device registry: keys, current boot, health fields and command counters.

The table `devices` is the truth; `DeviceRegistry` keeps one `DeviceState` per device in
memory so the ingest hot path never waits on SQLite. Health fields are written back in
batches (`flush`), the command-counter lease synchronously before it is used.

Command counter n: a device accepts a command only if n is fresh in its replay window for
(gateway, device boot). n restarts at 0 for every new device boot, and must keep growing
across gateway restarts within one boot, so the gateway leases blocks of CMD_LEASE
counters: it persists "n below X may have been used" before using any n below X, and on
start continues from the persisted X. A crash wastes at most one lease, never repeats an n.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from gateway import broker_accounts, device_ids
from gateway.config import Config
from gateway.store.db import Database
from protocol.auth import Key, ReplayWindow, parse_secret
from protocol.errors import MalformedMessage

CMD_LEASE = 10000
_KEY_REFRESH_S = 5.0       # re-read a key from the DB at most this often per device
_NEGATIVE_CACHE_S = 5.0    # an unknown id is looked up again after this long
DEVICE_ID = device_ids.DEVICE_ID  # use with fullmatch


class RegistrationError(Exception):
    """A device could not be registered; the message says why (never the secret)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class DeviceState:
    device_id: str
    secret_hex: str
    key: Key
    boot: int = 0                      # current boot: the highest b seen
    online: bool = False
    status_bc: tuple[int, int] | None = None
    last_seen: int | None = None
    fw: str | None = None
    journal_depth: int | None = None
    reconnects: int = 0
    last_rst: str | None = None
    last_hb_json: str | None = None
    last_hello_json: str | None = None
    cmd_boot: int = 0
    next_n: int = 0
    lease_end: int = 0                 # n < lease_end is covered by the persisted lease
    windows: dict[int, ReplayWindow] = field(default_factory=dict)  # per boot
    dirty: bool = False
    key_checked_at: float = 0.0

    def observe_boot(self, b: int) -> None:
        """Boots only grow on the device; a delayed message of an older boot changes nothing."""
        if b > self.boot:
            self.boot = b
            self.windows = {k: w for k, w in self.windows.items() if k >= b - 1}
            self.dirty = True

    def fresh(self, b: int, n: int) -> bool:
        """Replay check for (boot b, counter n) of an incoming hello/hb/treq."""
        w = self.windows.get(b)
        if w is None:
            if b < self.boot - 1:
                return False  # a boot two or more behind: nothing current can come from it
            w = self.windows[b] = ReplayWindow()
        return bool(w.check(n))


def _state_from_row(row: aiosqlite.Row) -> DeviceState:
    st = DeviceState(
        device_id=row["device_id"], secret_hex=row["secret_hex"], key=Key(row["secret_hex"]),
        boot=row["boot"] or 0, online=bool(row["online"]),
        status_bc=(row["status_b"], row["status_c"]) if row["status_b"] is not None else None,
        last_seen=row["last_seen"], fw=row["fw"], journal_depth=row["journal_depth"],
        reconnects=row["reconnects"], last_rst=row["last_rst"],
        last_hb_json=row["last_hb_json"], last_hello_json=row["last_hello_json"],
    )
    st.cmd_boot = row["cmd_boot"] or 0
    st.next_n = st.lease_end = row["cmd_n_reserved"]
    st.key_checked_at = time.monotonic()
    return st


class DeviceRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._states: dict[str, DeviceState] = {}
        self._unknown: dict[str, float] = {}  # id -> monotonic time of the failed lookup

    async def load(self) -> int:
        for row in await self.db.fetchall("SELECT * FROM devices WHERE enabled = 1"):
            self._states[row["device_id"]] = _state_from_row(row)
        return len(self._states)

    def get(self, device_id: str) -> DeviceState | None:
        return self._states.get(device_id)

    def all(self) -> list[DeviceState]:
        return list(self._states.values())

    async def lookup(self, device_id: str) -> DeviceState | None:
        """The device's state, reading the DB on a miss (a device added by another process)."""
        st = self._states.get(device_id)
        if st is not None:
            return st
        t = time.monotonic()
        if t - self._unknown.get(device_id, -1e9) < _NEGATIVE_CACHE_S:
            return None
        row = await self.db.fetchone(
            "SELECT * FROM devices WHERE device_id = ? AND enabled = 1", (device_id,))
        if row is None:
            if len(self._unknown) > 10000:
                self._unknown.clear()  # bound memory under a flood of invented ids
            self._unknown[device_id] = t
            return None
        self._unknown.pop(device_id, None)
        st = self._states[device_id] = _state_from_row(row)
        return st

    async def refresh_key(self, st: DeviceState) -> bool:
        """After a bad mac: re-read the key (re-registered elsewhere?). True if it changed."""
        t = time.monotonic()
        if t - st.key_checked_at < _KEY_REFRESH_S:
            return False
        st.key_checked_at = t
        row = await self.db.fetchone("SELECT secret_hex FROM devices WHERE device_id = ?", (st.device_id,))
        if row is None or row[0] == st.secret_hex:
            return False
        st.secret_hex = row[0]
        st.key = Key(row[0])
        return True

    def forget(self, device_id: str) -> None:
        self._states.pop(device_id, None)

    def rekey(self, device_id: str, secret_hex: str) -> None:
        """A device was (re-)registered by another connection (the HTTP API): use its key at
        once. Without this, a rotated secret was refused as bad_mac for up to _KEY_REFRESH_S,
        and an id looked up just before its registration stayed unknown for _NEGATIVE_CACHE_S."""
        self._unknown.pop(device_id, None)
        st = self._states.get(device_id)
        if st is not None and st.secret_hex != secret_hex:
            st.secret_hex = secret_hex
            st.key = Key(secret_hex)

    async def next_command(self, st: DeviceState) -> tuple[int, int]:
        """(b, n) for the next command to this device: its current boot and a fresh counter."""
        while True:
            if st.cmd_boot != st.boot:
                st.cmd_boot, st.next_n, st.lease_end = st.boot, 0, 0
            if st.next_n < st.lease_end:
                n = st.next_n
                st.next_n += 1
                return st.cmd_boot, n
            boot, end = st.cmd_boot, st.next_n + CMD_LEASE
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE devices SET cmd_boot = ?, cmd_n_reserved = ? WHERE device_id = ?",
                    (boot, end, st.device_id))
            if st.cmd_boot == boot and end > st.lease_end:
                st.lease_end = end

    async def flush(self) -> int:
        """Write the health fields of changed devices in one transaction; return how many."""
        dirty = [s for s in self._states.values() if s.dirty]
        if not dirty:
            return 0
        for s in dirty:
            s.dirty = False
        try:
            async with self.db.transaction() as conn:
                await conn.executemany(
                    "UPDATE devices SET last_seen = ?, online = ?, status_b = ?, status_c = ?,"
                    " boot = MAX(COALESCE(boot, 0), ?), fw = COALESCE(?, fw), journal_depth = ?,"
                    " reconnects = ?, last_rst = ?, last_hb_json = ?, last_hello_json = ?"
                    " WHERE device_id = ?",
                    [(s.last_seen, int(s.online),
                      s.status_bc[0] if s.status_bc else None, s.status_bc[1] if s.status_bc else None,
                      s.boot, s.fw, s.journal_depth, s.reconnects, s.last_rst,
                      s.last_hb_json, s.last_hello_json, s.device_id) for s in dirty])
        except BaseException:
            for s in dirty:
                s.dirty = True
            raise
        return len(dirty)


def _conn(db: Database | aiosqlite.Connection) -> aiosqlite.Connection:
    return db.conn if isinstance(db, Database) else db


async def add_device_row(conn: aiosqlite.Connection, device_id: str, secret_hex: str,
                         fw: str | None, actor: str = "gateway") -> bool:
    """Insert or re-key a device (inside the caller's transaction); True if it was new."""
    at = now_ms()
    async with conn.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)) as cur:
        existed = await cur.fetchone() is not None
    await conn.execute(
        "INSERT INTO devices(device_id, secret_hex, fw, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(device_id) DO UPDATE SET secret_hex = excluded.secret_hex,"
        " fw = COALESCE(excluded.fw, fw), enabled = 1",
        (device_id, secret_hex, fw, at))
    await conn.execute(
        "INSERT INTO audit_log(at_ms, actor, action, detail_json) VALUES (?, ?, ?, ?)",
        (at, actor, "device.rekey" if existed else "device.add",
         json.dumps({"device_id": device_id, "fw": fw})))
    return not existed


def validate_registration(device_id: str, secret_hex: str, broker_password: str,
                          reserved: set[str] | frozenset[str] = frozenset()) -> None:
    why = device_ids.problem(device_id, reserved)
    if why is not None:
        raise RegistrationError(why)
    try:
        parse_secret(secret_hex)
    except MalformedMessage:
        raise RegistrationError("secret must be 64 hex characters (32 bytes)") from None
    if secret_hex != secret_hex.lower():
        raise RegistrationError("secret must be lower-case hex")
    if not isinstance(broker_password, str) or not broker_password or "\n" in broker_password:
        raise RegistrationError("broker password must be a non-empty single line")


async def register_device(db: Database | aiosqlite.Connection, cfg: Config, device_id: str,
                          secret_hex: str, broker_password: str, fw: str | None = None,
                          actor: str = "gateway") -> None:
    """Store the device key, then set its broker account (gateway.broker_accounts: dynsec, or
    a password entry and a broker reload).

    Re-registering an existing id replaces its secret and password (re-flash). The DB row
    comes first: if the broker step fails, running the same registration again repairs it.
    """
    validate_registration(device_id, secret_hex, broker_password, device_ids.reserved_by(cfg))
    if isinstance(db, Database):
        async with db.transaction() as conn:
            await add_device_row(conn, device_id, secret_hex, fw, actor)
    else:
        conn = db
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await add_device_row(conn, device_id, secret_hex, fw, actor)
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
    accounts = broker_accounts.for_config(cfg)
    try:
        if accounts is not None:
            await accounts.set_device(device_id, broker_password)
    except broker_accounts.BrokerAccountsError as e:
        raise RegistrationError(f"device {device_id} stored, but the broker was not updated: {e}") from e


async def get_device(db: Database | aiosqlite.Connection, device_id: str) -> dict[str, Any] | None:
    """One device row without its secret (for the API/CLI)."""
    async with _conn(db).execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return {k: row[k] for k in row.keys() if k != "secret_hex"}


async def list_devices(db: Database | aiosqlite.Connection) -> list[dict[str, Any]]:
    async with _conn(db).execute("SELECT * FROM devices ORDER BY device_id") as cur:
        rows = await cur.fetchall()
    return [{k: r[k] for k in r.keys() if k != "secret_hex"} for r in rows]
