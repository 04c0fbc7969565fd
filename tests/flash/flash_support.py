"""Test support for flash.py: a real aiohttp stand-in for the gateway's device registration.

It runs in its own thread and event loop on 127.0.0.1, checks the admin token and the body
like the gateway contract says (docs/architecture.md section 3), answers errors in the
gateway's JSON shape {"error", "message"}, and records each request.  The happy path runs
against the real gateway (test_flash_gateway_e2e.py); this stand-in stays for failure
injection (`fail_with`) that the real gateway cannot be made to produce on demand.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from simulator.netutil import free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
FLASH = [sys.executable, str(REPO / "flash.py")]
MPREMOTE = str(Path(sys.executable).parent / "mpremote")


def provision_args(port: str, gateway_url: str, token: str, *options: str) -> list[str]:
    """`flash.py provision` for one board of hall-1; each test adds the options it exercises."""
    return FLASH + ["provision", "--port", port, "--hall", "hall-1",
                    "--gateway-url", gateway_url, "--gateway-token", token, *options]


def run_cli(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a CLI from the repo root; whatever the outcome, a user never sees a traceback."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return r

TOKEN = "admin-test-token"
ID_RE = re.compile(r"^[a-z0-9-]{1,32}$")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class RegistryServer:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[dict[str, Any]] = []
        self.devices: dict[str, dict[str, Any]] = {}
        self.fail_with: int | None = None
        self.access_checks = 0  # GET /api/v1/bindings: flash.py's token check
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stopped = asyncio.Event()

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "unauthorized", "bad token for this endpoint")
        return None

    async def _bindings(self, request: web.Request) -> web.Response:
        self.access_checks += 1
        return self._refused(request) or web.json_response({"bindings": []})

    async def _handle(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if self.fail_with:
            return _error(self.fail_with, "injected", "injected failure")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad_json", "body is not valid JSON")
        if not (
            isinstance(body, dict)
            and isinstance(body.get("id"), str)
            and ID_RE.match(body["id"])
            and isinstance(body.get("secret"), str)
            and re.fullmatch(r"[0-9a-f]{64}", body["secret"])
            and isinstance(body.get("broker_password"), str)
            and body["broker_password"]
        ):
            return _error(400, "bad_registration", "bad body")
        self.requests.append(body)
        created = body["id"] not in self.devices
        self.devices[body["id"]] = body
        return web.json_response({"id": body["id"]}, status=201 if created else 200)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/devices", self._handle)
        app.router.add_get("/api/v1/bindings", self._bindings)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        await self._stopped.wait()
        await runner.cleanup()

    def start(self) -> RegistryServer:
        self._thread.start()
        wait_port("127.0.0.1", self.port, time.monotonic() + 10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)
