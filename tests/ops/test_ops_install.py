"""The install, as far as a container allows: `scripts/install.sh --root DIR` with the README's
own install command (a dry run into DIR: the code copied, its own venv from a non-editable pip
install, the config, TLS, the broker's accounts, the store, systemd units, logrotate, the tools
in DIR/usr/local/bin), then what it configured started as the units say (mosquitto and the
gateway from their ExecStart lines) and used as the docs say: a device registered and paired
with the installed tools, a simulated device (the real firmware on the host HAL, over the TLS
listener with the hall CA) whose rating reaches the store, `hcp-gateway doctor` passing, a test
alert through the webhook, the backup unit's command, and a second install (an upgrade) that
keeps the config. The units pass `systemd-analyze verify` (no warning) and its offline
security check; the logrotate file passes `logrotate -d`. Both store backends (PostgreSQL:
--store-url)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
from gw_support import wait_for
from harness.store import is_pg, query
from ops_support import WebhookReceiver

from simulator.netutil import wait_port
from simulator.proc import stop_process
from simulator.vdevice import VirtualDevice

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 900


def readme_install_command() -> list[str]:
    """The install command exactly as the README gives it (without sudo)."""
    for line in (REPO / "README.md").read_text().splitlines():
        line = line.strip()
        if line.startswith("sudo bash scripts/install.sh"):
            return shlex.split(line.split("#")[0])[1:]
    raise AssertionError("README.md gives no `sudo bash scripts/install.sh ...` command")


def unit_exec(unit: Path, key: str = "ExecStart") -> list[str]:
    for line in unit.read_text().splitlines():
        if line.startswith(key + "="):
            return shlex.split(line[len(key) + 1:])
    raise AssertionError("%s has no %s" % (unit, key))


def quiet_port() -> int:
    """A free port below the ephemeral range: the install writes it into configs a minute before
    anything listens on it, and ports the kernel hands out to outgoing connections (free_port's)
    may be taken by then."""
    import random
    import socket
    lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10000, min(lo, 30000))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


async def run(*cmd: str, env: dict[str, str] | None = None, limit_s: float = 120.0,
              cwd: Path | None = None) -> tuple[int, str, str]:
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL, stdout=pipe,
                                                stderr=pipe, env={**os.environ, **(env or {})}, cwd=cwd)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("%s did not finish within %.0f s" % (" ".join(cmd), limit_s)) from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _clean_env() -> dict[str, str]:
    """No trace of the repository's venv: the installed tools must stand on their own."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


async def test_install_into_a_root_and_run_the_hall(tmp_path: Path, store_url: str) -> None:
    root = tmp_path / "root"
    hook = await WebhookReceiver().start()
    ports = {"--mqtt-port": quiet_port(), "--mqtts-port": quiet_port(), "--http-port": quiet_port()}
    args = [*readme_install_command(), "--root", str(root), "--bind", "127.0.0.1", "--webhook", hook.url]
    for k, v in ports.items():
        args += [k, str(v)]
    if is_pg(store_url):
        args += ["--store-url", store_url]
    env = _clean_env()
    procs: list[subprocess.Popen[bytes]] = []
    dev: VirtualDevice | None = None
    try:
        rc, out, err = await run(*args, env=env, cwd=REPO, limit_s=INSTALL_TIMEOUT_S)
        assert rc == 0, out + err
        assert "Traceback" not in err
        where = "postgresql" if is_pg(store_url) else root / "var/lib/haochaping/gateway.db"
        assert "store %s ready" % where in out
        etc, bindir = root / "etc/haochaping", root / "usr/local/bin"
        cfg_path = etc / "gateway.toml"
        cfg = tomllib.loads(cfg_path.read_text())
        # files and modes: secrets readable by their owner (and the config by the service's group) only
        assert mode(cfg_path) == 0o640
        for key in (etc / "tls/ca.key", etc / "tls/server.key", etc / "tls/gateway.key",
                    etc / "mosquitto/server.key", root / "var/lib/hcp-mosquitto/dynsec.json",
                    etc / "secrets/webhook.url"):
            assert mode(key) == 0o600, key
        assert mode(root / "var/backups/haochaping") == 0o700
        assert mode(root / "var/lib/hcp-mosquitto") == 0o700
        if not is_pg(store_url):
            assert mode(root / "var/lib/haochaping/gateway.db") == 0o600
        for tool in ("hcp-gateway", "hcp-sim", "flash.py"):
            assert os.access(bindir / tool, os.X_OK), tool
        units = sorted((root / "etc/systemd/system").iterdir())
        assert [u.name for u in units] == ["hcp-backup.service", "hcp-backup.timer", "hcp-gateway.service",
                                           "hcp-mosquitto.service"]
        for name in ("hcp-gateway.service", "hcp-mosquitto.service"):
            text = (root / "etc/systemd/system" / name).read_text()
            for want in ("Restart=always", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                         "ReadWritePaths="):
                assert want in text, (name, want)

        # systemd: the units verify without a warning; the sandbox rates "OK" or better
        rc, out, err = await run("systemd-analyze", "verify", *map(str, units))
        assert rc == 0 and out.strip() == "" and err.strip() == "", out + err
        for name in ("hcp-gateway.service", "hcp-mosquitto.service"):
            rc, out, err = await run("systemd-analyze", "security", "--offline=true",
                                     str(root / "etc/systemd/system" / name))
            level = re.search(r"Overall exposure level for \S+: ([\d.]+)", out + err)
            assert level and float(level.group(1)) < 5.0, out + err
        logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
        rc, out, err = await run(logrotate, "-d", "-s", str(tmp_path / "logrotate.state"),
                                 str(root / "etc/logrotate.d/haochaping"))
        assert rc == 0 and "error" not in err.lower(), out + err

        # start what the install configured, as its units say
        mq_cmd = unit_exec(root / "etc/systemd/system/hcp-mosquitto.service")
        procs.append(await asyncio.to_thread(_start, mq_cmd, None, env))
        await asyncio.to_thread(wait_port, "127.0.0.1", ports["--mqtts-port"], _deadline(20), procs[0])
        gw_cmd = unit_exec(root / "etc/systemd/system/hcp-gateway.service")
        gw_log = tmp_path / "gateway.log"
        procs.append(await asyncio.to_thread(_start, gw_cmd, gw_log, env))
        await wait_for(lambda: "gateway ready " in gw_log.read_text(errors="replace")
                       or procs[1].poll() is not None, 30, "the gateway's ready line")
        assert procs[1].poll() is None, gw_log.read_text()
        assert "https=127.0.0.1:%d" % ports["--http-port"] in gw_log.read_text()

        # the hall admin's first steps with the installed tools (docs/operations.md)
        hcp = str(bindir / "hcp-gateway")
        secret, pw = secrets.token_hex(32), "dev-pw-" + secrets.token_hex(6)
        (tmp_path / "secret").write_text(secret + "\n")
        (tmp_path / "pw").write_text(pw + "\n")
        for step in (["devices", "add", "hcp-0a1b2c3d4e5f", "--secret-file", str(tmp_path / "secret"),
                      "--broker-password-file", str(tmp_path / "pw")],
                     ["windows", "add", "A07", "--dept", "11540100MB00000008", "--name", "市场监管 A07"],
                     ["staff", "add", "zhangsan", "--name", "张三"],
                     ["pair", "hcp-0a1b2c3d4e5f", "--window", "A07", "--staff", "zhangsan"]):
            rc, out, err = await run(hcp, *step, env=env)
            assert rc == 0 and "Traceback" not in err, (step, out, err)
        # a simulated device: the real firmware, TLS to the LAN listener with the hall CA
        dev = VirtualDevice("hcp-0a1b2c3d4e5f", tmp_path / "dev", secret, "127.0.0.1", ports["--mqtts-port"],
                            pw, hall=cfg["hall"]["id"], broker_ca=(etc / "tls/ca.pem").read_text())
        dev.provision()
        await dev.power_on()
        await wait_for(lambda: dev is not None and dev.online, 30, "the device online over TLS")
        press = await dev.press(0)
        await wait_for(lambda: dev is not None and dev.journal_depth() == 0, 30, "the rating acked")
        store = cfg["store"].get("url") or cfg["store"]["path"]
        rows = query(store, "SELECT record_id, window_id, staff_account FROM records")
        assert rows == [(press.record_id, "A07", "zhangsan")]

        # the doctor passes on it
        rc, out, err = await run(hcp, "doctor", env=env)
        assert rc == 0, out + err
        assert "ok    broker" in out and "ok    acl" in out and "all 1 registered devices" in out

        # alerts reach the webhook given to the install
        rc, out, err = await run(hcp, "alerts", "test", env=env)
        assert rc == 0 and hook.kinds() == ["alert.test"], out + err

        # the backup unit's command
        rc, out, err = await run(*unit_exec(root / "etc/systemd/system/hcp-backup.service"), env=env)
        assert rc == 0, err
        [backup] = list((root / "var/backups/haochaping").iterdir())
        assert mode(backup) == 0o600

        # the other tools on the PATH answer
        for tool in ("hcp-sim", "flash.py"):
            rc, out, err = await run(str(bindir / tool), "--help", env=env)
            assert rc == 0 and "Traceback" not in err, (tool, err)

        # an upgrade: the same command again keeps the config (its passwords are in use)
        before = cfg_path.read_text()
        rc, out, err = await run(*args, env=env, cwd=REPO, limit_s=INSTALL_TIMEOUT_S)
        assert rc == 0, out + err
        assert cfg_path.read_text() == before and "kept %s" % cfg_path in out
        # ... and refuses a broker port the kept config does not use (the gateway would not reach it)
        venv_python = str(root / "opt/haochaping/venv/bin/python")
        other = [a if a != str(ports["--mqtt-port"]) else str(quiet_port()) for a in args[2:]]
        rc, out, err = await run(venv_python, "-m", "gateway.deploy.install", *other, env=env)
        assert rc == 1 and "Traceback" not in err, out + err
        assert "has [mqtt] port %d but --mqtt-port is" % ports["--mqtt-port"] in err, err
        assert cfg_path.read_text() == before
    finally:
        if dev is not None:
            await dev.stop()
        for p in reversed(procs):
            await asyncio.to_thread(stop_process, p, 10.0)
        await hook.stop()


def _start(cmd: list[str], log: Path | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A unit's ExecStart as a process of the test (its output to log, or nowhere)."""
    with open(log or os.devnull, "wb") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)


def _deadline(s: float) -> float:
    import time
    return time.monotonic() + s


async def test_install_refuses_without_root_or_a_root_dir(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        rc, out, err = await run("bash", str(REPO / "scripts/install.sh"))
        assert rc == 2 and "run it as root" in err
    rc, out, err = await run("bash", str(REPO / "scripts/install.sh"), "--help")
    assert rc == 0 and "--root" in out and "--postgres" in out
