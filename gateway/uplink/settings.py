"""The [uplink] section of gateway.toml, validated once into a typed value.

Everything that differs between provinces (field names, grade direction, channel code,
time format, envelope, which record kinds are uploadable) is configuration here, never a
constant in the adapters. A bad value raises UplinkConfigError with a message naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import ConfigError
from protocol import grades

ADAPTERS = ("default", "gbt39046")
KIND_POLICIES = ("skip", "upload")
UNRATED_POLICIES = ("skip", "flagged")
ENVELOPES = ("json", "base64")
GRADE_TABLES = {"provincial": grades.PROVINCIAL_CODE, "gbt39046": grades.GBT39046_CODE}


class UplinkConfigError(ConfigError, ValueError):
    """A bad [uplink] setting; the message names the key and what is allowed."""


@dataclass(frozen=True)
class UplinkSettings:
    enabled: bool = True
    url: str = "http://127.0.0.1:8480"          # platform base URL
    batch_path: str = "/api/v1/ratings/batch"
    token_path: str = "/api/v1/auth/token"
    query_path: str = "/api/v1/ratings/query"   # optional: list what the platform holds (reconcile)
    # Where the platform takes corrections of ratings it holds (exclusions, late 差评 reasons),
    # for adapters that have the capability; "" = the province offers none (listed for manual action).
    corrections_path: str = "/api/v1/ratings/corrections"
    app_key: str = "hall-1"
    app_secret: str = "change-me"
    adapter: str = "default"
    timezone: str = "Asia/Shanghai"             # hall local time: assessTime and --date
    area_code: str = "000000"
    pf: int = 5                                 # 评价渠道: 5 = other hall terminal (inferred)
    qr_pf: int = 3                              # 评价渠道 of ratings given on the QR page: 3 = QR code
    tag_version: str = "1"
    # Per-adapter overrides; None = the adapter's own default.
    fields: dict[str, str] = field(default_factory=dict)
    grade_codes: str | None = None              # "provincial" (5 = 非常满意) | "gbt39046" (1 = 非常满意)
    time_format: str | None = None              # strftime format of the rating time
    envelope: str | None = None                 # "json" | "base64" (records Base64-wrapped)
    require_project_no: bool = True
    dept_code_pattern: str = "[0-9A-Z]{18}"     # 18-character unified social credit code
    # What is uploadable. Extras (a second press on one invitation) are never ratings.
    unrated: str = "flagged"                    # unrated invitations as flagged default ratings
    default_grade: str = "s"                    # grade of a system default rating
    # An invitation closed without any device record (superseded, expired) is due for its
    # default rating this long after it closed: time for a press made just before the close
    # to arrive, so the case is not given a default and then its real rating.
    default_after_s: int = 0
    walkup: str = "skip"
    unpaired: str = "skip"
    # Client behaviour.
    batch_size: int = 500
    max_batches_per_second: float = 5.0
    request_timeout_s: float = 30.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    max_attempts: int = 8                       # per batch and run; then the run gives up
    # Scheduling.
    daily_at: str = "01:30"
    realtime_minutes: int = 0                   # 0 = daily only; N = also push every N minutes
    retry_minutes: int = 15                     # after a run that could not reach the platform

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def daily_hm(self) -> tuple[int, int]:
        h, m = self.daily_at.split(":")
        return int(h), int(m)

    @property
    def invitation_defaults(self) -> bool:
        """Invitations closed without a device record go up as "inv:<id>" default ratings."""
        return self.unrated == "flagged"

    def uploadable_kinds(self) -> tuple[str, ...]:
        kinds = ["rated"]
        if self.unrated == "flagged":
            kinds.append("unrated")
        if self.walkup == "upload":
            kinds.append("walkup")
        if self.unpaired == "upload":
            kinds.append("unpaired")
        return tuple(kinds)


def _section(cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Accept the core's Config (with .raw), a whole TOML dict, or None."""
    raw = getattr(cfg, "raw", cfg) or {}
    if not isinstance(raw, dict):
        raise UplinkConfigError("config: expected a TOML table")
    up = raw.get("uplink", {})
    hall = raw.get("hall", {})
    if not isinstance(up, dict) or not isinstance(hall, dict):
        raise UplinkConfigError("[uplink] and [hall] must be tables")
    return up, hall


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UplinkConfigError("uplink.%s = %r: expected one of %s" % (key, value, ", ".join(allowed)))


def load_settings(cfg: Any) -> UplinkSettings:
    up, hall = _section(cfg)
    base = UplinkSettings()
    known = set(UplinkSettings.__dataclass_fields__)
    unknown = sorted(set(up) - known)
    if unknown:
        raise UplinkConfigError("unknown [uplink] keys: %s" % ", ".join(unknown))
    values: dict[str, Any] = {}
    # The hall's own time zone and area code are the defaults; [uplink] may override.
    for key in ("timezone", "area_code"):
        if hall.get(key) and key not in up:
            values[key] = hall[key]
    for key, value in up.items():
        default = getattr(base, key)
        if default is not None and not isinstance(default, dict):
            want: type = type(default)
            if want is float and type(value) is int:
                value = float(value)
            if type(value) is not want:
                raise UplinkConfigError("uplink.%s: expected %s, got %r" % (key, want.__name__, value))
        values[key] = value
    s = UplinkSettings(**{**base.__dict__, **values})
    validate(s)
    return s


def validate(s: UplinkSettings) -> None:
    _choice("adapter", s.adapter, ADAPTERS)
    _choice("unrated", s.unrated, UNRATED_POLICIES)
    _choice("walkup", s.walkup, KIND_POLICIES)
    _choice("unpaired", s.unpaired, KIND_POLICIES)
    _choice("default_grade", s.default_grade, grades.GRADES)
    if s.envelope is not None:
        _choice("envelope", s.envelope, ENVELOPES)
    if s.grade_codes is not None:
        _choice("grade_codes", s.grade_codes, tuple(GRADE_TABLES))
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise UplinkConfigError("timezone %r is not a known IANA zone" % s.timezone) from e
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", s.daily_at):
        raise UplinkConfigError("uplink.daily_at = %r: expected HH:MM" % s.daily_at)
    if not 1 <= s.pf <= 7:
        raise UplinkConfigError("uplink.pf = %d: channel codes are 1..7" % s.pf)
    if not 1 <= s.qr_pf <= 7:
        raise UplinkConfigError("uplink.qr_pf = %d: channel codes are 1..7" % s.qr_pf)
    if not 1 <= s.batch_size <= 10000:
        raise UplinkConfigError("uplink.batch_size must be 1..10000")
    if s.max_batches_per_second <= 0:
        raise UplinkConfigError("uplink.max_batches_per_second must be > 0")
    if s.request_timeout_s <= 0 or s.backoff_base_s < 0 or s.backoff_max_s < s.backoff_base_s:
        raise UplinkConfigError("uplink timeouts/backoff: need request_timeout_s > 0, 0 <= base <= max")
    if s.max_attempts < 1 or s.realtime_minutes < 0 or s.retry_minutes < 1:
        raise UplinkConfigError("uplink: max_attempts >= 1, realtime_minutes >= 0, retry_minutes >= 1")
    if not 0 <= s.default_after_s <= 7 * 86400:
        raise UplinkConfigError("uplink.default_after_s must be 0..604800 (seconds after the close)")
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in s.fields.items()):
        raise UplinkConfigError("uplink.fields: a table of logical name = platform field name")
    needs_case = [k for k in ("walkup", "unpaired") if getattr(s, k) == "upload"]
    if needs_case and s.require_project_no:
        raise UplinkConfigError(
            "uplink.%s = \"upload\" sends records without a case number (projectNo); "
            "set require_project_no = false only if the province accepts that" % needs_case[0])
    if not s.url.startswith(("http://", "https://")):
        raise UplinkConfigError("uplink.url must be an http(s) URL")
