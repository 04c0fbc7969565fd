"""Device health from hello, hb and status messages; silent-device detection.

Online/offline comes from the retained `status` message, which is also the device's last
will. Each status carries (b, c): boot and connection counter within the boot. A status
is applied only if its (b, c) is not older than the one that set the current state, and
for the same (b, c) "offline" wins (the will of a connection follows its "online"). So a
stale retained will, or a will delivered late from the broker's queue, can never mark a
device offline after a newer connection said it is online.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from gateway.registry import DeviceRegistry, DeviceState
from gateway.store import Store

log = logging.getLogger("gateway.health")

# A device whose messages the per-device rate limit dropped within this long is flagged
# "flooding" (gateway/incoming.py; `hcp-gateway health`).
FLOOD_FLAG_S = 600


def flooding(limited_at: int | None, now_ms: int) -> bool:
    return limited_at is not None and now_ms - limited_at <= FLOOD_FLAG_S * 1000


def _compact(m: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in m.items() if k != "mac"}, sort_keys=True, separators=(",", ":"))


def on_status(st: DeviceState, m: dict[str, Any], arrival_ms: int) -> bool:
    """Apply a status message; True if it changed the device's online state."""
    bc: tuple[int, int] = (int(m["b"]), int(m["c"]))
    online: bool = m["s"] == "online"
    cur = st.status_bc
    if cur is not None:
        if bc < cur:
            return False
        if bc == cur and online:
            return False  # same connection: its offline (will) is final
    was: bool = st.online
    st.status_bc = bc
    st.online = online
    st.dirty = True
    if online:
        st.last_seen = arrival_ms
        if not was:
            st.reconnects += 1
    return was != online


def on_hello(st: DeviceState, m: dict[str, Any], arrival_ms: int) -> None:
    _report(st, m, arrival_ms)
    st.last_hello_json = _compact(m)


def on_hb(st: DeviceState, m: dict[str, Any], arrival_ms: int) -> None:
    _report(st, m, arrival_ms)
    st.last_hb_json = _compact(m)


def _report(st: DeviceState, m: dict[str, Any], arrival_ms: int) -> None:
    """The fields hello and hb both report."""
    st.fw = m["fw"]
    st.journal_depth = m["jd"]
    st.last_rst = m["rst"]
    st.last_seen = arrival_ms
    st.dirty = True


def touch(st: DeviceState, arrival_ms: int) -> None:
    """Any authenticated message shows the device is alive."""
    if st.last_seen is None or arrival_ms > st.last_seen:
        st.last_seen = arrival_ms
        st.dirty = True


async def silent_devices(store: Store, now_ms: int, silent_after_s: int) -> list[dict[str, Any]]:
    """Enabled devices with no accepted message for longer than silent_after_s (or never)."""
    cutoff = now_ms - silent_after_s * 1000
    return await store.read(lambda tx: tx.devices.silent(cutoff))


def silent_in_memory(registry: DeviceRegistry, now_ms: int, silent_after_s: int) -> list[str]:
    cutoff = now_ms - silent_after_s * 1000
    return sorted(s.device_id for s in registry.all() if s.last_seen is None or s.last_seen < cutoff)


async def health_task(registry: DeviceRegistry, silent_after_s: int, every_s: float,
                      clock_ms: Any) -> None:
    """Log the set of silent devices whenever it changes (and once an hour while non-empty)."""
    last: list[str] = []
    last_logged = 0.0
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every_s)
        silent = silent_in_memory(registry, clock_ms(), silent_after_s)
        if silent != last or (silent and loop.time() - last_logged > 3600):
            if silent:
                log.warning("silent devices (no message for > %ds): %d: %s",
                            silent_after_s, len(silent), ", ".join(silent[:20]))
            elif last:
                log.info("no silent devices")
            last, last_logged = silent, loop.time()
