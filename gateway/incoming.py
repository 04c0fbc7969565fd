"""The gate between the MQTT connection and ingest: a per-device rate limit and one bounded queue.

The incoming path, hop by hop, and what bounds each (issue 14, item 4: a QoS 0 flood of 1 KB
messages from one device delayed another device's acks from 82 ms to minutes and grew the
gateway from 42 MB to over 400 MB, through an unbounded queue):

  broker -> us       the broker's own per-client queue (mosquitto max_queued_messages /
                     max_queued_bytes) and our MQTT 5 Maximum Packet Size (gateway.mqtt)
  kernel socket      SO_RCVBUF (gateway.mqtt.RCVBUF)
  paho               one packet at a time, handed to `Gate.offer` as it is parsed
  Gate               per device a token bucket ([ingest] device_rate msg/s, device_burst):
                     beyond it a message is dropped, counted `rate_limited` and the device
                     flagged (health); then one FIFO bounded in messages and bytes ([ingest]
                     queue_max, queue_max_bytes): beyond it `queue_full`
  ingest             records waiting for the group commit: bounded ([ingest] pending_max);
                     the consumer waits for room, so the Gate's queue is the one place that drops
  outgoing           paho's queue of acks and commands (gateway.mqtt.MAX_QUEUED_OUT)

A dropped message is never lost data: a record is kept by its device until acked and sent
again; a heartbeat or status is repeated by the device. `offer` runs in paho's reader callback
and only looks at the topic: a flood costs paho's parse and a dictionary lookup per message.
The device id in the topic can be trusted for this: the broker lets a device publish only
under its own id (dynsec roles / ACL).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.clock import now_ms

UP_PREFIX = "hcp/1/up/"
# Buckets of devices not heard from for this long are forgotten (bounded memory whatever ids
# appear in topics).
_IDLE_S = 600.0
_MAX_BUCKETS = 20000


@dataclass(frozen=True)
class GateLimits:
    device_rate: float = 200.0       # messages per second and device, sustained
    device_burst: int = 400          # ... and at once (a journal replay after an outage)
    queue_max: int = 10000           # messages waiting for ingest
    queue_max_bytes: int = 8 * 1024 * 1024


# Who hears about a drop: (reason, device id) -> None. Ingest's counter, and the registry's
# per-device flag for rate_limited.
OnDrop = Callable[[str, str, int], None]


class Gate:
    def __init__(self, limits: GateLimits, on_drop: OnDrop,
                 clock: Callable[[], float] = time.monotonic, wall_ms: Callable[[], int] = now_ms) -> None:
        self.limits = limits
        self._on_drop = on_drop
        self._clock = clock
        self._wall_ms = wall_ms
        self._q: deque[tuple[str, bytes, int]] = deque()
        self._bytes = 0
        self._buckets: dict[str, list[float]] = {}   # device -> [tokens, last refill time]
        self._ready = asyncio.Event()
        self._last_sweep = clock()
        self.accepted = 0
        self.dropped = 0
        self.high_water = 0

    def offer(self, topic: str, payload: bytes) -> None:
        """One message from the connection (paho's reader callback). Never raises."""
        now = self._clock()
        device = _device_of(topic)
        lim = self.limits
        b = self._buckets.get(device)
        if b is None:
            if len(self._buckets) >= _MAX_BUCKETS or now - self._last_sweep > _IDLE_S:
                self._sweep(now)
            b = self._buckets[device] = [float(lim.device_burst), now]
        else:
            b[0] = min(float(lim.device_burst), b[0] + (now - b[1]) * lim.device_rate)
            b[1] = now
        if b[0] < 1.0:
            self._drop("rate_limited", device)
            return
        b[0] -= 1.0
        if len(self._q) >= lim.queue_max or self._bytes + len(payload) > lim.queue_max_bytes:
            self._drop("queue_full", device)
            return
        self._q.append((topic, payload, self._wall_ms()))
        self._bytes += len(payload)
        self.accepted += 1
        if len(self._q) > self.high_water:
            self.high_water = len(self._q)
        self._ready.set()

    def _drop(self, reason: str, device: str) -> None:
        self.dropped += 1
        self._on_drop(reason, device, self._wall_ms())

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        idle = [d for d, b in self._buckets.items() if now - b[1] > _IDLE_S]
        for d in idle:
            del self._buckets[d]
        if len(self._buckets) >= _MAX_BUCKETS:
            self._buckets.clear()    # thousands of ids at once: start over (fresh buckets are full)

    def __len__(self) -> int:
        return len(self._q)

    async def get(self) -> tuple[str, bytes, int]:
        """The oldest waiting message: (topic, payload, arrival epoch ms)."""
        while not self._q:
            self._ready.clear()
            await self._ready.wait()
        topic, payload, arrival = self._q.popleft()
        self._bytes -= len(payload)
        return topic, payload, arrival

    def get_nowait(self) -> tuple[str, bytes, int] | None:
        if not self._q:
            return None
        topic, payload, arrival = self._q.popleft()
        self._bytes -= len(payload)
        return topic, payload, arrival


def _device_of(topic: str) -> str:
    """The device id of hcp/1/up/<id>/<type> (anything else: the whole topic, its own bucket)."""
    if topic.startswith(UP_PREFIX):
        end = topic.find("/", len(UP_PREFIX))
        if end > 0:
            return topic[len(UP_PREFIX):end]
    return topic
