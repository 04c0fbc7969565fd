"""Start-up refuses a store that is not ours or is damaged (issue 14 item 7): one line, exit 1,
no traceback; an empty file or a missing table is never taken for a fresh store outside
`hcp-gateway init`. Each case on the real `python -m gateway serve` and in-process."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from harness.store import execute

from gateway.store import open_store
from gateway.store.errors import StoreUnusable

REPO = Path(__file__).resolve().parents[2]


async def _good_store(path: Path) -> None:
    s = await open_store(path)
    await s.close()


def _config(tmp: Path, db: Path) -> Path:
    p = tmp / "gw.toml"
    p.write_text('[store]\npath = "%s"\n[mqtt]\nport = 1\n' % db)
    return p


def _damage(kind: str, db: Path) -> None:
    if kind == "truncated":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
        for ext in ("-wal", "-shm"):
            Path(str(db) + ext).unlink(missing_ok=True)
    elif kind == "garbage_header":
        data = bytearray(db.read_bytes())
        data[:16] = b"NOT A DATABASE!!"
        db.write_bytes(bytes(data))
    elif kind == "directory":
        for p in (db, Path(str(db) + "-wal"), Path(str(db) + "-shm")):
            p.unlink(missing_ok=True)
        db.mkdir()
    elif kind == "zero_bytes":
        for ext in ("-wal", "-shm"):
            Path(str(db) + ext).unlink(missing_ok=True)
        db.write_bytes(b"")
    elif kind == "read_only_file":
        db.chmod(stat.S_IRUSR | stat.S_IRGRP)
    elif kind == "missing_table":
        execute(db, "DROP TABLE leases")
    elif kind == "not_ours":
        for ext in ("", "-wal", "-shm"):
            Path(str(db) + ext).unlink(missing_ok=True)
        execute(db, "CREATE TABLE something_else (x INTEGER)")
    elif kind == "missing":
        for ext in ("", "-wal", "-shm"):
            Path(str(db) + ext).unlink(missing_ok=True)


CASES = {
    "truncated": "damaged|not a SQLite|malformed",
    "garbage_header": "not a SQLite database",
    "directory": "is a directory",
    "zero_bytes": "empty file",
    "read_only_file": "read-only",
    "missing_table": "table leases is missing",
    "not_ours": "not a gateway store",
    "missing": "does not exist",
}


@pytest.mark.parametrize("kind", list(CASES))
def test_serve_refuses_with_one_line(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "gw" / "gateway.db"
    asyncio.run(_good_store(db))
    _damage(kind, db)
    before = sorted(os.listdir(db.parent))
    proc = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(_config(tmp_path, db))],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("gateway: ")]
    assert len(lines) == 1, proc.stderr
    assert re.search(CASES[kind], lines[0]), lines[0]
    if kind in ("zero_bytes", "missing"):
        assert sorted(os.listdir(db.parent)) == before   # nothing created in its place


@pytest.mark.parametrize("kind", ["zero_bytes", "missing_table", "not_ours"])
async def test_init_does_not_take_a_damaged_store_for_a_fresh_one(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "gw" / "gateway.db"
    await _good_store(db)
    _damage(kind, db)
    with pytest.raises(StoreUnusable):
        await open_store(db, create=True)


async def test_new_store_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "gw" / "gateway.db"
    s = await open_store(db)
    try:
        await s.write(lambda tx: tx.devices.upsert("d", "ab" * 32, None, 0))
        for p in (db, Path(str(db) + "-wal"), Path(str(db) + "-shm")):
            if p.exists():
                assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))
    finally:
        await s.close()


async def test_postgres_store_not_ours_is_refused(request: pytest.FixtureRequest) -> None:
    from harness.store import BACKEND
    if BACKEND != "postgresql":
        pytest.skip("the PostgreSQL pass of the suite covers this")
    server = request.getfixturevalue("pg_server")
    url = server.fresh_database(migrated=False)
    execute(url, "CREATE TABLE something_else (x INTEGER)")
    with pytest.raises(StoreUnusable, match="not a gateway store"):
        await open_store(url, create=False)
    empty = server.fresh_database(migrated=False)
    with pytest.raises(StoreUnusable, match="not a gateway store"):
        await open_store(empty, create=False)   # an empty database is not a fresh store here
    missing = server.fresh_database()
    execute(missing, "DROP TABLE leases")
    with pytest.raises(StoreUnusable, match="table leases is missing"):
        await open_store(missing, create=False)


def _serve(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(cfg)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_serve_refuses_a_config_with_secrets_everyone_may_read(tmp_path: Path) -> None:
    db = tmp_path / "gw" / "gateway.db"
    asyncio.run(_good_store(db))
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[store]\npath = "%s"\n[mqtt]\nport = 1\npassword = "s3cret-pw"\n'
                   '[http]\nadmin_token = "tok-0123456789abcdef"\n' % db)
    cfg.chmod(0o644)
    proc = _serve(cfg)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("gateway: ")]
    assert lines == ["gateway: config error: config file %s holds secrets (mqtt.password, http.admin_token)"
                     " and is readable by everyone (mode 0644); run: chmod 600 %s" % (cfg, cfg)], proc.stderr
    assert "s3cret" not in proc.stderr and "Traceback" not in proc.stderr
    # Readable by its group only (root:hcp 0640): allowed; so is 0644 without secrets.
    from gateway.config import check_private, load_config
    cfg.chmod(0o640)
    check_private(load_config(cfg))
    cfg.write_text('[store]\npath = "%s"\n[mqtt]\nport = 1\n' % db)
    cfg.chmod(0o644)
    check_private(load_config(cfg))


def test_serve_refuses_a_store_file_everyone_may_read(tmp_path: Path) -> None:
    db = tmp_path / "gw" / "gateway.db"
    asyncio.run(_good_store(db))
    db.chmod(0o644)
    proc = _serve(_config(tmp_path, db))
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("gateway: ")]
    assert lines == ["gateway: store error: store file %s holds the devices' secrets and is readable by"
                     " everyone (mode 0644); run: chmod 600 %s" % (db, db)], proc.stderr
    assert "Traceback" not in proc.stderr
