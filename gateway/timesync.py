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

from dataclasses import dataclass

from gateway.store import Store

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

    async def get(self, store: Store, device_id: str, boot: int) -> int | None:
        """The anchor of that boot, reading the store on a cache miss."""
        hit, value = self.cached(device_id, boot)
        if hit:
            return value
        value = await store.read(lambda tx: tx.anchors.get(device_id, boot))
        key = (device_id, boot)
        if key in self._anchor:  # an observation raced in while we read
            return self._anchor[key]
        self._anchor[key] = value
        return value

    async def save(self, store: Store, at_ms: int) -> int:
        """Persist improved anchors (an anchor only ever moves earlier)."""
        rows = self.take_dirty(at_ms)
        if not rows:
            return 0
        try:
            await store.write(lambda tx: tx.anchors.save(rows))
        except BaseException:
            self.mark_all_dirty([(r[0], r[1]) for r in rows])
            raise
        return len(rows)

    def take_dirty(self, at_ms: int) -> list[AnchorRow]:
        """The improved anchors as rows to store, now counted as saved (ingest writes them in
        its batch's unit of work; if that fails, mark_all_dirty)."""
        if not self._dirty:
            return []
        rows = [(d, b, self._anchor[(d, b)], at_ms) for d, b in self._dirty]
        self._dirty.clear()
        return rows

    def mark_all_dirty(self, keys: list[tuple[str, int]]) -> None:
        self._dirty.update(k for k in keys if self._anchor.get(k) is not None)


# (device_id, boot, anchor_ms, first_seen)
AnchorRow = tuple[str, int, int | None, int]

def press_time(w: int, u: int, anchor_ms: int | None, arrival_ms: int) -> PressTime:
    """The best estimate of a press's UTC epoch ms (see the module docstring)."""
    if w != 0:
        return PressTime(w * 1000, DEVICE)
    if anchor_ms is not None:
        # A press cannot be later than its arrival; clamp an anchor that drifted late.
        return PressTime(min(anchor_ms + u, arrival_ms), RECONSTRUCTED)
    return PressTime(arrival_ms, ARRIVAL)
