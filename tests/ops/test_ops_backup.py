"""`hcp-gateway backup` under load and `restore` elsewhere, reconciled (both backends).

Four devices press as fast as the gateway acks while two backups are taken through the CLI;
each backup is restored into another store (another SQLite file, another PostgreSQL database)
and reconciled with the live store and the devices: every record acknowledged before the
backup began is in it, nothing is in it twice or that the live store lacks, each device's
records in it are a prefix of its sequence (one commit's state, not a torn copy), and the
file is 0600. Then the refusals: no backup file, the other backend, a store in the way, a
store being served; and --dir --keep."""

from __future__ import annotations

import asyncio
import os
import stat
from collections import Counter
from pathlib import Path

import pytest
from gw_support import GatewayEnv, TestDevice, make_env, wait_for
from harness.store import is_pg, query
from ops_support import cli

from simulator.gateway_proc import write_config

pytestmark = pytest.mark.slow
DEVICES = ["dev-a", "dev-b", "dev-c", "dev-d"]


async def _press_until(dev: TestDevice, stop: asyncio.Event, pressed: list[str]) -> None:
    while not stop.is_set():
        pressed.append(await dev.press(grade="s"))
        await asyncio.sleep(0.002)


def _elsewhere(env: GatewayEnv, tmp: Path, request: pytest.FixtureRequest, name: str) -> Path:
    """A config for another store of the same backend (an empty one)."""
    if is_pg(str(env.db_path)):
        url: Path | str = request.getfixturevalue("pg_server").fresh_database(migrated=False)
    else:
        (tmp / name).mkdir()
        url = tmp / name / "gateway.db"
    return write_config(tmp / name / "gateway.toml" if not is_pg(str(url)) else tmp / (name + ".toml"),
                        mqtt_port=1883, mqtt_password="x", db_path=url)


def _ids(url: Path | str) -> list[str]:
    return [r[0] for r in query(url, "SELECT record_id FROM records")]


def _store_of(cfg: Path) -> Path | str:
    import tomllib
    store = tomllib.loads(cfg.read_text())["store"]
    return store.get("url") or store["path"]


async def test_backup_under_load_restores_elsewhere_and_reconciles(tmp_path: Path, store_url: str,
                                                                   request: pytest.FixtureRequest) -> None:
    env = await asyncio.to_thread(make_env, tmp_path, DEVICES, store_url=store_url)
    devs = [env.device(d) for d in DEVICES]
    stop = asyncio.Event()
    pressed: list[str] = []
    load: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(env.gateway.start)
        for d in devs:
            await d.connect()
            await d.hello()
        load = [asyncio.create_task(_press_until(d, stop, pressed)) for d in devs]
        await wait_for(lambda: sum(len(d.acks) for d in devs) > 200, 30, "load running")
        taken = []
        for n in range(2):
            acked_before = {rid for d in devs for rid in d.acks}
            out = tmp_path / ("backup-%d" % n)
            rc, stdout, err = await cli(env.config_path, "backup", "--out", str(out))
            assert rc == 0, err
            assert "mode 0600" in stdout and err == ""
            assert stat.S_IMODE(out.stat().st_mode) == 0o600
            acked_after = {rid for d in devs for rid in d.acks}
            assert len(acked_after) > len(acked_before), "the devices kept pressing during the backup"
            taken.append((out, acked_before))
        stop.set()
        await asyncio.gather(*load)
        await wait_for(lambda: all(not d.journal for d in devs), 30, "every press acked")
        live = _ids(env.db_path)
        assert Counter(live) == Counter(pressed) and len(set(live)) == len(live)   # nothing lost or doubled

        for n, (backup, acked_before) in enumerate(taken):
            other = _elsewhere(env, tmp_path, request, "restored-%d" % n)
            rc, stdout, err = await cli(other, "restore", str(backup))
            assert rc == 0, err
            restored = _ids(_store_of(other))
            assert len(set(restored)) == len(restored)                       # nothing doubled
            assert acked_before <= set(restored), "a record acked before the backup is missing"
            assert set(restored) <= set(live)
            assert len(restored) < len(live)                                  # it is a past state
            for dev in DEVICES:                                               # one commit's state
                seqs = sorted(int(r.rsplit(":", 1)[1]) for r in restored if r.startswith(dev + ":"))
                assert seqs == list(range(1, len(seqs) + 1)), dev
            assert "%d records" % len(restored) in stdout
            # the restored store is whole: the doctor's store line passes on it
            rc, out, _ = await cli(other, "doctor")
            assert next(ln for ln in out.splitlines() if " store " in ln).startswith("ok"), out
    finally:
        stop.set()
        for t in load:
            t.cancel()
        for d in devs:
            await d.disconnect()
        await asyncio.to_thread(env.gateway.terminate)
        await asyncio.to_thread(env.broker.stop)


async def test_restore_refusals_and_force(tmp_path: Path, store_url: str) -> None:
    env = await asyncio.to_thread(make_env, tmp_path, ["dev-a"], store_url=store_url)
    try:
        await asyncio.to_thread(env.gateway.start)
        backup = tmp_path / "b1"
        assert (await cli(env.config_path, "backup", "--out", str(backup)))[0] == 0
        # not a backup
        junk = tmp_path / "junk"
        junk.write_text("hello")
        rc, out, err = await cli(env.config_path, "restore", str(junk))
        assert rc == 1 and "not a gateway backup" in err and err.count("\n") == 1 and "Traceback" not in err
        # the store is in the way (and on SQLite, served)
        rc, out, err = await cli(env.config_path, "restore", str(backup))
        assert rc == 1 and err.count("\n") == 1, err
        assert ("serving" in err) if not is_pg(str(env.db_path)) else ("serving" in err or "not empty" in err)
        await asyncio.to_thread(env.gateway.terminate)
        rc, out, err = await cli(env.config_path, "restore", str(backup))
        assert rc == 1 and "--force" in err, err
        rc, out, err = await cli(env.config_path, "restore", str(backup), "--force")
        assert rc == 0, err
        if not is_pg(str(env.db_path)):
            assert "kept as" in out
            kept = [p for p in Path(env.db_path).parent.iterdir() if ".replaced-" in p.name]
            assert kept and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)
        await asyncio.to_thread(env.gateway.start)                     # it serves the restored store
        # a backup of the other backend is refused
        if is_pg(str(env.db_path)):
            other = write_config(tmp_path / "sq.toml", mqtt_port=1883, mqtt_password="x",
                                 db_path=tmp_path / "sq.db")
            rc, out, err = await cli(other, "restore", str(backup))
        else:
            other = write_config(tmp_path / "pg.toml", mqtt_port=1883, mqtt_password="x",
                                 db_path="postgresql://nobody@127.0.0.1:1/none")
            rc, out, err = await cli(other, "restore", str(backup))
        assert rc == 1 and "restore it into a store of its kind" in err, err
    finally:
        await asyncio.to_thread(env.gateway.terminate)
        await asyncio.to_thread(env.broker.stop)


async def test_backup_dir_keeps_the_newest(tmp_path: Path, store_url: str) -> None:
    env = await asyncio.to_thread(make_env, tmp_path, ["dev-a"], store_url=store_url)
    try:
        d = tmp_path / "backups"
        names = []
        for _ in range(3):
            rc, out, err = await cli(env.config_path, "--json", "backup", "--dir", str(d), "--keep", "2")
            assert rc == 0, err
            names.append(out)
            await asyncio.sleep(1.05)              # the names carry the second
        left = sorted(p.name for p in d.iterdir())
        assert len(left) == 2 and all(n.startswith("gateway-hall-1-") for n in left)
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert os.path.basename(names[0].split('"path": "')[1].split('"')[0]) not in left
        rc, out, err = await cli(env.config_path, "backup")
        assert rc == 2 and "--out FILE or --dir DIR" in err
    finally:
        await asyncio.to_thread(env.broker.stop)
