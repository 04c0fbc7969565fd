"""The device registry: keys, current boot, health fields and command counters.

The store's devices are the truth; `DeviceRegistry` keeps one `DeviceState` per device in
memory so the ingest hot path never waits on SQLite. Health fields are written back in
batches (`flush`), the command-counter lease synchronously before it is used.

Command counter n: a device accepts a command only if n is fresh in its replay window for
(gateway, device boot). n restarts at 0 for every new device boot, and must keep growing
across gateway restarts within one boot, so the gateway leases blocks of CMD_LEASE
counters: it persists "n below X may have been used" before using any n below X, and on
start continues from the persisted X. A crash wastes at most one lease, never repeats an n.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.rows import DeviceHealth, DeviceRow
from protocol.auth import Key, ReplayWindow

CMD_LEASE = 10000
_KEY_REFRESH_S = 5.0       # re-read a key from the DB at most this often per device
_NEGATIVE_CACHE_S = 5.0    # an unknown id is looked up again after this long

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
    limited: int = 0                   # messages dropped by the per-device rate limit, ever
    limited_at: int | None = None      # ... the last one (epoch ms)
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


def _state_from_row(row: DeviceRow) -> DeviceState:
    st = DeviceState(
        device_id=row.device_id, secret_hex=row.secret_hex, key=Key(row.secret_hex),
        boot=row.boot or 0, online=row.online,
        status_bc=((row.status_b, row.status_c)
                   if row.status_b is not None and row.status_c is not None else None),
        last_seen=row.last_seen, fw=row.fw, journal_depth=row.journal_depth,
        reconnects=row.reconnects, last_rst=row.last_rst,
        last_hb_json=row.last_hb_json, last_hello_json=row.last_hello_json,
        limited=row.limited, limited_at=row.limited_at,
    )
    st.cmd_boot = row.cmd_boot or 0
    st.next_n = st.lease_end = row.cmd_n_reserved
    st.key_checked_at = time.monotonic()
    return st


class DeviceRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._states: dict[str, DeviceState] = {}
        self._unknown: dict[str, float] = {}  # id -> monotonic time of the failed lookup
        self._change_id = 0

    async def load(self) -> int:
        rows, self._change_id = await self.store.read(
            lambda tx: (tx.devices.all(enabled_only=True), tx.changes.latest()))
        for row in rows:
            self._states[row.device_id] = _state_from_row(row)
        return len(self._states)

    def get(self, device_id: str) -> DeviceState | None:
        return self._states.get(device_id)

    def all(self) -> list[DeviceState]:
        return list(self._states.values())

    async def lookup(self, device_id: str) -> DeviceState | None:
        """The device's state, reading the store on a miss (a device added by another process)."""
        st = self._states.get(device_id)
        if st is not None:
            return st
        t = time.monotonic()
        if t - self._unknown.get(device_id, -1e9) < _NEGATIVE_CACHE_S:
            return None
        row = await self.store.read(lambda tx: tx.devices.get(device_id, enabled_only=True))
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
        secret = await self.store.read(lambda tx: tx.devices.secret(st.device_id))
        if secret is None or secret == st.secret_hex:
            return False
        st.secret_hex = secret
        st.key = Key(secret)
        return True

    async def poll_changes(self) -> list[tuple[str, str]]:
        """Apply the store's change feed since the last look (re-keys by any process or
        instance: the old secret is refused from now on); return the other changes seen,
        (kind, subject), for the service to act on (binding changes made by the CLI)."""
        after = self._change_id

        def read(tx: Tx) -> tuple[list[tuple[int, str, str]], dict[str, str | None]]:
            changes = tx.changes.since(after)
            keyed = {c.subject for c in changes if c.kind == "device.key"}
            return [(c.id, c.kind, c.subject) for c in changes], {d: tx.devices.secret(d) for d in keyed}
        changes, secrets = await self.store.read(read)
        for device_id, secret in secrets.items():
            if secret is not None:
                self.rekey(device_id, secret)
        if changes:
            self._change_id = changes[-1][0]
        return [(k, s) for _, k, s in changes if k != "device.key"]

    def forget(self, device_id: str) -> None:
        self._states.pop(device_id, None)

    def rekey(self, device_id: str, secret_hex: str) -> None:
        """A device was (re-)registered: use its key at once. Without this, the old secret
        kept working, and an id looked up just before its registration stayed unknown for
        _NEGATIVE_CACHE_S."""
        self._unknown.pop(device_id, None)
        st = self._states.get(device_id)
        if st is not None and st.secret_hex != secret_hex:
            st.secret_hex = secret_hex
            st.key = Key(secret_hex)
            st.key_checked_at = time.monotonic()

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
            await self.store.write(_lease(st.device_id, boot, end))
            if st.cmd_boot == boot and end > st.lease_end:
                st.lease_end = end

    async def flush(self) -> int:
        """Write the health fields of changed devices in one transaction; return how many."""
        dirty = [s for s in self._states.values() if s.dirty]
        if not dirty:
            return 0
        for s in dirty:
            s.dirty = False
        rows = [DeviceHealth(s.device_id, s.last_seen, s.online,
                             s.status_bc[0] if s.status_bc else None, s.status_bc[1] if s.status_bc else None,
                             s.boot, s.fw, s.journal_depth, s.reconnects, s.last_rst, s.last_hb_json,
                             s.last_hello_json, s.limited, s.limited_at) for s in dirty]
        try:
            await self.store.write(lambda tx: tx.devices.save_health(rows))
        except BaseException:
            for s in dirty:
                s.dirty = True
            raise
        return len(dirty)


def _lease(device_id: str, boot: int, end: int) -> Callable[[Tx], None]:
    def unit(tx: Tx) -> None:
        tx.devices.lease_commands(device_id, boot, end)
    return unit
