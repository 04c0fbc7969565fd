"""flash.py's conventions (shared with hcp-gateway and hcp-sim) and boards whose firmware is frozen
into their image: -h and --version on every command, --json, exit 0/1/2, a one-line hint instead
of a traceback outside the venv; the frozen firmware's identifier read off a real MicroPython (the
32-bit unix port with firmware/manifest.py frozen in), and a provision plan that uploads the
config only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flash_support import FLASH, REPO, TOKEN, RegistryServer, provision_args, run_cli

from flashtool import bundle, fwid, provision
from simulator import unixport
from simulator.serial_device import VirtualSerialDevice

HELPERS = (REPO / "flashtool" / "device_code" / "repl_helpers.py").read_text()
COMMANDS = ("ports", "firmware", "provision", "verify", "monitor")


def test_help_version_and_usage_exit_codes() -> None:
    r = run_cli(FLASH + ["--version"])
    assert r.returncode == 0 and r.stdout.strip() == "flash.py (firmware %s)" % fwid.release(REPO)
    for cmd in COMMANDS:
        r = run_cli(FLASH + [cmd, "-h"])
        assert r.returncode == 0 and "--json" in r.stdout, (cmd, r.stdout)
    r = run_cli(FLASH + ["verify"])                       # --port missing: usage
    assert r.returncode == 2 and "--port" in r.stderr
    r = run_cli(FLASH + ["no-such-command"])
    assert r.returncode == 2


def test_outside_the_venv_one_line_hint() -> None:
    """python3 flash.py with a Python that lacks click: a hint, not a ModuleNotFoundError."""
    r = subprocess.run([sys.executable, "-S", "-I", str(REPO / "flash.py"), "ports"], capture_output=True,
                       text=True, timeout=30, cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert "error: flash.py needs the project's Python packages" in r.stderr
    assert ".venv/bin/python" in r.stderr


def test_json_failures_and_ports() -> None:
    r = run_cli(FLASH + ["verify", "--port", "/dev/ttyHCP-missing", "--json"])
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and "no such serial port" in doc["message"]
    r = run_cli(FLASH + ["ports", "--json"])
    assert r.returncode == 0 and isinstance(json.loads(r.stdout)["ports"], list)


def test_provision_and_verify_json(vdev: VirtualSerialDevice, registry: RegistryServer) -> None:
    r = run_cli(provision_args(vdev.path, registry.url, TOKEN, "--wifi", "w", "--broker", "127.0.0.1",
                               "--json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)                           # stdout holds the one JSON object
    assert doc["ok"] and doc["device_id"] == "hcp-0a1b2c3d4e5f" and doc["fw"] == bundle.build(True).fw
    assert doc["label"] == "LABEL hcp-0a1b2c3d4e5f  hall=hall-1  fw=%s" % doc["fw"]
    r = run_cli(FLASH + ["verify", "--port", vdev.path, "--json"])
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)
    assert v == {"ok": True, "device_id": "hcp-0a1b2c3d4e5f", "fw": doc["fw"], "frozen": False,
                 "files": v["files"], "drift": []}


def _info(build: str) -> dict[str, object]:
    r = unixport.run_unix(HELPERS + "\n_hcp_info()\n", build=build, cwd=Path("/tmp"))
    assert r.returncode == 0, r.stderr
    out: dict[str, object] = eval(r.stdout.strip().splitlines()[-1])  # noqa: S307 - a literal from our helper
    return out


def test_frozen_firmware_version_read_off_a_micropython_board() -> None:
    """The helper flash.py runs on a board reports the frozen firmware's identifier: the one
    firmware/manifest.py froze (unix HAL included), and None on an image without the firmware."""
    assert _info("frozen")["frozen_fw"] == fwid.fw_id(REPO, bundle.sources(unix=True))
    assert _info("mpy")["frozen_fw"] is None


def test_frozen_board_plan_uploads_the_config_only() -> None:
    """A frozen board gets config, boot.py and main.py; an old .mpy set on its flash is removed
    (it would shadow the frozen modules: '' comes before '.frozen' on sys.path)."""
    b = bundle.frozen("0.2.0+0123456789")
    stale = {"/firmware/app.mpy": "x" * 64, "/protocol/messages.mpy": "y" * 64, "/main.py": "z" * 64}
    cfg = {"device_id": "hcp-1", "hall": "h", "secret": "0" * 64, "wifi": {}, "broker": {}}
    plan = provision.plan(b, provision.DeviceState(stale, None, None), cfg)
    assert sorted(plan.upload) == ["/boot.py", "/config.json", "/main.py"]
    assert plan.delete == ["/firmware/app.mpy", "/protocol/messages.mpy"]
    assert plan.fw == "0.2.0+0123456789" and json.loads(plan.manifest)["fw"] == plan.fw
