"""The [http] config section: where the admin/invitation API listens and its two tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config import ConfigError


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"    # loopback by default: the window system runs on the hall server
    port: int = 8080
    window_token: str = ""     # the window system (综合受理系统): invitations only
    admin_token: str = ""      # hall admin tools: devices, bindings (and invitations)
    enabled: bool = False       # default: on when a token is configured (no token, no use)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> HttpSettings:
        sec = raw.get("http", {})
        if not isinstance(sec, dict):
            raise ConfigError("[http] must be a table")
        host = sec.get("host", "127.0.0.1")
        port = sec.get("port", 8080)
        enabled = sec.get("enabled", bool(sec.get("window_token") or sec.get("admin_token")))
        if not isinstance(host, str) or not host:
            raise ConfigError("[http] host must be a non-empty string")
        if type(port) is not int or not 0 <= port <= 65535:
            raise ConfigError("[http] port must be an integer in 0..65535")
        if type(enabled) is not bool:
            raise ConfigError("[http] enabled must be true or false")
        tokens = {}
        for key in ("window_token", "admin_token"):
            v = sec.get(key, "")
            if not isinstance(v, str):
                raise ConfigError("[http] %s must be a string" % key)
            if v and len(v) < 16:
                raise ConfigError("[http] %s must be at least 16 characters" % key)
            tokens[key] = v
        return cls(host=host, port=port, enabled=enabled, **tokens)

    @property
    def base_url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)
