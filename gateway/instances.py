"""Every running gateway instance says, every few seconds, in the store, that it runs and
whether it is connected to the broker (table service_instances). `hcp-gateway doctor` reads
it: "the broker takes the gateway's account" is proven by the service's own connection,
without ever connecting as the gateway's client id beside it (that would knock the service
off, or take over its queued session)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from gateway import __version__
from gateway.clock import now_ms
from gateway.store import Store
from gateway.store.api import Tx
from gateway.store.rows import InstanceBeat

log = logging.getLogger("gateway.service")

BEAT_EVERY_S = 5.0
FRESH_MS = 20_000          # a row older than this: that instance is not running
FORGET_AFTER_MS = 86_400_000


@dataclass
class MqttState:
    """Written by the service's MQTT loop; a change is in the store at once."""

    ok: bool = False
    error: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, ok: bool, error: str | None = None) -> None:
        if (ok, error) != (self.ok, self.error):
            self.ok, self.error = ok, error
            self.changed.set()


@dataclass
class Beat:
    store: Store
    client_id: str
    instance: str = field(default_factory=lambda: "%s:%d" % (socket.gethostname(), os.getpid()))
    started_ms: int = field(default_factory=now_ms)
    mqtt: MqttState = field(default_factory=MqttState)
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> InstanceBeat:
        return InstanceBeat(self.instance, self.client_id, __version__, self.started_ms, now_ms(),
                            self.mqtt.ok, self.mqtt.error, dict(self.detail))

    async def once(self) -> None:
        row = self.row()
        old = row.seen_ms - FORGET_AFTER_MS
        def write(tx: Tx) -> None:
            tx.ops.beat(row)
            tx.ops.prune_instances(old)
        await self.store.write(write)

    async def run(self, every_s: float = BEAT_EVERY_S) -> None:
        while True:
            self.mqtt.changed.clear()
            try:
                await self.once()
            except Exception as e:  # noqa: BLE001 - the store may be away for a moment
                log.warning("instance heartbeat not written: %s", e)
            try:
                await asyncio.wait_for(self.mqtt.changed.wait(), every_s)
            except TimeoutError:
                pass

    async def forget(self) -> None:
        """At a clean stop: this instance no longer runs."""
        await self.store.write(lambda tx: tx.ops.forget(self.instance))
