"""Helpers for the hall-admin tests: a seeded store, record rows as the core's ingest makes
them (attributed, then inserted with the core's insert_records), a recording send_command."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import attribution, bindings
from gateway.config import Config, parse_config
from gateway.store import records as records_store
from gateway.store.db import Database, open_db
from gateway.store.devices import add_device_row
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


def make_config(tmp: Path, **sections: Any) -> Config:
    raw: dict[str, Any] = {
        "store": {"path": str(tmp / "gateway.db")},
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
    db: Database
    cfg: Config
    seq: dict[str, int] = field(default_factory=dict)

    @property
    def conn(self) -> Any:
        return self.db.conn

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
        async with self.db.transaction() as conn:
            row = await attribution.attribute(
                conn, row, rules or attribution.AttributionRules.from_config(self.cfg)
            )
            await records_store.insert_records(conn, [row])
        return row

    async def record(self, rid: str) -> dict[str, Any]:
        r = await records_store.get_record(self.conn, rid)
        assert r is not None
        return r

    async def invitation_status(self, inv_id: str) -> tuple[str, str | None, str | None]:
        row = await self.db.fetchone(
            "SELECT status, record_id, grade FROM invitations WHERE id = ?", (inv_id,)
        )
        assert row is not None
        return row[0], row[1], row[2]


async def open_store(tmp: Path, **sections: Any) -> Store:
    cfg = make_config(tmp, **sections)
    attribution.forget_recent()
    db = await open_db(cfg.store.path)
    async with db.transaction() as conn:
        for d in DEVICES:
            await add_device_row(conn, d, secrets.token_hex(32), "test-1", "test")
    for w, name in WINDOWS:
        await bindings.add_window(db, w, "11370300MB0000000X", name, "test")
    for a, name in STAFF:
        await bindings.add_staff(db, a, name, "test")
    return Store(db, cfg)


def flags(row: dict[str, Any]) -> set[str]:
    return {f for f in (row.get("flags") or "").split(",") if f}
