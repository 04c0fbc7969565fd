"""The gateway's TOML configuration: ONE declarative schema (`SCHEMA`), checked whole at load.

`load_config` (used by `serve`, `init` and every command) first checks the file against the
schema: an unknown section or key is refused with its name and a "did you mean" suggestion,
every value's type and range is checked, and ALL errors are reported at once (one line
each, in one ConfigError). Then each section's builder makes its typed object ([mqtt],
[store], [broker], [hall], [devices], [ingest], [time] here; [http], [uplink], [attribution],
[invitations], [report] by their owners, called from `_build_sections`), so a bad value
anywhere stops the start before anything is opened. Relative paths are resolved against
the directory of the config file. Adding a section: docs/architecture.md.
"""

from __future__ import annotations

import datetime as dt
import difflib
import tomllib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The config file is missing, not TOML, or has bad values; the message says which (one
    line per error)."""


# ---- the schema ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """One key of a section: its type ("str", "int", "number", "bool", "path", "list[str]",
    "list[int]", "table", "any"), an inclusive range for numbers, allowed values, and whether
    it holds a secret (never echoed in an error)."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    secret: bool = False


SCHEMA: dict[str, dict[str, Key]] = {
    "mqtt": {"host": Key("str"), "port": Key("int", 1, 65535), "username": Key("str"),
             "password": Key("str", secret=True), "client_id": Key("str"),
             "keepalive_s": Key("int", 5, 3600), "tls_ca": Key("path"),
             "session_expiry_s": Key("int", 60, 2**32 - 1), "shared_group": Key("str"),
             "protocol": Key("str", choices=("3.1.1", "5"))},
    "store": {"path": Key("path"), "url": Key("str", secret=True)},
    "broker": {"password_file": Key("path"), "pid_file": Key("path"), "passwd_command": Key("str"),
               "dynsec": Key("bool"), "control_username": Key("str"),
               "control_password": Key("str", secret=True), "control_client_id": Key("str")},
    "hall": {"id": Key("str"), "name": Key("str"), "area_code": Key("str"), "timezone": Key("str"),
             "opening_hours": Key("list[str]"), "opening_days": Key("list[int]")},
    # The district (issue 17): gateway/org.py, gateway/bulletin.py, gateway/supervision.py.
    "district": {"name": Key("str"), "area_code": Key("str")},
    "bulletin": {"issuer": Key("str"), "weights": Key("table"), "satisfied": Key("list[str]"),
                 "rate_denominator": Key("str", choices=("cases", "invited")),
                 "ratings": Key("str", choices=("uploaded", "stored")),
                 "rank_by": Key("str", choices=("score", "satisfaction", "rating_rate")),
                 "rate_without_base": Key("str", choices=("blank", "full"))},
    "supervision": {"min_invite_rate": Key("number", 0, 1), "min_cases": Key("int", 1, 10**6),
                    "min_events": Key("int", 1, 10**6),
                    "fast_press_s": Key("number", 0, 600), "late_entry_minutes": Key("int", 1, 60 * 24 * 366),
                    "linkage_limit_s": Key("int", 1, 86400 * 31), "silent_hours": Key("int", 1, 24 * 366),
                    "presence_every_s": Key("int", 5, 3600), "evidence_rows": Key("int", 1, 100000)},
    "export": {"font": Key("str"), "title_font": Key("str"), "paper": Key("str", choices=("A4", "A3")),
               "landscape": Key("bool"), "csv_bom": Key("bool"), "freeze_first_column": Key("bool")},
    "devices": {"silent_after_s": Key("int", 1, 10**7), "health_check_s": Key("int", 1, 86400)},
    "ingest": {"batch_ms": Key("int", 0, 10**6), "batch_max": Key("int", 1, 100000),
               "rejection_log_s": Key("int", 0, 86400), "device_rate": Key("number", 0.1, 100000),
               "device_burst": Key("int", 1, 10**6), "queue_max": Key("int", 10, 10**7),
               "queue_max_bytes": Key("int", 65536, 2**34), "pending_max": Key("int", 1, 10**7),
               "quench_s": Key("int", 0, 86400), "quench_drops_per_s": Key("int", 1, 10**7)},
    "time": {"max_future_s": Key("int", 0, 86400), "max_age_days": Key("int", 1, 3660),
             "max_uptime_days": Key("int", 1, 36600)},
    "http": {"host": Key("str"), "port": Key("int", 0, 65535), "enabled": Key("bool"),
             "window_token": Key("str", secret=True), "admin_token": Key("str", secret=True),
             "auth_fail_limit": Key("int", 1, 100000), "auth_fail_window_s": Key("int", 1, 86400),
             "tls_cert": Key("path"), "tls_key": Key("path")},
    "attribution": {"burst_presses": Key("int", 1, 1000), "burst_window_s": Key("int", 1, 3600),
                    "clock_slack_ms": Key("int", 0, 600000)},
    "invitations": {"default_countdown_s": Key("int", 5, 600), "grace_s": Key("int", 0, 86400),
                    "default_applicant_type": Key("int", 1, 2), "default_task_code": Key("str"),
                    "default_task_name": Key("str")},
    "report": {"weights": Key("table")},
    "uplink": {k: Key(t) for k, t in (
        ("enabled", "bool"), ("url", "str"), ("batch_path", "str"), ("token_path", "str"),
        ("query_path", "str"), ("app_key", "str"), ("adapter", "str"), ("timezone", "str"),
        ("area_code", "str"), ("pf", "int"), ("tag_version", "str"), ("fields", "table"),
        ("grade_codes", "str"), ("time_format", "str"), ("envelope", "str"),
        ("require_project_no", "bool"), ("dept_code_pattern", "str"), ("unrated", "str"),
        ("default_grade", "str"), ("default_after_s", "int"), ("walkup", "str"), ("unpaired", "str"),
        ("batch_size", "int"), ("max_batches_per_second", "number"), ("request_timeout_s", "number"),
        ("backoff_base_s", "number"), ("backoff_max_s", "number"), ("max_attempts", "int"),
        ("daily_at", "str"), ("realtime_minutes", "int"), ("retry_minutes", "int"),
        ("corrections_path", "str"), ("qr_pf", "int"))}
    | {"app_secret": Key("str", secret=True)},
    # Sections whose nested tables their owners check (gateway/workdays.py, gateway/notify.py,
    # gateway/complaints.py): the top-level keys are declared here, so an unknown one is refused
    # here like any other; the builders below check values and nested tables.
    "calendar": {"local_required": Key("bool"), "local_holidays": Key("any"),
                 "extra_working_days": Key("any"), "national": Key("table")},
    "notify": {"queue_size": Key("int", 1, 1_000_000), "timezone": Key("str"), "webhook": Key("any"),
               "email": Key("any")},
    "complaints": {"tag_version": Key("str"), "tag_sets": Key("table"), "contact_days": Key("int", 1, 60),
                   "rectify_days": Key("int", 1, 60), "complex_days": Key("int", 1, 120),
                   "appeal_days": Key("int", 1, 60), "review_days": Key("int", 1, 60),
                   "follow_up_days": Key("int", 1, 60), "due_soon_h": Key("int", 0, 720),
                   "check_every_s": Key("number", 0.05, 3600)},
    # The QR channel (gateway/qr/settings.py; [qr.plate] is checked by gateway/qr/plate.py).
    "qr": {"public_url": Key("str"), "key_file": Key("path"), "hall_name": Key("str"),
           "receipt_valid_min": Key("int", 5, 43200), "form_valid_min": Key("int", 1, 1440),
           "views_per_min": Key("int", 1, 100000), "ratings_per_min": Key("int", 1, 100000),
           "token_ratings_per_min": Key("int", 1, 100000), "trusted_proxies": Key("list[str]"),
           "plate": Key("table")},
    "console": {"enabled": Key("bool"), "title": Key("str"), "idle_s": Key("int", 2, 86400),
                "max_age_s": Key("int", 60, 30 * 86400), "max_failures": Key("int", 1, 100),
                "lockout_s": Key("int", 1, 86400), "address_failures": Key("int", 1, 10000),
                "refresh_ms": Key("int", 200, 60000), "page_size": Key("int", 10, 500)},
    # Operations (issue 20): gateway/alerts.py and the service's log format (gateway/oplog.py).
    "alerts": {"enabled": Key("bool"), "check_every_s": Key("number", 0.05, 3600),
               "silent_after_s": Key("int", 1, 10**7), "journal_depth": Key("int", 1, 10**6),
               "journal_clear": Key("int", 0, 10**6), "push_failures": Key("int", 1, 1000),
               "rejections": Key("int", 1, 10**9), "disk_paths": Key("list[str]"),
               "disk_min_free_pct": Key("number", 0, 100), "disk_min_days": Key("int", 0, 36500)},
    "log": {"format": Key("str", choices=("text", "json")),
            "level": Key("str", choices=("DEBUG", "INFO", "WARNING", "ERROR"))},
}


def add_section(name: str, keys: dict[str, Key]) -> None:
    """Declare a section (a subsystem's own [name]): its keys become known to the check."""
    if name in SCHEMA:
        raise ValueError("config section [%s] declared twice" % name)
    SCHEMA[name] = dict(keys)


_KIND_CHECK: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "path": lambda v: isinstance(v, str) and v != "",
    "int": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "bool": lambda v: type(v) is bool,
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "list[int]": lambda v: isinstance(v, list) and all(type(x) is int for x in v),
    "table": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}
_KIND_TEXT = {"str": "a string", "path": "a non-empty path string", "int": "an integer",
              "number": "a number", "bool": "true or false", "list[str]": "a list of strings",
              "list[int]": "a list of integers", "table": "a table", "any": "a value"}


def _suggest(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return " (did you mean %s?)" % close[0] if close else ""


def check_schema(raw: dict[str, Any]) -> list[str]:
    """Every schema error of a parsed TOML document, one line each (none: an empty list)."""
    errors: list[str] = []
    for name, sec in raw.items():
        spec = SCHEMA.get(name)
        if spec is None:
            errors.append("unknown section [%s]%s" % (name, _suggest(name, list(SCHEMA))))
            continue
        if not isinstance(sec, dict):
            errors.append("[%s] must be a table" % name)
            continue
        for key, value in sec.items():
            k = spec.get(key)
            if k is None:
                errors.append("[%s] unknown key %s%s" % (name, key, _suggest(key, list(spec))))
                continue
            shown = "***" if k.secret else repr(value)
            if not _KIND_CHECK[k.kind](value):
                errors.append("[%s] %s must be %s, got %s" % (name, key, _KIND_TEXT[k.kind], shown))
            elif k.kind in ("int", "number") and (
                    (k.lo is not None and value < k.lo) or (k.hi is not None and value > k.hi)):
                errors.append("[%s] %s must be in %s..%s, got %s" % (name, key, k.lo, k.hi, shown))
            elif k.choices is not None and value not in k.choices:
                errors.append("[%s] %s must be one of %s" % (name, key, ", ".join(map(str, k.choices))))
    return errors


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
    # How long the broker keeps our session (subscription + queued QoS 1) while we are away.
    session_expiry_s: int = 7 * 86400
    # Several instances: "" = a plain subscription (one instance); a name = the MQTT 5 shared
    # subscription $share/<name>/hcp/1/up/+/+, the broker splits device traffic between the
    # instances of that group (each with its own client_id).
    shared_group: str = ""
    # The MQTT version of the gateway's own connection (devices speak 3.1.1 either way).
    # 3.1.1: paho decodes no MQTT 5 properties per message (measured: 30 instead of 52 us of
    # gateway CPU per message it drops); the broker keeps a clean_session=False session for
    # good. "5": session expiry (session_expiry_s), Maximum Packet Size, DISCONNECT reasons.
    # Shared subscriptions work with both on mosquitto 2 and EMQX.
    protocol: str = "3.1.1"


@dataclass(frozen=True)
class StoreConfig:
    """`url`: "sqlite:///path", a plain path (SQLite), or "postgresql://..."."""

    url: str
    path: Path | None = None      # the SQLite file, None on PostgreSQL

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))


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
    """The default hall ([hall]): the hall of every device, window and record that names none.
    Halls added with `hcp-gateway halls add` live in the store (gateway/org.py)."""

    id: str = "hall-1"
    area_code: str = ""
    timezone: str = "Asia/Shanghai"
    opening_hours: tuple[OpeningRange, ...] = (OpeningRange(8 * 60 + 30, 17 * 60 + 30),)
    opening_days: tuple[int, ...] = (1, 2, 3, 4, 5)  # ISO weekdays, 1 = Monday
    name: str = ""

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
    # The incoming path's bounds (gateway/incoming.py): per device a token bucket, then one
    # queue bounded in messages and bytes; records waiting for the commit at most pending_max.
    device_rate: float = 200.0      # messages per second and device, sustained
    device_burst: int = 400         # ... and at once
    queue_max: int = 10000
    queue_max_bytes: int = 8 * 1024 * 1024
    pending_max: int = 5000
    # A device dropped faster than quench_drops_per_s has its broker account disabled for
    # quench_s seconds (gateway/quench.py; dynsec only; 0 = never).
    quench_s: int = 60
    quench_drops_per_s: int = 1000


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
    # Typed objects of the sections owned by other modules ("http", "uplink", "attribution",
    # "invitations", "report"), built and checked at load.
    sections: dict[str, Any] = field(default_factory=dict)


def secret_keys(raw: dict[str, Any]) -> list[str]:
    """The secret keys (SCHEMA's secret=True) the file sets, as "section.key"."""
    return ["%s.%s" % (sec, k) for sec, keys in SCHEMA.items() if isinstance(raw.get(sec), dict)
            for k, key in keys.items() if key.secret and k in raw[sec]]


def check_private(cfg: Config) -> None:
    """Refuse (ConfigError, one line) a config file everyone may read that holds a secret:
    the service does not start on it (`serve`). Group-readable stays allowed (a root:hcp 0640
    file read by the service's group)."""
    import stat
    if cfg.path is None:
        return
    keys = secret_keys(cfg.raw)
    try:
        mode = cfg.path.stat().st_mode
    except OSError:
        return
    if keys and mode & stat.S_IROTH:
        raise ConfigError(f"config file {cfg.path} holds secrets ({', '.join(keys)}) and is readable by "
                          f"everyone (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {cfg.path}")


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


def parse_config(raw: dict[str, Any], base_dir: Path, path: Path | None = None,
                 check_all: bool = True) -> Config:
    """The whole config, checked: schema errors first (all of them at once), then each
    section's own rules (again all of them). check_all=False skips the other modules'
    sections (for code that builds a Config piece by piece, e.g. tests of one subsystem)."""
    errors = check_schema(raw)
    if errors:
        raise ConfigError("\n".join(errors))
    try:
        cfg = _parse_core(raw, base_dir, path)
    except ConfigError as e:
        errors.append(str(e))
        cfg = None
    if check_all and cfg is not None:
        errors += _build_sections(cfg, base_dir)
    if errors or cfg is None:
        raise ConfigError("\n".join(errors))
    return cfg


def _build_sections(cfg: Config, base: Path) -> list[str]:
    """Build the typed object of each section another module owns; their errors, one each.
    Imported here, not at module level: those modules import this one."""
    from gateway.alerts import AlertSettings
    from gateway.api.settings import HttpSettings
    from gateway.attribution import AttributionRules
    from gateway.bulletin import BulletinSettings
    from gateway.complaints import ComplaintSettings
    from gateway.console.settings import ConsoleSettings
    from gateway.export import ExportSettings
    from gateway.invitations import InvitationRules
    from gateway.notify import NotifySettings
    from gateway.oplog import LogSettings
    from gateway.org import DistrictSettings
    from gateway.reports import ReportSettings
    from gateway.sectioncheck import SettingsError
    from gateway.supervision import SupervisionSettings
    from gateway.uplink.settings import load_settings
    from gateway.workdays import WorkdaySettings

    builders: list[tuple[str, Callable[[Config], Any]]] = [
        ("http", HttpSettings.from_config),
        ("attribution", AttributionRules.from_config),
        ("invitations", InvitationRules.from_config),
        ("report", ReportSettings.from_config),
        ("uplink", lambda c: load_settings(c) if "uplink" in c.raw else None),
        ("calendar", lambda c: WorkdaySettings.from_mapping(c.raw.get("calendar"), base_dir=base)),
        ("notify", lambda c: NotifySettings.from_mapping(c.raw.get("notify"), base_dir=base)),
        ("complaints", ComplaintSettings.from_config),
        ("qr", lambda c: _qr_settings(c, base)),
        ("console", ConsoleSettings.from_config),
        ("district", DistrictSettings.from_config),
        ("bulletin", BulletinSettings.from_config),
        ("supervision", SupervisionSettings.from_config),
        ("export", ExportSettings.from_config),
        ("alerts", lambda c: AlertSettings.from_config(c, base)),
        ("log", LogSettings.from_config),
    ]
    errors: list[str] = []
    for name, build in builders:
        try:
            cfg.sections[name] = build(cfg)
        except (ConfigError, SettingsError) as e:
            errors.append(str(e))
    return errors


def _qr_settings(cfg: Config, base: Path) -> Any:
    """[qr], or None; the QR modules are imported only when the section is there."""
    if "qr" not in cfg.raw:
        return None
    from gateway.qr.settings import QrSettings
    return QrSettings.from_config(cfg, base)


def _parse_core(raw: dict[str, Any], base_dir: Path, path: Path | None) -> Config:
    mqtt = _section(raw, "mqtt")
    store = _section(raw, "store")
    broker = _section(raw, "broker")
    hall = _section(raw, "hall")
    devices = _section(raw, "devices")
    ingest = _section(raw, "ingest")
    times = _section(raw, "time")
    if "path" not in store and "url" not in store:
        raise ConfigError("[store] path is required (or url)")
    if "path" in store and "url" in store:
        raise ConfigError("[store] give path or url, not both")
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
            session_expiry_s=_int(mqtt, "mqtt", "session_expiry_s", 7 * 86400, 60, 2**32 - 1),
            shared_group=_shared_group(mqtt),
            protocol=_str(mqtt, "mqtt", "protocol", "3.1.1"),
        ),
        store=_store(store, base_dir),
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
            device_rate=float(ingest.get("device_rate", 200.0)),
            device_burst=_int(ingest, "ingest", "device_burst", 400, 1, 10**6),
            queue_max=_int(ingest, "ingest", "queue_max", 10000, 10, 10**7),
            queue_max_bytes=_int(ingest, "ingest", "queue_max_bytes", 8 * 1024 * 1024, 65536, 2**34),
            pending_max=_int(ingest, "ingest", "pending_max", 5000, 1, 10**7),
            quench_s=_int(ingest, "ingest", "quench_s", 60, 0, 86400),
            quench_drops_per_s=_int(ingest, "ingest", "quench_drops_per_s", 1000, 1, 10**7),
        ),
        raw=raw,
        time=TimeWindowConfig(
            max_future_s=_int(times, "time", "max_future_s", 600, 0, 86400),
            max_age_days=_int(times, "time", "max_age_days", 366, 1, 3660),
            max_uptime_days=_int(times, "time", "max_uptime_days", 3660, 1, 36600),
        ),
    )


def _store(sec: dict[str, Any], base_dir: Path) -> StoreConfig:
    if "url" in sec:
        url = _str(sec, "store", "url", "")
        if url.startswith(("postgresql://", "postgres://")):
            return StoreConfig(url=url)
        if not url.startswith("sqlite://") or len(url) <= len("sqlite://"):
            raise ConfigError('[store] url must be "sqlite:///path" or "postgresql://..."')
        p = Path(url[len("sqlite://"):]).expanduser()
    else:
        p = _path(sec, "store", "path", base_dir) or base_dir / "gateway.db"
    p = p if p.is_absolute() else base_dir / p
    return StoreConfig(url=str(p), path=p)


def _shared_group(sec: dict[str, Any]) -> str:
    g = _str(sec, "mqtt", "shared_group", "")
    if g and (any(c in g for c in "/+#") or not g.isprintable()):
        raise ConfigError("[mqtt] shared_group must be a name without /, + or # (got %r)" % g)
    return g


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
        opening_hours=parse_opening_hours(hours_raw),
        opening_days=tuple(days),
        name=_str(sec, "hall", "name", ""),
    )


def parse_opening_hours(texts: list[str], where: str = "[hall] opening_hours") -> tuple[OpeningRange, ...]:
    """["08:30-12:00", "13:30-17:30"] as ranges; ConfigError naming `where` for a bad entry."""
    return tuple(_opening_range(h, where) for h in texts)


def _opening_range(text: str, where: str = "[hall] opening_hours") -> OpeningRange:
    try:
        a, b = text.split("-")
        start, end = _hhmm(a), _hhmm(b)
    except ValueError:
        raise ConfigError(f'{where} entry {text!r} is not "HH:MM-HH:MM"') from None
    if end <= start:
        raise ConfigError(f"{where} entry {text!r} ends before it starts")
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
