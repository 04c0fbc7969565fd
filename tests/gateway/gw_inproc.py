"""The gateway's ingest in this process, on a real SQLite store: the same objects serve()
wires (registry, anchors, downlink, attribution), without a broker connection (commands
such as acks are then not sent: Downlink.send_nowait says False). For tests that feed
thousands of payloads to Ingest.handle directly and look at its counters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import attribution, bindings, timesync
from gateway.config import Config, parse_config
from gateway.ingest import Ingest, load_attribution
from gateway.mqtt import Downlink
from gateway.store.db import Database, open_db
from gateway.store.devices import DeviceRegistry, register_device
from protocol.auth import Key


@dataclass
class InprocIngest:
    cfg: Config
    config_path: Path
    db: Database
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


async def open_ingest(tmp: Path, device_ids: list[str], raw: dict[str, Any] | None = None,
                      paired: bool = True) -> InprocIngest:
    """A store with the devices registered (and, if paired, each bound to window W-<id> and
    clerk c-<id>), and an Ingest over it."""
    config_path = write_config(tmp)
    cfg = parse_config({"store": {"path": str(tmp / "gateway.db")}, "hall": {"timezone": "Asia/Shanghai"},
                        **(raw or {})}, tmp, config_path)
    attribution.configure(attribution.AttributionRules.from_config(cfg))
    attribution.forget_recent()
    db = await open_db(cfg.store.path)
    keys = {d: secrets.token_hex(32) for d in device_ids}
    for d, k in keys.items():
        await register_device(db, cfg, d, k, "pw-" + d, fw="test-1")
        if paired:
            await bindings.add_window(db, "W-" + d, "", "window of " + d, "test")
            await bindings.add_staff(db, "c-" + d, "clerk of " + d, "test")
            await bindings.pair(db, d, "W-" + d, "c-" + d, "test")
    registry = DeviceRegistry(db)
    await registry.load()
    ingest = Ingest(cfg, db, registry, timesync.Anchors(), Downlink(registry), attribute=load_attribution())
    return InprocIngest(cfg, config_path, db, registry, ingest, keys)
