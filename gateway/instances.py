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
from gateway.store.errors import StoreUnusable
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


class AlreadyServing(StoreUnusable):
    """Another live instance uses this config's [mqtt] client id: one line says which."""


def _alive_here(instance: str) -> bool | None:
    """True/False for an instance of this host (its pid is, or is not, a live process); None
    for another host's."""
    host, _, pid = instance.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True       # a live process of another user (the service's, for a root shell)
    return True


async def refuse_a_twin(store: Store, client_id: str, me: str) -> None:
    """Refuse to start beside a live instance with the same [mqtt] client id (a `serve` typed
    by hand next to the service): the broker lets one client id connect once, so the two would
    knock each other off in a loop. On SQLite the store's instance lock refuses it first; on a
    shared PostgreSQL store the heartbeats say who runs. A fresh row of a process of this host
    that is gone (a crash: systemd restarts it at once) does not count."""
    now = now_ms()
    for b in await store.read(lambda tx: tx.ops.instances()):
        if b.client_id != client_id or b.instance == me or now - b.seen_ms > FRESH_MS:
            continue
        if _alive_here(b.instance) is False:
            continue
        raise AlreadyServing(
            "another gateway (%s, seen %.0f s ago) is already serving with [mqtt] client_id %s: stop it"
            " first (systemctl stop hcp-gateway), or give this instance its own client_id"
            % (b.instance, max(0, now - b.seen_ms) / 1000, client_id))
