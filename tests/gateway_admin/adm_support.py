"""Helpers for the hall-admin tests: a seeded store, record rows as the core's ingest makes
them (attributed, then inserted with the core's insert_records), a recording send_command."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import attribution, bindings
from gateway.clock import now_ms
from gateway.config import Config, parse_config
from gateway.devices import add_device
from gateway.store import Store as GwStore
from gateway.store import open_store as gw_open_store
from gateway.store.api import Tx
from protocol.ids import record_id

DEVICES = ("dev-1", "dev-2", "dev-3")
WINDOWS = (("A01", "综合窗口"), ("A02", "社保窗口"), ("A03", "税务窗口"))
STAFF = (("zhang", "张三"), ("li", "李四"), ("wang", "王五"))
ALWAYS_OPEN = {
    "timezone": "Asia/Shanghai",
    "opening_hours": ["00:00-24:00"],
    "opening_days": [1, 2, 3, 4, 5, 6, 7],
}
WINDOW_TOKEN = "window-token-" + "w" * 16
ADMIN_TOKEN = "admin-token-" + "a" * 16


def make_config(tmp: Path, store_url: str | None = None, **sections: Any) -> Config:
    url = store_url or str(tmp / "gateway.db")
    raw: dict[str, Any] = {
        "store": {"url": url} if url.startswith("postgresql://") else {"path": url},
        "hall": dict(ALWAYS_OPEN),
        "http": {"host": "127.0.0.1", "port": 0, "window_token": WINDOW_TOKEN, "admin_token": ADMIN_TOKEN},
    }
    raw.update(sections)
    return parse_config(raw, tmp)


@dataclass
class Recorder:
    """A send_command that records (device, type, fields); `fail` devices raise."""

    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)

    async def __call__(self, device_id: str, t: str, fields: dict[str, Any]) -> None:
        if device_id in self.fail:
            raise ConnectionError("device %s offline" % device_id)
        self.sent.append((device_id, t, dict(fields)))

    def of(self, device_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(t, f) for d, t, f in self.sent if d == device_id]


@dataclass
class Store:
    db: GwStore
    cfg: Config
    seq: dict[str, int] = field(default_factory=dict)
    url: str = ""

    async def rec(
        self,
        device: str,
        kind: str,
        pressed_at_ms: int,
        grade: str | None = "vs",
        inv: str | None = None,
        rules: attribution.AttributionRules | None = None,
        rb: int = 1,
    ) -> dict[str, Any]:
        """One record through attribution and into the records table, like the core's ingest."""
        self.seq[device] = self.seq.get(device, 0) + 1
        rs = self.seq[device]
        row: dict[str, Any] = {
            "record_id": record_id(device, rb, rs),
            "device_id": device,
            "rb": rb,
            "rs": rs,
            "kind": kind,
            "grade": None if kind == "unrated" else grade,
            "invitation_id": inv,
            "device_wall_s": pressed_at_ms // 1000,
            "uptime_ms": 1000 * rs,
            "pressed_at_ms": pressed_at_ms,
            "time_source": "device",
            "received_at_ms": bindings.now_ms(),
            "msg_boot": rb,
            "binding_id": None,
            "window_id": None,
            "staff_account": None,
            "flags": "unpaired" if kind == "unpaired" else "",
        }
        use = rules or attribution.AttributionRules.from_config(self.cfg)

        def unit(tx: Tx) -> dict[str, Any]:
            out = attribution.attribute_sync(tx, row, use)
            tx.records.insert_many([out])
            return out
        return await self.db.write(unit)

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Raw SQL through the store's own connection (tests of the schema's own rules)."""
        return await self.db.write(lambda tx: tx.raw.execute(sql, params))

    async def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return await self.db.read(lambda tx: tx.raw.rows(sql, params))

    async def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def record(self, rid: str) -> dict[str, Any]:
        r = await self.db.read(lambda tx: tx.records.get(rid))
        assert r is not None
        return r

    async def invitation_status(self, inv_id: str) -> tuple[str, str | None, str | None]:
        inv = await self.db.read(lambda tx: tx.invitations.get(inv_id))
        assert inv is not None
        return inv.status, inv.record_id, inv.grade


async def open_store(tmp: Path, store_url: str | None = None, **sections: Any) -> Store:
    cfg = make_config(tmp, store_url, **sections)
    db = await gw_open_store(cfg.store.url)
    t = now_ms()
    await db.write(lambda tx: [add_device(tx, d, secrets.token_hex(32), "test-1", "test", t)
                               for d in DEVICES])
    for w, name in WINDOWS:
        await bindings.add_window(db, w, "11370300MB0000000H", name, "test")
    for a, name in STAFF:
        await bindings.add_staff(db, a, name, "test")
    return Store(db, cfg, url=cfg.store.url)


def flags(row: dict[str, Any]) -> set[str]:
    return {f for f in (row.get("flags") or "").split(",") if f}
