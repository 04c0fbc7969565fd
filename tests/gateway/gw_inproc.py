"""The gateway's ingest in this process, on a real SQLite store: the same objects serve()
wires (registry, anchors, downlink, attribution), without a broker connection (commands
such as acks are then not sent: Downlink.send_nowait says False). For tests that feed
thousands of payloads to Ingest.handle directly and look at its counters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import bindings, device_ids, timesync
from gateway.attribution import Attribution, AttributionRules
from gateway.broker_accounts import NoBrokerAccounts
from gateway.config import Config, parse_config
from gateway.devices import DeviceService
from gateway.ingest import Ingest
from gateway.mqtt import Downlink
from gateway.registry import DeviceRegistry
from gateway.store import Store, open_store
from protocol.auth import Key


@dataclass
class InprocIngest:
    cfg: Config
    config_path: Path
    db: Store
    registry: DeviceRegistry
    ingest: Ingest
    secrets: dict[str, str]

    def key(self, device_id: str) -> Key:
        return Key(self.secrets[device_id])

    @property
    def rejected(self) -> int:
        return sum(self.ingest.rejections.totals.values())

    async def close(self) -> None:
        await self.ingest.drain()
        await self.registry.flush()
        await self.ingest.rejections.save(self.db)
        await self.db.close()


def write_config(tmp: Path, extra: str = "") -> Path:
    p = tmp / "gateway.toml"
    p.write_text('[store]\npath = "%s"\n\n[hall]\ntimezone = "Asia/Shanghai"\n%s'
                 % (tmp / "gateway.db", extra))
    return p


async def open_ingest(tmp: Path, devices: list[str], raw: dict[str, Any] | None = None,
                      paired: bool = True) -> InprocIngest:
    """A store with the devices registered (and, if paired, each bound to window W-<id> and
    clerk c-<id>), and an Ingest over it."""
    config_path = write_config(tmp)
    cfg = parse_config({"store": {"path": str(tmp / "gateway.db")}, "hall": {"timezone": "Asia/Shanghai"},
                        **(raw or {})}, tmp, config_path)
    db = await open_store(cfg.store.url)
    keys = {d: secrets.token_hex(32) for d in devices}
    svc = DeviceService(db, NoBrokerAccounts(), reserved=device_ids.reserved_by(cfg))
    for d, k in keys.items():
        await svc.register(d, k, "pw-" + d, fw="test-1")
        if paired:
            await bindings.add_window(db, "W-" + d, "", "window of " + d, "test")
            await bindings.add_staff(db, "c-" + d, "clerk of " + d, "test")
            await bindings.pair(db, d, "W-" + d, "c-" + d, "test")
    registry = DeviceRegistry(db)
    await registry.load()
    ingest = Ingest(cfg, db, registry, timesync.Anchors(), Downlink(registry),
                    attribute=Attribution(AttributionRules.from_config(cfg)))
    return InprocIngest(cfg, config_path, db, registry, ingest, keys)
