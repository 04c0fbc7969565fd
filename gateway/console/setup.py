"""setup_console: the console's pages, static files and middleware on the API's aiohttp app."""

from __future__ import annotations

from aiohttp import web

from gateway.console import complaints, district, orgpages
from gateway.console.pages import ROUTES
from gateway.console.settings import ConsoleSettings
from gateway.console.web import (
    CONSOLE_KEY,
    STATIC,
    AddressThrottle,
    ConsoleDeps,
    console_middleware,
    healthz,
    login_page,
    login_post,
    logout,
    setup_templates,
)

__all__ = ["ConsoleDeps", "ConsoleSettings", "setup_console"]  # re-exported for gateway.api


def setup_console(app: web.Application, deps: ConsoleDeps) -> None:
    deps.throttle = AddressThrottle(deps.settings.address_failures, deps.settings.lockout_s)
    app[CONSOLE_KEY] = deps
    setup_templates(app)
    app.middlewares.append(console_middleware)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.router.add_route("GET", "/login", login_page)
    app.router.add_route("POST", "/login", login_post)
    app.router.add_route("POST", "/logout", logout)
    app.router.add_route("GET", "/healthz", healthz)
    for method, path, handler in ROUTES + complaints.ROUTES + district.ROUTES + orgpages.ROUTES:
        app.router.add_route(method, path, handler)
