"""The gateway's HTTP API: `start_http` serves the app of gateway.api.app over the services
gateway.service hands it (the store, the device service, the command sender)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway import tls
from gateway.api import guard
from gateway.api.app import make_app
from gateway.api.settings import HttpSettings
from gateway.bindings import SendCommand
from gateway.complaints import ComplaintService
from gateway.config import Config
from gateway.console.settings import ConsoleSettings
from gateway.devices import DeviceService
from gateway.store import Store

if TYPE_CHECKING:
    from gateway.qr.service import QrService

__all__ = ["make_app", "start_http", "ApiRunning"]


class ApiRunning:
    def __init__(self, label: str, runner: web.AppRunner | None) -> None:
        self.label = label
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def start_http(store: Store, cfg: Config, send_command: SendCommand, devices: DeviceService,
                     http: HttpSettings, complaints: ComplaintService | None = None,
                     qr: QrService | None = None) -> ApiRunning:
    console = ConsoleSettings.from_config(cfg).enabled
    if not http.enabled and not console and qr is None:
        # No token configured, no console, no QR page: nobody could use it, so do not listen at all.
        return ApiRunning("http=off", None)
    ssl_context = tls.server_context(http.tls_cert, http.tls_key) if http.https else None
    app = make_app(store, cfg, send_command, devices=devices, http=http, complaints=complaints, qr=qr)
    # logger: aiohttp logs every request its parser refuses with a traceback; the guard's
    # logger counts them and logs one line per interval instead.
    server_log, _ = guard.server_logger()
    runner = web.AppRunner(app, access_log=None, logger=server_log)
    await runner.setup()
    site = web.TCPSite(runner, http.host, http.port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise OSError(e.errno, "http API cannot listen on %s:%d: %s"
                      % (http.host, http.port, e.strerror)) from e
    port = http.port
    for addr in runner.addresses:  # the real port when [http] port = 0
        if isinstance(addr, tuple) and len(addr) >= 2:
            port = int(addr[1])
    return ApiRunning("%s=%s:%d%s" % ("https" if http.https else "http", http.host, port,
                                      " console=/" if console else ""), runner)
