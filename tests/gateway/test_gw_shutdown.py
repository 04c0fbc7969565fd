"""Shutdown is bounded: a gateway whose subsystem fails at start exits promptly, every time.

The hang this guards against (issue 4): a subsystem failing at start (e.g. the HTTP API's
port is busy) while the MQTT task is still connecting. A single cancel of that task could be lost
(Python 3.11's asyncio.wait_for inside aiomqtt drops a cancel that arrives together with
the broker's CONNACK), or aiomqtt's graceful disconnect could turn it into an MqttError and
a reconnect; the old shutdown then waited forever. Real mosquitto, real SQLite, the real
HTTP API; loopback only.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gw_failing_subsystem
import pytest
from gw_support import GatewayEnv, make_env

from gateway import service
from gateway.config import load_config
from simulator.gateway_proc import REPO
from simulator.netutil import free_port

STARTS = 20
SWEEP_STEP_S = 0.0004  # 0 .. 7.6 ms
PROMPT_S = 4.0  # far above a normal failed start (~0.1 s), far below "hangs"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def _env_with_http(tmp: Path, port: int) -> GatewayEnv:
    extra = '[http]\nhost = "127.0.0.1"\nport = %d\nadmin_token = "adm-token-0123456789"\n' % port
    return make_env(tmp, ["dev-a"], extra_config=extra)


async def test_failed_subsystem_start_ends_serve_promptly_every_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real HTTP API starts, then a subsystem fails after a delay swept across the MQTT
    connect (ready in ~3 ms here): serve() must end promptly with that error every time,
    stop the API it had started (its port is free again) and leave no task behind."""
    http_port = free_port()
    env = _env_with_http(tmp_path, http_port)
    try:
        cfg = load_config(env.config_path)
        before = asyncio.all_tasks()
        for i in range(STARTS):
            gw_failing_subsystem.DELAY_S = i * SWEEP_STEP_S
            t0 = time.monotonic()
            run = asyncio.create_task(service.serve(cfg, extra=[gw_failing_subsystem.start]))
            done, _ = await asyncio.wait({run}, timeout=PROMPT_S)
            if not done:
                run.cancel()
                await asyncio.wait({run}, timeout=PROMPT_S)
                raise AssertionError(f"start {i + 1}: serve() still running {PROMPT_S:.0f}s after a "
                                     "subsystem failed to start")
            with pytest.raises(gw_failing_subsystem.SubsystemStartFailed):
                run.result()
            assert time.monotonic() - t0 < PROMPT_S
            # Nothing left behind: no MQTT loop reconnecting, no committer, no flush task ...
            await asyncio.sleep(0)
            left = {t for t in asyncio.all_tasks() - before if not t.done()}
            assert not left, f"start {i + 1}: tasks left running: {[t.get_name() for t in left]}"
            # ... and the API that had started was stopped: its port can be bound again.
            with socket.socket() as s:
                s.bind(("127.0.0.1", http_port))
    finally:
        env.broker.stop()


def test_failed_subsystem_start_ends_the_process_with_one_line(tmp_path: Path, busy_port: int) -> None:
    """The real `python -m gateway serve`, a few times: exit code 1, one line, no traceback."""
    env = _env_with_http(tmp_path, busy_port)
    try:
        for i in range(3):
            t0 = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "gateway", "serve", "--config", str(env.config_path),
                 "--log-level", "WARNING"],
                cwd=REPO, capture_output=True, text=True, timeout=30)
            elapsed = time.monotonic() - t0
            assert proc.returncode == 1, (i, proc.returncode, proc.stderr[-2000:])
            assert "Traceback" not in proc.stderr
            assert "gateway ready" not in proc.stdout
            errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("gateway: ")]
            assert len(errors) == 1 and str(busy_port) in errors[0], proc.stderr[-2000:]
            # Interpreter start and imports take ~1 s; a hang would hit the 30 s timeout.
            assert elapsed < 10, elapsed
    finally:
        env.broker.stop()
