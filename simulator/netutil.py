"""Small loopback networking helpers shared by the broker runner, the demo and the tests."""

from __future__ import annotations

import socket
import subprocess
import time


class ProcessExited(RuntimeError):
    """The process we were waiting for died before its port opened."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"process exited with code {returncode} before its port opened")
        self.returncode = returncode


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago.

    The kernel picks it (bind to port 0); there is an unavoidable race until the caller binds it,
    which callers that own the server can handle by retrying with a new port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(
    host: str,
    port: int,
    deadline: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.01,
) -> None:
    """Block until host:port accepts connections.

    ``deadline`` is an absolute ``time.monotonic()`` value so that callers can share one budget
    across several waits. Raises ProcessExited as soon as ``proc`` has died (no point waiting out
    the deadline for a server that crashed on its config) and TimeoutError past the deadline.
    """
    while True:
        if proc is not None and proc.poll() is not None:
            raise ProcessExited(proc.returncode)
        if port_open(host, port, timeout=max(0.05, min(0.5, deadline - time.monotonic()))):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} before the deadline")
        time.sleep(interval)
