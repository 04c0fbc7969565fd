"""The [http] config section: where the admin/invitation API listens and its two tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"    # loopback by default: the window system runs on the hall server
    port: int = 8080
    window_token: str = ""     # the window system (综合受理系统): invitations only
    admin_token: str = ""      # hall admin tools: devices, bindings (and invitations)
    enabled: bool = False       # default: on when a token is configured (no token, no use)
    # -- hardening (issue 14): wrong-token throttle per client address, HTTPS --
    auth_fail_limit: int = 20       # wrong tokens from one address within the window ...
    auth_fail_window_s: int = 60    # ... before it gets 429 until they age out
    tls_cert: Path | None = None    # PEM server certificate (chain): HTTPS when set with tls_key
    tls_key: Path | None = None     # its PEM private key (must be 0600)

    @classmethod
    def from_raw(cls, raw: dict[str, Any], base_dir: Path | None = None) -> HttpSettings:
        """base_dir: where relative tls_cert/tls_key paths start (the config file's directory)."""
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
        limit = sec.get("auth_fail_limit", 20)
        window = sec.get("auth_fail_window_s", 60)
        if type(limit) is not int or not 1 <= limit <= 100000:
            raise ConfigError("[http] auth_fail_limit must be an integer in 1..100000")
        if type(window) is not int or not 1 <= window <= 86400:
            raise ConfigError("[http] auth_fail_window_s must be an integer in 1..86400")
        tls: dict[str, Path | None] = {}
        for key in ("tls_cert", "tls_key"):
            v = sec.get(key)
            if v is not None and (not isinstance(v, str) or not v):
                raise ConfigError("[http] %s must be a non-empty path string" % key)
            tls[key] = None if v is None else _resolve(v, base_dir)
        if (tls["tls_cert"] is None) != (tls["tls_key"] is None):
            raise ConfigError("[http] tls_cert and tls_key go together (both or neither)")
        return cls(host=host, port=port, enabled=enabled, window_token=tokens["window_token"],
                   admin_token=tokens["admin_token"], auth_fail_limit=limit, auth_fail_window_s=window,
                   tls_cert=tls["tls_cert"], tls_key=tls["tls_key"])

    @classmethod
    def from_config(cls, cfg: Config) -> HttpSettings:
        return cls.from_raw(cfg.raw, cfg.path.parent if cfg.path is not None else None)

    @property
    def https(self) -> bool:
        return self.tls_cert is not None

    @property
    def base_url(self) -> str:
        return "%s://%s:%d" % ("https" if self.https else "http", self.host, self.port)


def _resolve(value: str, base_dir: Path | None) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p
