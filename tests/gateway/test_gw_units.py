"""Config parsing, migrations, idempotent record inserts, time reconstruction."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from harness.store import BACKEND, query

from gateway.config import ConfigError, load_config
from gateway.store import open_store
from gateway.store.errors import MigrationError
from gateway.store.migrate import migrate
from gateway.store.sql.records import COLUMNS
from gateway.timesync import Anchors, press_time


def test_config_defaults_paths_and_raw(tmp_path: Path) -> None:
    p = tmp_path / "gw.toml"
    p.write_text('[store]\npath = "data/g.db"\n[http]\nport = 8080\n'
                 '[hall]\nopening_hours = ["08:30-12:00"]\n')
    cfg = load_config(p)
    assert cfg.store.path == tmp_path / "data" / "g.db"
    assert cfg.mqtt.client_id == "hcp-gateway" and cfg.ingest.batch_ms == 5 and cfg.ingest.batch_max == 500
    assert cfg.hall.timezone == "Asia/Shanghai" and cfg.raw["http"]["port"] == 8080
    # Monday 2026-11-23 09:00 and 13:00 Beijing time
    tz = cfg.hall.tz
    assert cfg.hall.is_open(int(dt.datetime(2026, 11, 23, 9, 0, tzinfo=tz).timestamp() * 1000))
    assert not cfg.hall.is_open(int(dt.datetime(2026, 11, 23, 13, 0, tzinfo=tz).timestamp() * 1000))
    assert not cfg.hall.is_open(int(dt.datetime(2026, 11, 22, 9, 0, tzinfo=tz).timestamp() * 1000))  # Sunday


@pytest.mark.parametrize(("text", "why"), [
    ("[mqtt]\nport = 1883\n", "path is required"),
    ('[store]\npath = "x"\n[mqtt]\nport = "1883"\n', "port must be an integer"),
    ('[store]\npath = "x"\n[ingest]\nbatch_max = 0\n', "batch_max must be in"),
    ('[store]\npath = "x"\n[hall]\ntimezone = "Mars/Base"\n', "not a known time zone"),
    ('[store]\npath = "x"\n[hall]\nopening_hours = ["9-5"]\n', "HH:MM-HH:MM"),
    ("[store\n", "not valid TOML"),
])
def test_config_errors_are_clear(tmp_path: Path, text: str, why: str) -> None:
    p = tmp_path / "gw.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_config(p)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


async def test_migrations_apply_once_in_order_and_roll_back_on_error(tmp_path: Path) -> None:
    mig = tmp_path / "mig"
    mig.mkdir()
    (mig / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);")
    (mig / "0002_b.sql").write_text("CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);")
    store = await open_store(tmp_path / "m.db", run_migrations=False)
    w = store._writer  # type: ignore[attr-defined]  # the migration runner works on the raw connection
    try:
        with pytest.raises(MigrationError, match="0002_b.sql"):
            await w.call(lambda c: migrate(c, c.raw.executescript, mig))
        names = {r[0] for r in query(tmp_path / "m.db", "SELECT name FROM sqlite_master WHERE type='table'")}
        assert "a" in names and "b" not in names  # 0002 left no trace
        (mig / "0002_b.sql").write_text("CREATE TABLE b (x INTEGER);")
        assert await w.call(lambda c: migrate(c, c.raw.executescript, mig)) == [2]
        assert await w.call(lambda c: migrate(c, c.raw.executescript, mig)) == []
    finally:
        await store.close()


async def test_core_schema_and_idempotent_insert(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        if BACKEND == "sqlite":
            assert await store.read(lambda tx: tx.raw.scalar("PRAGMA journal_mode")) == "wal"
            assert await store.read(lambda tx: tx.raw.scalar("PRAGMA synchronous")) == 2  # FULL
        row = dict.fromkeys(COLUMNS)
        row.update(record_id="d:1:1", device_id="d", rb=1, rs=1, kind="walkup", grade="vs",
                   device_wall_s=0, uptime_ms=5, pressed_at_ms=1, time_source="arrival",
                   received_at_ms=1, msg_boot=1, flags="")

        def unit(tx: Any) -> None:
            tx.devices.upsert("d", "x", None, 0)
            tx.records.insert_many([row, row])
            tx.records.insert_many([row])
        await store.write(unit)
        assert await store.read(lambda tx: tx.records.count()) == 1
        assert await store.read(lambda tx: tx.records.existing_ids(["d:1:1", "d:1:2"])) == {"d:1:1"}
    finally:
        await store.close()


def test_press_time_sources() -> None:
    assert press_time(1700000000, 5, None, 99).source == "device"
    assert press_time(1700000000, 5, None, 99).pressed_at_ms == 1700000000000
    assert press_time(0, 5000, 1_000_000, 2_000_000).pressed_at_ms == 1_005_000
    assert press_time(0, 5000, 1_000_000, 2_000_000).source == "reconstructed"
    assert press_time(0, 5000, None, 2_000_000) == press_time(0, 0, None, 2_000_000)  # arrival
    assert press_time(0, 5000, None, 2_000_000).source == "arrival"
    assert press_time(0, 10**9, 1_000_000, 2_000_000).pressed_at_ms == 2_000_000  # never after arrival


def test_anchor_keeps_the_least_delayed_observation() -> None:
    a = Anchors()
    assert a.observe("d", 1, uptime_ms=1000, arrival_ms=11_000)      # anchor 10_000
    assert not a.observe("d", 1, uptime_ms=2000, arrival_ms=15_000)  # delayed: 13_000, ignored
    assert a.observe("d", 1, uptime_ms=3000, arrival_ms=12_500)      # 9_500: better
    assert a.cached("d", 1) == (True, 9_500)
    assert a.cached("d", 2) == (False, None)
