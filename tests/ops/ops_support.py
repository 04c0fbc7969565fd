"""A hall as the install sets it up, for the operations tests: mosquitto with dynamic security
and a TLS listener (the hall CA of `hcp-gateway tls init`), the gateway's config with TLS to
the broker and HTTPS, its store (SQLite or PostgreSQL) with devices registered, the gateway
process (not started), and the CLI run as a subprocess without blocking the test's loop."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from gw_support import GW_CLIENT_ID, GW_PASSWORD, TestDevice, _register_all
from harness.store import is_pg

from gateway import tls
from simulator.broker import Mosquitto, standard_acl
from simulator.gateway_proc import GatewayProcess, write_config
from simulator.netutil import free_port

HCP_GATEWAY = [sys.executable, "-m", "gateway.cli"]
ADMIN_TOKEN = "ops-admin-token-" + "a" * 16
WINDOW_TOKEN = "ops-window-token-" + "w" * 16
ALWAYS_OPEN = '[hall]\nid = "hall-ops"\ntimezone = "Asia/Shanghai"\nopening_hours = ["00:00-24:00"]\n' \
              'opening_days = [1, 2, 3, 4, 5, 6, 7]\n'


@dataclass
class Hall:
    tmp: Path
    broker: Mosquitto
    store_url: str
    config_path: Path
    gateway: GatewayProcess
    devices: dict[str, tuple[str, str]]
    pki: Path

    def device(self, device_id: str) -> TestDevice:
        secret, pw = self.devices[device_id]
        return TestDevice(device_id, secret, pw, self.broker.host, self.broker.port)

    def stop(self) -> None:
        self.gateway.terminate()
        self.broker.stop()

    def set_config(self, text: str) -> None:
        self.config_path.write_text(text)
        os.chmod(self.config_path, 0o600)


def make_hall(tmp: Path, store_url: str, device_ids: tuple[str, ...] = ("dev-a", "dev-b"),
              extra: str = "", cert_days: int = 3650) -> Hall:
    pki = tmp / "tls"
    tls.init(pki, ["gateway.hall.local"], days=cert_days)
    devices = {d: (secrets.token_hex(32), "pw-" + d) for d in device_ids}
    # The gateway's own accounts come from `hcp-gateway broker init`, as on a hall server; the
    # runner adds the devices' (what registering them through the gateway would create).
    broker = Mosquitto(tmp / "mosquitto", port=free_port(), users={d: pw for d, (_, pw) in devices.items()},
                       acl=standard_acl(), tls_files=(pki / tls.SERVER_CERT, pki / tls.SERVER_KEY))
    broker.tls_port = free_port()   # both ports known before the config is written
    gw = tmp / "gw"
    gw.mkdir(parents=True, exist_ok=True)
    url = store_url if is_pg(store_url) else str(gw / "gateway.db")
    _run_in_thread(_register_all(url, devices))   # its own loop: callers may be inside one
    http = ('[http]\nhost = "127.0.0.1"\nport = %d\nadmin_token = "%s"\nwindow_token = "%s"\n'
            'tls_cert = "%s"\ntls_key = "%s"\n' % (free_port(), ADMIN_TOKEN, WINDOW_TOKEN,
                                                   pki / tls.SERVER_CERT, pki / tls.SERVER_KEY))
    cfg = write_config(gw / "gateway.toml", mqtt_port=broker.tls_port, mqtt_password=GW_PASSWORD, db_path=url,
                       client_id=GW_CLIENT_ID, broker_toml=broker.gateway_broker_toml(),
                       extra="\n" + ALWAYS_OPEN + "\n" + http + "\n" + extra)
    cfg.write_text(cfg.read_text().replace("[store]", 'tls_ca = "%s"\n\n[store]' % (pki / tls.CA_CERT), 1))
    os.chmod(cfg, 0o600)
    out = subprocess.run([*HCP_GATEWAY, "--config", str(cfg), "broker", "init", str(broker.dynsec_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    broker.start()
    return Hall(tmp, broker, url, cfg, GatewayProcess(cfg), devices, pki)


def _run_in_thread(coro: Any) -> Any:
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


async def cli(config: Path, *args: str, limit_s: float = 120.0,
              env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`hcp-gateway --config CONFIG ARGS...` as a subprocess; the test's loop keeps running
    (a platform stand-in or webhook receiver in it can answer)."""
    proc = await asyncio.create_subprocess_exec(
        *HCP_GATEWAY, "--config", str(config), *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("hcp-gateway %s did not finish within %.0f s" % (" ".join(args), limit_s)) \
            from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def doctor(config: Path, *args: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """rc, {check: (status, detail)}, and the text output of the same run's lines."""
    rc, out, err = await cli(config, "doctor", "--json", *args)
    assert "Traceback" not in err, err
    data = json.loads(out)
    assert data["ok"] == (rc == 0), (rc, out)
    checks = {c["name"]: (c["status"], c["detail"]) for c in data["checks"]}
    return rc, checks, out


class WebhookReceiver:
    """A real HTTP server taking the notifier's POSTs."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d/hook" % self.port

    async def _post(self, request: web.Request) -> web.Response:
        self.received.append(json.loads(await request.read()))
        self.headers.append(dict(request.headers))
        return web.Response(text="ok")

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._post)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def kinds(self) -> list[str]:
        return [n["kind"] for n in self.received]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [n for n in self.received if n["kind"] == kind]

    def notify_toml(self) -> str:
        return ('[notify]\n[[notify.webhook]]\nname = "duty"\nurl = "%s"\nattempts = 2\nbackoff_s = 0.1\n'
                % self.url)
