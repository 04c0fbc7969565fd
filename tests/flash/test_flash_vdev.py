"""The virtual serial board itself: plain raw REPL fallback, errno numbers, watchdog."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from flash_support import MPREMOTE, TOKEN, RegistryServer

from flashtool.commands import ProvisionOptions, QuietConsole, run_provision, run_verify
from flashtool.errors import DeviceError
from flashtool.link import Link
from simulator.serial_device import VirtualSerialDevice


def test_provision_over_plain_raw_repl(tmp_path: Path, registry: RegistryServer) -> None:
    with VirtualSerialDevice(uid="0000000000aa", state_dir=tmp_path, raw_paste=False) as dev:
        opts = ProvisionOptions(dev.path, "hall-1", "auto", "w", "", "127.0.0.1", registry.url, TOKEN)
        res = run_provision(opts, QuietConsole())
        assert res.device_id == "hcp-0000000000aa" and res.uploaded
        assert run_verify(dev.path).drift == []


def test_errno_numbers_are_micropythons(vdev: VirtualSerialDevice) -> None:
    with Link(vdev.path) as link:
        link.enter_raw()
        got = link.eval(
            "r = []\n"
            "for f, a in ((os.stat, ('/nope',)), (os.mkdir, ('/tmp',)), (open, ('/nope/x', 'w'))):\n"
            "    try:\n        f(*a)\n    except OSError as e:\n        r.append(e.args[0])\n"
            "import errno\nprint(repr((r, errno.ENOENT, errno.EEXIST)))"
        )
    assert got == ([2, 17, 2], 2, 17)
    r = subprocess.run(
        [MPREMOTE, "connect", vdev.path, "fs", "cat", ":/nope"], capture_output=True, text=True
    )
    assert r.returncode == 1 and "No such file or directory" in r.stdout + r.stderr


def test_watchdog_resets_a_runaway_exec(tmp_path: Path) -> None:
    with VirtualSerialDevice(uid="0000000000bb", state_dir=tmp_path, exec_timeout=1.0) as dev:
        with Link(dev.path, timeout=3.0) as link:
            link.enter_raw()
            link.exec("open('/kept', 'w').write('x')")
            with pytest.raises(DeviceError, match="WatchdogReset"):
                link.exec("open('/lost', 'w').write('y')\nwhile True:\n    pass", timeout=3.0)
            link.enter_raw()  # helpers are gone after the reset: define them again
            assert link.eval("print(repr((_hcp_exists('/kept'), _hcp_exists('/lost'))))") == (True, False)
        assert any("watchdog" in line for line in dev.log)
