"""The gateway's TOML configuration, parsed once into typed, frozen sections.

Sections this module owns: [mqtt], [store], [broker], [hall], [devices], [ingest], [time].
Every other subsystem ([http], [uplink], ...) reads its own section from `Config.raw`,
so adding a subsystem never needs a change here. Relative paths are resolved against
the directory of the config file, so a config and its data can move together.
"""

from __future__ import annotations

import datetime as dt
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The config file is missing, not TOML, or has a bad value; the message says which."""


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = "gateway"
    password: str = ""
    # Fixed id + clean_session=False: the broker keeps our QoS 1 subscription and queues
    # what arrives while the gateway is down.
    client_id: str = "hcp-gateway"
    keepalive_s: int = 30
    # -- hardening (issue 14): TLS to the broker. Set: connect with TLS and trust only this
    # CA (the hall CA of `hcp-gateway tls init`); the broker's certificate must name `host`.
    tls_ca: Path | None = None


@dataclass(frozen=True)
class StoreConfig:
    path: Path


@dataclass(frozen=True)
class BrokerConfig:
    """Where device broker passwords go and which mosquitto to SIGHUP. Both optional."""

    password_file: Path | None = None
    pid_file: Path | None = None
    passwd_command: str = "mosquitto_passwd"
    # -- hardening (issue 14): device accounts through mosquitto's dynamic security plugin.
    # dynsec = true: registration creates/updates the device's account (tied to its own
    # client id) over $CONTROL/dynamic-security/v1 with this control account, on the broker
    # of [mqtt] (host, port, tls_ca). One control account (and client id) per gateway
    # instance; both are reserved: no device may be registered under them.
    dynsec: bool = False
    control_username: str = "hcp-gateway-ctl"
    control_password: str = ""
    control_client_id: str = "hcp-gateway-ctl"

    @property
    def reserved_names(self) -> tuple[str, ...]:
        return (self.control_username, self.control_client_id) if self.dynsec else ()


@dataclass(frozen=True)
class OpeningRange:
    start_min: int  # minutes after local midnight, inclusive
    end_min: int    # exclusive


@dataclass(frozen=True)
class HallConfig:
    id: str = "hall-1"
    area_code: str = ""
    timezone: str = "Asia/Shanghai"
    opening_hours: tuple[OpeningRange, ...] = (OpeningRange(8 * 60 + 30, 17 * 60 + 30),)
    opening_days: tuple[int, ...] = (1, 2, 3, 4, 5)  # ISO weekdays, 1 = Monday

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def is_open(self, epoch_ms: int) -> bool:
        """Whether the hall is open at this UTC instant (by its local opening hours)."""
        try:
            local = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=self.tz)
        except (OverflowError, ValueError, OSError):
            return False  # outside datetime's years 1..9999: certainly not in opening hours
        if local.isoweekday() not in self.opening_days:
            return False
        minute = local.hour * 60 + local.minute
        return any(r.start_min <= minute < r.end_min for r in self.opening_hours)


@dataclass(frozen=True)
class DevicesConfig:
    silent_after_s: int = 600       # no message for this long -> flagged silent
    health_check_s: int = 60        # how often the health task looks


@dataclass(frozen=True)
class IngestConfig:
    batch_ms: int = 5               # group-commit window after the first queued record
    batch_max: int = 500            # records per transaction at most
    rejection_log_s: float = 10.0   # at most one log line per reason per this interval


# ---- [time]: which device times the gateway believes (issue 14, hardening) -----------------

@dataclass(frozen=True)
class TimeWindowConfig:
    """A press is believed if its time lies in [arrival - max_age_days, arrival + max_future_s];
    a device uptime (hello/hb up, treq/rec u) if it is at most max_uptime_days. Outside, the
    time is not used: the message is counted (`bad_time`), the record stored at its arrival
    time, flagged `bad_time` and credited to nobody."""

    max_future_s: int = 600           # device clock ahead of the gateway's (synced: seconds)
    max_age_days: int = 366           # journal kept offline this long at most
    max_uptime_days: int = 3660       # ten years without a reboot

    @property
    def max_uptime_ms(self) -> int:
        return self.max_uptime_days * 86_400_000

    def believable(self, pressed_ms: int, arrival_ms: int) -> bool:
        earliest = arrival_ms - self.max_age_days * 86_400_000
        return earliest <= pressed_ms <= arrival_ms + self.max_future_s * 1000


@dataclass(frozen=True)
class Config:
    path: Path | None
    mqtt: MqttConfig
    store: StoreConfig
    broker: BrokerConfig
    hall: HallConfig
    devices: DevicesConfig
    ingest: IngestConfig
    raw: dict[str, Any] = field(default_factory=dict)
    time: TimeWindowConfig = field(default_factory=TimeWindowConfig)


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    return parse_config(raw, base_dir=p.resolve().parent, path=p.resolve())


def parse_config(raw: dict[str, Any], base_dir: Path, path: Path | None = None) -> Config:
    mqtt = _section(raw, "mqtt")
    store = _section(raw, "store")
    broker = _section(raw, "broker")
    hall = _section(raw, "hall")
    devices = _section(raw, "devices")
    ingest = _section(raw, "ingest")
    times = _section(raw, "time")
    if "path" not in store:
        raise ConfigError("[store] path is required")
    if broker.get("dynsec") is True and not broker.get("control_password"):
        raise ConfigError("[broker] dynsec = true needs control_password (the gateway's dynsec account)")
    return Config(
        path=path,
        mqtt=MqttConfig(
            host=_str(mqtt, "mqtt", "host", "127.0.0.1"),
            port=_int(mqtt, "mqtt", "port", 1883, 1, 65535),
            username=_str(mqtt, "mqtt", "username", "gateway"),
            password=_str(mqtt, "mqtt", "password", ""),
            client_id=_str(mqtt, "mqtt", "client_id", "hcp-gateway"),
            keepalive_s=_int(mqtt, "mqtt", "keepalive_s", 30, 5, 3600),
            tls_ca=_path(mqtt, "mqtt", "tls_ca", base_dir),
        ),
        store=StoreConfig(path=_path(store, "store", "path", base_dir) or base_dir / "gateway.db"),
        broker=BrokerConfig(
            password_file=_path(broker, "broker", "password_file", base_dir),
            pid_file=_path(broker, "broker", "pid_file", base_dir),
            passwd_command=_str(broker, "broker", "passwd_command", "mosquitto_passwd"),
            dynsec=_bool(broker, "broker", "dynsec", False),
            control_username=_str(broker, "broker", "control_username", "hcp-gateway-ctl"),
            control_password=_str(broker, "broker", "control_password", ""),
            control_client_id=_str(broker, "broker", "control_client_id", "hcp-gateway-ctl"),
        ),
        hall=_hall(hall),
        devices=DevicesConfig(
            silent_after_s=_int(devices, "devices", "silent_after_s", 600, 1, 10**7),
            health_check_s=_int(devices, "devices", "health_check_s", 60, 1, 86400),
        ),
        ingest=IngestConfig(
            batch_ms=_int(ingest, "ingest", "batch_ms", 5, 0, 10**6),
            batch_max=_int(ingest, "ingest", "batch_max", 500, 1, 100000),
            rejection_log_s=float(_int(ingest, "ingest", "rejection_log_s", 10, 0, 86400)),
        ),
        raw=raw,
        time=TimeWindowConfig(
            max_future_s=_int(times, "time", "max_future_s", 600, 0, 86400),
            max_age_days=_int(times, "time", "max_age_days", 366, 1, 3660),
            max_uptime_days=_int(times, "time", "max_uptime_days", 3660, 1, 36600),
        ),
    )


def _hall(sec: dict[str, Any]) -> HallConfig:
    tz = _str(sec, "hall", "timezone", "Asia/Shanghai")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"[hall] timezone {tz!r} is not a known time zone") from None
    hours_raw = sec.get("opening_hours", ["08:30-17:30"])
    if not isinstance(hours_raw, list) or not all(isinstance(h, str) for h in hours_raw):
        raise ConfigError('[hall] opening_hours must be a list of "HH:MM-HH:MM" strings')
    days = sec.get("opening_days", [1, 2, 3, 4, 5])
    if not isinstance(days, list) or not all(type(d) is int and 1 <= d <= 7 for d in days):
        raise ConfigError("[hall] opening_days must be a list of ISO weekdays 1..7")
    return HallConfig(
        id=_str(sec, "hall", "id", "hall-1"),
        area_code=_str(sec, "hall", "area_code", ""),
        timezone=tz,
        opening_hours=tuple(_opening_range(h) for h in hours_raw),
        opening_days=tuple(days),
    )


def _opening_range(text: str) -> OpeningRange:
    try:
        a, b = text.split("-")
        start, end = _hhmm(a), _hhmm(b)
    except ValueError:
        raise ConfigError(f'[hall] opening_hours entry {text!r} is not "HH:MM-HH:MM"') from None
    if end <= start:
        raise ConfigError(f"[hall] opening_hours entry {text!r} ends before it starts")
    return OpeningRange(start, end)


def _hhmm(text: str) -> int:
    h, m = text.strip().split(":")
    hour, minute = int(h), int(m)
    if not (0 <= hour <= 24 and 0 <= minute < 60) or hour * 60 + minute > 24 * 60:
        raise ValueError(text)
    return hour * 60 + minute


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    sec = raw.get(name, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"[{name}] must be a table")
    return sec


def _str(sec: dict[str, Any], name: str, key: str, default: str) -> str:
    v = sec.get(key, default)
    if not isinstance(v, str):
        raise ConfigError(f"[{name}] {key} must be a string")
    return v


def _bool(sec: dict[str, Any], name: str, key: str, default: bool) -> bool:
    v = sec.get(key, default)
    if type(v) is not bool:
        raise ConfigError(f"[{name}] {key} must be true or false")
    return v


def _int(sec: dict[str, Any], name: str, key: str, default: int, lo: int, hi: int) -> int:
    v = sec.get(key, default)
    if type(v) is not int:
        raise ConfigError(f"[{name}] {key} must be an integer")
    if not lo <= v <= hi:
        raise ConfigError(f"[{name}] {key} must be in {lo}..{hi}, got {v}")
    return v


def _path(sec: dict[str, Any], name: str, key: str, base_dir: Path) -> Path | None:
    v = sec.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise ConfigError(f"[{name}] {key} must be a non-empty path string")
    p = Path(v).expanduser()
    return p if p.is_absolute() else base_dir / p
