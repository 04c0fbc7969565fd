"""hcp-sim's conventions (shared with hcp-gateway and flash.py) and its device and platform
commands: -h and --version, --json, exit 0/1/2, times with their zone; `hcp-sim device` runs one
real MicroPython device from a flash directory against a real mosquitto, driven on stdin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.broker import Mosquitto
from simulator.vdevice import write_config

HCP_SIM = [sys.executable, "-m", "simulator.cli"]
REPO = Path(__file__).resolve().parents[2]
ZONED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def run(*args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*HCP_SIM, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                       cwd=REPO)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r


def test_help_version_usage() -> None:
    r = run("--version")
    assert r.returncode == 0 and re.match(r"hcp-sim \S+ \(firmware 0\.2\.0\)$", r.stdout.strip())
    for cmd in ("hall", "demo", "device", "platform", "serial-device"):
        r = run(cmd, "-h")
        assert r.returncode == 0 and "--json" in r.stdout, cmd
    assert run("hall", "--devices", "0").returncode == 2
    assert run("no-such").returncode == 2


def test_platform_ready_line_json() -> None:
    p = subprocess.Popen([*HCP_SIM, "platform", "--port", "0", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert p.stdout is not None
        doc = json.loads(p.stdout.readline())
        assert doc["ready"] is True and doc["url"].startswith("http://127.0.0.1:") and ZONED.match(doc["at"])
    finally:
        p.terminate()
        p.wait(10)
    assert p.returncode == 0


@pytest.mark.timeout(120)
def test_device_micropython_from_a_flash_directory(tmp_path: Path, broker: Mosquitto) -> None:
    flash = tmp_path / "flash"
    write_config(flash, "dev-a", "hall-1", "ab" * 32, (broker.host, broker.port, "pa"), None, 60, 8, 60, 30)
    p = subprocess.Popen([*HCP_SIM, "device", "--dir", str(flash), "--json"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdin is not None and p.stdout is not None
    events = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ev = json.loads(p.stdout.readline())
        events.append(ev)
        assert ZONED.match(ev["at"]), ev
        if ev["event"] == "state" and ev["online"]:
            break
    assert events[0]["event"] == "booted" and events[0]["fw"].startswith("0.2.0+")
    p.stdin.write("press 0\nheap\nquit\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    rest = [json.loads(line) for line in out.splitlines()]
    press = next(e for e in rest if e["event"] == "press")
    # Not paired to a window (no gateway here): journaled as an unpaired press, refused signal.
    assert press["kind"] == "unpaired" and press["record"].startswith("dev-a:1:") and not press["accepted"]
    heap = next(e for e in rest if e["event"] == "heap")
    assert 0 < heap["firmware"] < 40 * 1024
    assert (flash / "data").is_dir()


def test_hall_json_result(tmp_path: Path) -> None:
    r = run("hall", "--devices", "2", "--minutes", "0.5", "--speed", "10", "--no-push", "--json",
            "--workdir", str(tmp_path / "w"), timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["lost"] == 0 and doc["doubled"] == 0 and ZONED.match(doc["finished_at"])
