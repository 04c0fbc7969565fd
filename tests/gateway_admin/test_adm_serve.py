"""`hcp-gateway serve` (the console script) starts the service with the HTTP API; a busy HTTP
port ends it with one clear line. Real mosquitto, real processes, loopback only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN

from simulator.broker import Mosquitto, standard_acl
from simulator.netutil import free_port

HCP_GATEWAY = Path(sys.executable).parent / "hcp-gateway"
pytestmark = pytest.mark.slow


def config(tmp: Path, mqtt_port: int, http_port: int, client_id: str, db: str = "gw.db") -> Path:
    p = tmp / ("%s.toml" % client_id)
    p.write_text(
        '[mqtt]\nhost = "127.0.0.1"\nport = %d\nusername = "gateway"\npassword = "gwpass"\nclient_id = "%s"\n'
        '[store]\npath = "%s"\n'
        '[http]\nhost = "127.0.0.1"\nport = %d\nwindow_token = "%s"\nadmin_token = "%s"\n'
        % (mqtt_port, client_id, tmp / db, http_port, WINDOW_TOKEN, ADMIN_TOKEN)
    )
    p.chmod(0o600)   # it holds secrets: serve refuses a config everyone may read
    # serve refuses a store that does not exist: `init` creates it, as the runbook says.
    subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(p), "init"], check=True,
                   capture_output=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    return p


def start_serve(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(HCP_GATEWAY), "--config", str(cfg), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def wait_line(proc: subprocess.Popen[bytes], log: Path, prefix: str, limit_s: float = 20.0) -> str | None:
    """The first log line starting with prefix; None if the process ended first."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            return None
        time.sleep(0.02)
    raise AssertionError("no %r line within %ss:\n%s" % (prefix, limit_s, log.read_text()))


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def test_serve_through_the_console_script(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "mq", users={"gateway": "gwpass"}, acl=standard_acl()) as broker:
        port = free_port()
        first = start_serve(config(tmp_path, broker.port, port, "gw-one"), tmp_path / "one.log")
        try:
            ready = wait_line(first, tmp_path / "one.log", "gateway ready ")
            assert ready is not None and "http=127.0.0.1:%d" % port in ready
            with urllib.request.urlopen("http://127.0.0.1:%d/api/openapi.json" % port, timeout=5) as r:
                assert "/api/v1/invitations" in json.loads(r.read())["paths"]
            # A second service on the same HTTP port: one clear line, non-zero exit, no traceback.
            # Its MQTT port is closed on purpose: cancelling the core's MQTT task in the instant
            # its CONNACK arrives can be lost on Python 3.11 (asyncio.wait_for, fixed in 3.12)
            # and hang the shutdown; that race is the core's (reported), not what this tests.
            second = start_serve(config(tmp_path, free_port(), port, "gw-two", "gw2.db"),
                                 tmp_path / "two.log")
            try:
                try:
                    second.wait(30)
                except subprocess.TimeoutExpired:
                    second.send_signal(signal.SIGABRT)  # faulthandler: where does it hang?
                    second.wait(10)
                    raise AssertionError((tmp_path / "two.log").read_text()) from None
                assert second.returncode != 0
            finally:
                stop(second)
            text = (tmp_path / "two.log").read_text()
            assert "Traceback" not in text
            assert any(
                line.startswith("gateway: ") and "cannot listen on 127.0.0.1:%d" % port in line
                for line in text.splitlines()
            ), text
        finally:
            assert stop(first) == 0


def test_second_instance_on_one_sqlite_store_is_refused(tmp_path: Path) -> None:
    """Two gateways on one SQLite file would fight over the client id and push twice: the
    second is refused at once with one line, the first keeps running."""
    with Mosquitto(tmp_path / "mq", users={"gateway": "gwpass"}, acl=standard_acl()) as broker:
        first = start_serve(config(tmp_path, broker.port, free_port(), "gw-one"), tmp_path / "one.log")
        try:
            assert wait_line(first, tmp_path / "one.log", "gateway ready ") is not None
            second = start_serve(config(tmp_path, broker.port, free_port(), "gw-two"), tmp_path / "two.log")
            try:
                second.wait(30)
            finally:
                stop(second)
            assert second.returncode == 1
            text = (tmp_path / "two.log").read_text()
            assert "Traceback" not in text
            lines = [ln for ln in text.splitlines() if ln.startswith("gateway: ")]
            assert len(lines) == 1 and "already serving store" in lines[0], text
            assert first.poll() is None
        finally:
            assert stop(first) == 0
