"""The [qr] config section (docs/qr.md): where phones reach the page, the key file, how long
links and forms live, the rate limits, and the plates' look ([qr.plate], gateway/qr/plate.py)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.config import Config, ConfigError
from gateway.sectioncheck import Section, SettingsError

if TYPE_CHECKING:  # the plate renderer (fonts, PDF) is imported only when a plate is made
    from gateway.qr.plate import PlateSettings


@dataclass(frozen=True)
class QrSettings:
    public_url: str                      # what phones open: the gateway or a proxy forwarding /q/
    key_file: Path
    hall_name: str = ""                  # shown on the page and the plates ("" = [hall] id)
    receipt_valid_min: int = 1440        # a receipt link rates its case for this long
    form_valid_min: int = 30             # a page's form may be sent this long after it was shown
    views_per_min: int = 60              # page views per client address and minute
    ratings_per_min: int = 10            # ratings sent per client address and minute
    token_ratings_per_min: int = 6       # ratings sent per plate or link and minute
    trusted_proxies: tuple[str, ...] = ()   # X-Forwarded-For is believed from these addresses
    plate: PlateSettings | None = None   # [qr.plate]; None = the defaults

    @property
    def base(self) -> str:
        return self.public_url.rstrip("/")

    @classmethod
    def from_config(cls, cfg: Config, base: Path | None = None) -> QrSettings | None:
        """None when there is no [qr] section (the channel is off). Relative paths are taken
        from base (the config file's directory)."""
        if "qr" not in cfg.raw:
            return None
        if base is None:
            base = cfg.path.parent if cfg.path is not None else Path.cwd()
        try:
            out = cls.from_mapping(cfg.raw["qr"], base_dir=base)
        except SettingsError as e:
            raise ConfigError(str(e)) from None
        comp = cfg.raw.get("complaints")
        if not isinstance(comp, dict) or not comp.get("tag_version"):
            raise ConfigError("[qr] needs the province's 差评 reason tags: set [complaints] tag_version and"
                              " tag_sets (the page asks every 差评 for its reasons from them)")
        return out

    @classmethod
    def from_mapping(cls, data: object, *, base_dir: Path) -> QrSettings:
        sec = Section("qr", data, base_dir=base_dir)
        url = sec.get_str("public_url", "", nonempty=True)
        if not sec.has("public_url"):
            sec.problem("public_url", "is required: the address phones open (https://... of the gateway"
                                      " or of a proxy forwarding /q/)")
        elif url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                sec.problem("public_url", "must be an http(s) URL without query or fragment, e.g."
                                          " https://pj.example.gov.cn")
        key_file = sec.get_path("key_file", base_dir / "qr.key") or base_dir / "qr.key"
        proxies = sec.get_str_list("trusted_proxies", ())
        for p in proxies:
            try:
                ipaddress.ip_address(p)
            except ValueError:
                sec.problem("trusted_proxies", "%r is not an IP address" % p)
        plate = None
        if sec.raw("plate") is not None:
            from gateway.qr.plate import PlateSettings
            try:
                plate = PlateSettings.from_mapping(sec.raw("plate"), base_dir=base_dir)
            except SettingsError as e:
                sec.problems.extend("[qr.plate] " + p for p in e.problems)
        s = cls(
            public_url=url,
            key_file=key_file,
            hall_name=sec.get_str("hall_name", ""),
            receipt_valid_min=sec.get_int("receipt_valid_min", 1440, 5, 60 * 24 * 30),
            form_valid_min=sec.get_int("form_valid_min", 30, 1, 24 * 60),
            views_per_min=sec.get_int("views_per_min", 60, 1, 100000),
            ratings_per_min=sec.get_int("ratings_per_min", 10, 1, 100000),
            token_ratings_per_min=sec.get_int("token_ratings_per_min", 6, 1, 100000),
            trusted_proxies=tuple(proxies),
            plate=plate,
        )
        sec.finish()
        return s
