"""The stand-alone stand-in process and the admin commands as an admin runs them:
`python -m simulator.platform`, push, rejections, requeue, reconcile (exit codes, output)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from up_support import Seeder, open_db

from gateway.uplink.reconcile import reconcile
from gateway.uplink.settings import UplinkSettings
from simulator.netutil import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "simulator.platform", "--port", str(port), "--adapter", "default",
                             "--db", str(tmp_path / "platform.sqlite")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", port, time.monotonic() + 15, proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("platform stand-in ready on http://127.0.0.1:%d adapter=default" % port)
        yield "http://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""


def admin(url: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url + path, data=data), timeout=10) as r:
        result: dict[str, object] = json.loads(r.read())
        return result


def write_config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[store]\npath = "gw.sqlite"\n[hall]\narea_code = "540102"\n'
                   '[uplink]\nurl = "%s"\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\nmax_attempts = 2\n'
                   'batch_size = 20\n' % url, encoding="utf-8")
    return cfg


def seed(db_path: Path) -> tuple[list[str], list[str]]:
    async def go() -> tuple[list[str], list[str]]:
        db = await open_db(db_path)
        s = Seeder(db)
        await s.device("hcp-dev1", "W01", "clerk01")
        good = await s.records("hcp-dev1", "2025-03-03", 30)
        bad = await s.records("hcp-dev1", "2025-03-03", 1, dept_code="BAD")
        good += await s.records("hcp-dev1", "2025-03-03", 10)
        await s.records("hcp-dev1", "2025-03-03", 2, kind="extra")
        await db.close()
        return good, bad
    return asyncio.run(go())


def hcp(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "gateway.uplink.commands", *args, "--config", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_push_rejections_requeue_reconcile(tmp_path: Path, standin: str) -> None:
    cfg = write_config(tmp_path, standin)
    good, bad = seed(tmp_path / "gw.sqlite")

    r = hcp(cfg, "reconcile", "--date", "2025-03-03")
    assert r.returncode == 1 and "not_delivered=41" in r.stdout

    r = hcp(cfg, "push", "--date", "2025-03-03")
    assert r.returncode == 1, r.stderr      # a record was refused: not everything delivered (issue 16)
    assert "40 accepted" in r.stdout and "1 rejected by the platform" in r.stdout
    assert admin(standin, "/admin/stats")["accepted"] == 40

    r = hcp(cfg, "uplink", "rejections")
    assert r.returncode == 1 and bad[0] in r.stdout and "bad_format" in r.stdout and "deptCode" in r.stdout

    r = hcp(cfg, "reconcile", "--date", "2025-03-03", "--json")
    assert r.returncode == 1
    res = json.loads(r.stdout)
    assert res["mismatch_counts"] == {"rejected": 1}
    assert res["uplink"]["acked"] == 40 and res["uplink"]["held"] == 2 and res["platform_held"] == 40
    assert res["devices"][0]["by_kind"] == {"rated": 41, "extra": 2}

    # The admin fixes the case data upstream and re-queues; the next push delivers it.
    import sqlite3
    with sqlite3.connect(tmp_path / "gw.sqlite") as c:
        c.execute("UPDATE invitations SET dept_code = '' WHERE record_id = ?", (bad[0],))
    r = hcp(cfg, "uplink", "requeue", bad[0])
    assert r.returncode == 0 and "1 record(s) re-queued" in r.stdout
    with sqlite3.connect(tmp_path / "gw.sqlite") as c:      # audited under the person, as in the console
        rows = c.execute("SELECT actor, detail_json FROM audit_log"
                         " WHERE action = 'uplink.requeue'").fetchall()
    assert len(rows) == 1 and rows[0][0].startswith("cli:") and bad[0] in rows[0][1], rows
    assert hcp(cfg, "push").returncode == 0

    r = hcp(cfg, "reconcile", "--date", "2025-03-03")
    assert r.returncode == 0, r.stdout
    assert "OK: no mismatch" in r.stdout and "holds 41 records" in r.stdout
    r = hcp(cfg, "uplink", "status")
    assert r.returncode == 0 and "acked=41" in r.stdout
    assert "+08:00" in r.stdout                # run times in the hall's zone, with it
    # The main CLI: `hcp-gateway --config X --json uplink ...`, the same exit-code rules.
    r = subprocess.run([PY, "-m", "gateway.cli", "--config", str(cfg), "--json", "uplink", "status"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["records"]["acked"] == 41, r.stderr
    r = subprocess.run([PY, "-m", "gateway.cli", "--config", str(cfg), "uplink", "requeue"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "name record ids" in r.stderr


def test_push_during_outage_exits_1_and_keeps_state(tmp_path: Path, standin: str) -> None:
    cfg = write_config(tmp_path, standin)
    seed(tmp_path / "gw.sqlite")
    admin(standin, "/admin/faults", {"outage": True})
    r = hcp(cfg, "push")
    assert r.returncode == 1 and "unavailable" in r.stdout
    admin(standin, "/admin/faults", {"outage": False})
    r = hcp(cfg, "push")
    # Delivered, but one seeded record has a bad dept code: the platform refuses it, exit 1.
    assert r.returncode == 1 and "40 accepted" in r.stdout and "1 rejected by the platform" in r.stdout


def test_bad_input_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[store]\npath = "gw.sqlite"\n[uplink]\npf = 12\n', encoding="utf-8")
    r = hcp(cfg, "push")
    assert r.returncode == 2 and "uplink.pf" in r.stderr and "Traceback" not in r.stderr
    r = hcp(cfg, "reconcile", "--date", "2025-13-01")
    assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([PY, "-m", "simulator.platform", "--adapter", "nope"], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr


async def test_reconcile_finds_gaps_backlog_and_platform_differences(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "gw.sqlite")
    s = Seeder(db)
    await s.device("hcp-dev1", "W01", "clerk01")
    ids = await s.records("hcp-dev1", "2025-03-03", 5)
    async with db.transaction() as c:
        await c.execute("DELETE FROM records WHERE record_id = ?", (ids[2],))   # never reached the store
        await c.execute("UPDATE devices SET journal_depth = 3 WHERE device_id = 'hcp-dev1'")
        await c.executemany("INSERT INTO uplink_items (record_id, status) VALUES (?, 'acked')",
                            [(i,) for i in (ids[0], ids[1], ids[3])])
    settings = UplinkSettings()
    res = await reconcile(db, settings, "2025-03-03", platform_ids=[ids[0], ids[3], "hcp-zzz:1:1"])
    await db.close()
    assert not res.ok
    assert res.mismatch_counts == {"seq_gap": 1, "device_backlog": 1, "not_delivered": 1,
                                   "platform_missing": 1, "platform_extra": 1}
    by_kind = {m.kind: m.record_id for m in res.mismatches}
    assert by_kind["seq_gap"] == ids[2] and by_kind["not_delivered"] == ids[4]
    assert by_kind["platform_missing"] == ids[1] and by_kind["platform_extra"] == "hcp-zzz:1:1"
    assert res.to_dict()["devices"][0]["missing_seq"] == 1


def test_reconcile_says_how_many_mismatches_it_did_not_list(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.uplink.commands import _print_reconcile
    from gateway.uplink.reconcile import MAX_LISTED, Mismatch, ReconcileResult

    res = ReconcileResult(date="2025-03-03", uplink={k: 0 for k in (
        "records", "uploadable", "acked", "rejected", "sent", "unsent", "held", "invitation_defaults",
        "covered", "held_invitations")})
    for i in range(MAX_LISTED + 7):
        res.add(Mismatch("seq_gap", "hcp-dev1", "hcp-dev1:1:%d" % i, "never reached the store"))
    res.add(Mismatch("rejected", "hcp-dev1", "hcp-dev1:2:1", "bad_format"))
    _print_reconcile(res)
    out = capsys.readouterr().out.splitlines()
    assert "MISMATCHES: rejected=1, seq_gap=%d" % (MAX_LISTED + 7) in out
    assert out[-1] == "  (7 more seq_gap not listed)"
