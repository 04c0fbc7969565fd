"""flash.py provision / verify end to end: virtual board (real MicroPython 1.27 behind a pty),
a real aiohttp registration server, and mpremote as an independent client for read-back."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from flash_support import FLASH, MPREMOTE, TOKEN, RegistryServer, provision_args, run_cli

from flashtool import bundle as bundle_mod
from simulator.serial_device import VirtualSerialDevice


def provision_cmd(port: str, registry: RegistryServer, *extra: str) -> list[str]:
    return provision_args(port, registry.url, TOKEN, "--device-id", "auto", "--wifi", "hall-net",
                          "--wifi-password", "pw1", "--broker", "127.0.0.1:1883", *extra)


run = run_cli


def mpremote(port: str, *args: str) -> str:
    r = subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_provision_end_to_end_then_unchanged(vdev: VirtualSerialDevice, registry: RegistryServer) -> None:
    r = run(provision_cmd(vdev.path, registry))
    assert r.returncode == 0, r.stderr
    label = re.search(r"^LABEL hcp-0a1b2c3d4e5f  hall=hall-1  fw=(0\.2\.0\+[0-9a-f]{10})$", r.stdout, re.M)
    assert label, r.stdout
    assert len(registry.requests) == 1
    reg = registry.requests[0]
    assert reg["id"] == "hcp-0a1b2c3d4e5f" and re.fullmatch(r"[0-9a-f]{64}", reg["secret"])

    # mpremote, independently: config and every file's SHA-256 as the board computes it.
    cfg = json.loads(mpremote(vdev.path, "fs", "cat", ":/config.json"))
    assert cfg["device_id"] == "hcp-0a1b2c3d4e5f" and cfg["hall"] == "hall-1"
    assert cfg["secret"] == reg["secret"] and cfg["broker"]["password"] == reg["broker_password"]
    assert cfg["broker"] == {"host": "127.0.0.1", "port": 1883, "password": reg["broker_password"]}
    assert cfg["wifi"] == {"ssid": "hall-net", "password": "pw1"}
    expected = bundle_mod.build(compiled=True).hashes()
    assert "/firmware/hal/host.mpy" not in expected and "/main.py" in expected
    assert "/firmware/hal/hostnet.mpy" not in expected and "/protocol/cpython.mpy" not in expected
    # docstring-only package markers are not uploaded (MicroPython imports the directory anyway)
    assert "/protocol/__init__.mpy" not in expected and "/firmware/hal/__init__.mpy" not in expected
    assert "/firmware/__init__.mpy" not in expected and "/firmware/manifest.mpy" not in expected
    assert "/firmware/hal/unix.mpy" not in expected and "/firmware/version.mpy" in expected
    args: list[str] = []
    for path in sorted(expected):
        args += ["fs", "sha256sum", ":" + path, "+"]
    out = mpremote(vdev.path, *args[:-1]).split()
    got = [w for w in out if re.fullmatch(r"[0-9a-f]{64}", w)]
    assert got == [expected[p] for p in sorted(expected)]

    # The firmware on the board reports the label's identifier (hello `fw`): one source.
    out = mpremote(vdev.path, "exec", "import firmware.version as v; print('FW', v.VERSION)")
    assert "FW " + label.group(1) in out, out

    # Re-provisioning the unchanged board uploads nothing and keeps the secret.
    before = vdev.bytes_from_host
    r2 = run(provision_cmd(vdev.path, registry))
    assert r2.returncode == 0, r2.stderr
    assert "nothing to upload" in r2.stdout
    assert registry.requests[1]["secret"] == reg["secret"]
    assert vdev.bytes_from_host - before < 20_000  # helpers + hash queries only, no file data

    v = run(FLASH + ["verify", "--port", vdev.path])
    assert v.returncode == 0 and v.stdout.startswith("OK hcp-0a1b2c3d4e5f"), v.stdout + v.stderr


def test_verify_reports_drift(vdev: VirtualSerialDevice, registry: RegistryServer, tmp_path: Path) -> None:
    assert run(provision_cmd(vdev.path, registry)).returncode == 0
    evil = tmp_path / "ids.mpy"
    evil.write_bytes(b"tampered")
    mpremote(
        vdev.path,
        "fs",
        "cp",
        str(evil),
        ":/protocol/ids.mpy",
        "+",
        "fs",
        "cp",
        str(evil),
        ":/firmware/extra.py",
    )
    v = run(FLASH + ["verify", "--port", vdev.path])
    assert v.returncode == 1
    assert "changed  /protocol/ids.mpy" in v.stdout and "extra    /firmware/extra.py" in v.stdout
    assert "DRIFT" in v.stderr
    # Provisioning again repairs it: the stale .py (it would shadow a .mpy) goes too.
    assert run(provision_cmd(vdev.path, registry)).returncode == 0
    assert run(FLASH + ["verify", "--port", vdev.path]).returncode == 0


def test_config_drift_and_rotation(
    vdev: VirtualSerialDevice, registry: RegistryServer, tmp_path: Path
) -> None:
    assert run(provision_cmd(vdev.path, registry)).returncode == 0
    cfg = json.loads(mpremote(vdev.path, "fs", "cat", ":/config.json"))
    cfg["broker"]["host"] = "10.0.0.9"
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    mpremote(vdev.path, "fs", "cp", str(f), ":/config.json")
    v = run(FLASH + ["verify", "--port", vdev.path])
    assert v.returncode == 1 and "identity keys" in v.stdout
    r = run(provision_cmd(vdev.path, registry, "--rotate-secrets"))
    assert r.returncode == 0, r.stderr
    assert registry.requests[-1]["secret"] != registry.requests[0]["secret"]
    cfg2 = json.loads(mpremote(vdev.path, "fs", "cat", ":/config.json"))
    assert cfg2["secret"] == registry.requests[-1]["secret"] and cfg2["broker"]["host"] == "127.0.0.1"


def test_source_mode_uploads_py(vdev: VirtualSerialDevice, registry: RegistryServer) -> None:
    r = run(provision_cmd(vdev.path, registry, "--source", "--device-id", "counter-7"))
    assert r.returncode == 0, r.stderr
    assert "LABEL counter-7 " in r.stdout and "warning: uploading .py sources" in r.stderr
    listing = mpremote(vdev.path, "fs", "ls", ":/protocol")
    assert "messages.py" in listing and ".mpy" not in listing
    out = mpremote(vdev.path, "exec", "import protocol.ids; print(protocol.ids.record_id('d', 1, 2))")
    assert out.strip() == "d:1:2"


def settled_bytes(vdev: VirtualSerialDevice, quiet_s: float = 0.3, limit_s: float = 10.0) -> int:
    """bytes_from_host once it has stopped changing: the pty relay thread counts what a
    finished mpremote wrote last (its raw-REPL exit) a moment later, under load."""
    deadline = time.monotonic() + limit_s
    last, since = vdev.bytes_from_host, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = vdev.bytes_from_host
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


def test_gateway_refusal_leaves_board_untouched(vdev: VirtualSerialDevice, registry: RegistryServer) -> None:
    registry.fail_with = 500
    r = run(provision_cmd(vdev.path, registry))
    assert r.returncode == 1 and "gateway refused the registration" in r.stderr
    assert "HTTP 500 injected: injected failure" in r.stderr  # the gateway's JSON error, readable
    names = {line.split()[-1] for line in mpremote(vdev.path, "fs", "ls", ":/").splitlines()[1:]}
    assert "main.py" not in names and "config.json" not in names  # nothing switched
    assert "main.py.hcpnew" in names  # staged only; removed by the next run
    bad_token = provision_cmd(vdev.path, registry)
    bad_token[bad_token.index(TOKEN)] = "wrong"
    registry.fail_with = None
    before = settled_bytes(vdev)
    r = run(bad_token)
    assert r.returncode == 1 and "refused the admin token (HTTP 401 unauthorized" in r.stderr
    assert vdev.bytes_from_host == before  # the token is checked before the port is opened
    r = run(provision_cmd(vdev.path, registry))
    assert r.returncode == 0, r.stderr
    assert run(FLASH + ["verify", "--port", vdev.path]).returncode == 0
