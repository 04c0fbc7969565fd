"""The [console] config section: the web console served by the gateway's HTTP server at `/`.

    [console]
    enabled = true            # default: on when the section is present
    title = "张店区政务服务中心"  # shown in the header
    idle_s = 1800             # a session ends after this long without a request
    max_age_s = 43200         # ... and this long after its login, whatever
    max_failures = 5          # failed logins in a row before the account is locked
    lockout_s = 300           # ... for this long
    address_failures = 20     # failed logins from one client address per lockout_s
    refresh_ms = 1000         # how often the dashboard asks for fresh figures
    page_size = 50            # rows per page in every list
Key types and ranges are checked by gateway.config.SCHEMA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.config import Config, ConfigError

if TYPE_CHECKING:
    from gateway.accounts import LoginRules


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = False
    title: str = "政务服务好差评"
    idle_s: int = 1800
    max_age_s: int = 12 * 3600
    max_failures: int = 5
    lockout_s: int = 300
    address_failures: int = 20
    refresh_ms: int = 1000
    page_size: int = 50

    @classmethod
    def from_config(cls, cfg: Config) -> ConsoleSettings:
        sec = cfg.raw.get("console")
        if sec is None:
            return cls()
        s = cls(enabled=sec.get("enabled", True), title=sec.get("title", cls.title),
                idle_s=sec.get("idle_s", cls.idle_s), max_age_s=sec.get("max_age_s", cls.max_age_s),
                max_failures=sec.get("max_failures", cls.max_failures),
                lockout_s=sec.get("lockout_s", cls.lockout_s),
                address_failures=sec.get("address_failures", cls.address_failures),
                refresh_ms=sec.get("refresh_ms", cls.refresh_ms),
                page_size=sec.get("page_size", cls.page_size))
        if s.idle_s > s.max_age_s:
            raise ConfigError("[console] idle_s (%d) must not exceed max_age_s (%d)"
                              % (s.idle_s, s.max_age_s))
        if not s.title.strip() or len(s.title) > 64:
            raise ConfigError("[console] title must be 1..64 characters")
        return s

    @property
    def rules(self) -> LoginRules:
        from gateway.accounts import LoginRules  # Argon2 only where accounts are used
        return LoginRules(idle_s=self.idle_s, max_age_s=self.max_age_s, max_failures=self.max_failures,
                          lockout_s=self.lockout_s)
