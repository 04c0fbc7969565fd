"""Fixtures for the uplink tests: the real gateway store (all migrations) and the real
platform stand-in on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from up_support import Database, Seeder, open_db

from gateway.uplink.adapters import make_adapter
from gateway.uplink.settings import UplinkSettings
from simulator.platform import PlatformStandIn


@pytest.fixture
async def gwdb(store_url: str) -> AsyncIterator[Database]:
    db = await open_db(store_url)
    yield db
    await db.close()


@pytest.fixture
async def seeder(gwdb: Database) -> Seeder:
    s = Seeder(gwdb)
    await s.device("hcp-dev1", "W01", "clerk01")
    return s


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[PlatformStandIn]:
    schema = make_adapter(UplinkSettings(area_code="540102")).schema()
    async with PlatformStandIn(schema, tmp_path / "platform.sqlite") as p:
        yield p
