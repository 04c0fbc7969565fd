"""When was a button pressed? Reconstructing UTC press times from device clocks.

A record carries w (device wall seconds, 0 while the device clock is unsynced) and u (device
uptime ms at the press). Three sources, best first (the record's time_source says which):

  device         w != 0: the device had synced time (from our `time` reply): w * 1000.
  reconstructed  w == 0, and we know the boot's anchor: the UTC instant of uptime 0 in the
                 record's boot rb. pressed_at_ms = anchor + u.
  arrival        w == 0 and no anchor for boot rb (the gateway never heard hello/hb/treq of
                 that boot): the gateway's arrival time, an upper bound of the press time.

Anchor of (device, boot): every hello (up), hb (up) and treq (u) of that boot gives one
observation arrival_ms - uptime_ms. Network and queueing delay only ever make arrival
later, so each observation is >= the true anchor, and the minimum over observations is the
tightest estimate (NTP's minimum-delay filter). Messages delivered late from a broker
queue after a gateway outage therefore cannot spoil the anchor. The rec itself is not used:
it has only the press uptime, not the uptime at sending, so it gives no anchor (only the
upper bound, which is what `arrival` means). Limits: device crystal drift (~50 ppm, about
4 s per day of uptime) is not modelled; a gateway wall clock stepped backwards keeps an
anchor that is too late by the step until the device reboots.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import aiosqlite

DEVICE = "device"
RECONSTRUCTED = "reconstructed"
ARRIVAL = "arrival"


@dataclass(frozen=True)
class PressTime:
    pressed_at_ms: int
    source: str


class Anchors:
    """Per (device, boot) anchors: in memory, persisted in device_boots."""

    def __init__(self) -> None:
        self._anchor: dict[tuple[str, int], int | None] = {}
        self._dirty: set[tuple[str, int]] = set()

    def observe(self, device_id: str, boot: int, uptime_ms: int, arrival_ms: int) -> bool:
        """Feed one (arrival, uptime) observation of this boot; True if the anchor improved."""
        key = (device_id, boot)
        candidate = arrival_ms - uptime_ms
        old = self._anchor.get(key)
        if old is not None and old <= candidate:
            return False
        self._anchor[key] = candidate
        self._dirty.add(key)
        return True

    def cached(self, device_id: str, boot: int) -> tuple[bool, int | None]:
        key = (device_id, boot)
        if key in self._anchor:
            return True, self._anchor[key]
        return False, None

    async def get(self, conn: aiosqlite.Connection, device_id: str, boot: int) -> int | None:
        """The anchor of that boot, reading device_boots on a cache miss."""
        hit, value = self.cached(device_id, boot)
        if hit:
            return value
        async with conn.execute(
                "SELECT anchor_ms FROM device_boots WHERE device_id = ? AND boot = ?",
                (device_id, boot)) as cur:
            row = await cur.fetchone()
        value = None if row is None or row[0] is None else int(row[0])
        key = (device_id, boot)
        if key in self._anchor:  # an observation raced in while we read
            return self._anchor[key]
        self._anchor[key] = value
        return value

    async def save(self, conn: aiosqlite.Connection, at_ms: int) -> int:
        """Persist improved anchors (inside the caller's transaction)."""
        rows = self.take_dirty(at_ms)
        if rows:
            await conn.executemany(_SAVE_ANCHOR, rows)
        return len(rows)

    def save_sync(self, conn: sqlite3.Connection, at_ms: int) -> int:
        """save() on a plain sqlite3 connection, for code already in the connection's thread
        and the thread that owns this object."""
        rows = self.take_dirty(at_ms)
        write_rows_sync(conn, rows)
        return len(rows)

    def take_dirty(self, at_ms: int) -> list[AnchorRow]:
        """The improved anchors as device_boots rows, now counted as saved. For a write in
        another thread (ingest's batch transaction): take them here, in the thread that
        observes, write them there with write_rows_sync; if that fails, mark_all_dirty."""
        if not self._dirty:
            return []
        rows = [(d, b, self._anchor[(d, b)], at_ms) for d, b in self._dirty]
        self._dirty.clear()
        return rows

    def mark_all_dirty(self, keys: list[tuple[str, int]]) -> None:
        self._dirty.update(k for k in keys if self._anchor.get(k) is not None)


# (device_id, boot, anchor_ms, first_seen)
AnchorRow = tuple[str, int, int | None, int]

_SAVE_ANCHOR = (
    "INSERT INTO device_boots(device_id, boot, anchor_ms, first_seen) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(device_id, boot) DO UPDATE SET anchor_ms ="
    " MIN(COALESCE(anchor_ms, excluded.anchor_ms), excluded.anchor_ms)"
)


def write_rows_sync(conn: sqlite3.Connection, rows: list[AnchorRow]) -> None:
    """Store rows from Anchors.take_dirty (inside the caller's transaction); an anchor only
    ever moves earlier."""
    if rows:
        conn.executemany(_SAVE_ANCHOR, rows)


def press_time(w: int, u: int, anchor_ms: int | None, arrival_ms: int) -> PressTime:
    """The best estimate of a press's UTC epoch ms (see the module docstring)."""
    if w != 0:
        return PressTime(w * 1000, DEVICE)
    if anchor_ms is not None:
        # A press cannot be later than its arrival; clamp an anchor that drifted late.
        return PressTime(min(anchor_ms + u, arrival_ms), RECONSTRUCTED)
    return PressTime(arrival_ms, ARRIVAL)
