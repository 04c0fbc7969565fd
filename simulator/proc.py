"""Stopping the processes our runners start (broker, gateway, platform stand-in)."""

from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM first (mosquitto writes its persistence db, the gateway drains), SIGKILL if the
    process does not go away within ``timeout``. Idempotent."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
