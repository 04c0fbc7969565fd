"""Every failure is one clear line and a non-zero exit: bad port, silent board, device error."""

from __future__ import annotations

import os
import subprocess
import time
import tty
from pathlib import Path

from flash_support import FLASH, MPREMOTE, REPO, TOKEN, RegistryServer, provision_args

from simulator.serial_device import VirtualSerialDevice


def provision(port: str, url: str, *extra: str) -> list[str]:
    return provision_args(port, url, TOKEN, "--wifi", "w", "--broker", "127.0.0.1",
                          "--timeout", "0.5", *extra)


def one_line_failure(cmd: list[str], expect: str) -> None:
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and expect in errors[0], r.stderr
    assert time.monotonic() - t0 < 20


def test_bad_port_path(registry: RegistryServer) -> None:
    for sub in (["verify", "--port", "/dev/ttyHCP-missing"], ["monitor", "--port", "/dev/ttyHCP-missing"]):
        one_line_failure(FLASH + sub, "no such serial port")
    one_line_failure(provision("/dev/ttyHCP-missing", registry.url), "no such serial port")
    one_line_failure(provision("/etc", registry.url), "cannot open port")


def test_silent_device(registry: RegistryServer) -> None:
    master, slave = os.openpty()  # a port with nothing behind it
    try:
        tty.setraw(slave)
        path = os.ttyname(slave)
        one_line_failure(provision(path, registry.url), "no MicroPython REPL answered")
        one_line_failure(
            FLASH + ["verify", "--port", path, "--timeout", "0.5"], "no MicroPython REPL answered"
        )
    finally:
        os.close(master)
        os.close(slave)


def test_device_error_is_one_line(
    vdev: VirtualSerialDevice, registry: RegistryServer, tmp_path: Path
) -> None:
    # A board where /firmware is a file: creating the directory fails on the device.
    blocker = tmp_path / "firmware"
    blocker.write_text("not a directory")
    r = subprocess.run(
        [MPREMOTE, "connect", vdev.path, "fs", "cp", str(blocker), ":/firmware"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    one_line_failure(provision(vdev.path, registry.url, "--timeout", "3"), "device error: OSError")


def test_bad_options(vdev: VirtualSerialDevice, registry: RegistryServer) -> None:
    one_line_failure(provision(vdev.path, registry.url, "--broker", "host:notaport"), "HOST or HOST:PORT")
    one_line_failure(provision(vdev.path, registry.url, "--device-id", "Bad_ID"), "must match")
    one_line_failure(provision(vdev.path, "ftp://x", "--timeout", "3"), "expected http://")
    one_line_failure(provision(vdev.path, "http://127.0.0.1:9", "--timeout", "3"), "unreachable")
