"""/config.json: the device's settings, their checks, the gateway's `config` command, persist.

Keys and format: docs/architecture.md section 2. Identity and transport keys (device_id,
secret, wifi, broker, pins) come only from flash.py over serial; the gateway may change the
behaviour keys in SETTABLE, which is what its authenticated `config` command applies.
"""

import json

from firmware import fsutil
from protocol.grade_set import DEFAULT_BUTTONS, button_map

FILE = "config.json"

# key: (default, lo, hi) for the keys the gateway may set; lo..hi bounds the integer ones.
SETTABLE = {
    "buttons": (DEFAULT_BUTTONS, 0, 0),
    "debounce_ms": (50, 5, 500),
    "countdown_s": (60, 5, 600),
    "cooldown_s": (8, 0, 120),
    "walkup": ("accept", 0, 0),
    "hb_s": (180, 10, 3600),
    "cfg": (0, 0, 2147483647),
}


class ConfigError(Exception):
    """config.json is missing, not JSON, or lacks what the device cannot run without."""


def _check(key, v):
    """The clean value of settable key, or ValueError."""
    if key == "buttons":
        if type(v) is not list and type(v) is not tuple:
            raise ValueError("must be a list of 5 grade codes")
        return button_map(v)
    if key == "walkup":
        if v != "accept" and v != "ignore":
            raise ValueError("must be accept or ignore")
        return v
    _, lo, hi = SETTABLE[key]
    if type(v) is not int or v < lo or v > hi:
        raise ValueError("must be an integer in %d..%d" % (lo, hi))
    return v


def load(hal):
    """/config.json -> Config; ConfigError when the device cannot run on it."""
    data = fsutil.read_atomic(hal.path(FILE))
    if data is None:
        raise ConfigError("config.json not found: flash the device with flash.py")
    try:
        raw = json.loads(data)
    except ValueError:
        raise ConfigError("config.json is not valid JSON")
    if type(raw) is not dict:
        raise ConfigError("config.json is not a JSON object")
    return Config(raw)


class Config:
    """The device's settings as attributes: device_id, secret, hall, wifi, broker, pins and the
    settable buttons, debounce_ms, countdown_s, cooldown_s, walkup, hb_s, cfg.

    A bad settable value falls back to its default with a line in `warnings`; a missing identity
    raises ConfigError."""

    def __init__(self, raw):
        self.raw = raw                     # everything in the file, unknown keys kept on persist
        self.warnings = []
        dev = raw.get("device_id")
        secret = raw.get("secret")
        if type(dev) is not str or not dev:
            raise ConfigError("config.json: device_id missing")
        if type(secret) is not str or len(secret) != 64:
            raise ConfigError("config.json: secret must be 64 hex characters")
        self.device_id = dev
        self.secret = secret
        self.hall = raw.get("hall", "")
        self.wifi = raw.get("wifi") or {}
        self.broker = raw.get("broker") or {}
        ka = raw.get("keepalive_s", 60)     # MQTT keepalive; not settable remotely
        self.keepalive_s = ka if type(ka) is int and 5 <= ka <= 3600 else 60
        pins = {"buttons": [32, 33, 25, 26, 27], "led_r": 2, "led_g": 4, "buzzer": 15,   # defaults
                "i2c_sda": 21, "i2c_scl": 22}
        p = raw.get("pins")
        if type(p) is dict:
            for k in p:
                pins[k] = p[k]
        self.pins = pins
        for key in SETTABLE:
            default = SETTABLE[key][0]
            value = default
            if key in raw:
                try:
                    value = _check(key, raw[key])
                except ValueError as e:
                    self.warnings.append("config %s: %s; using %r" % (key, e, default))
            setattr(self, key, value)

    def apply(self, changes):
        """Apply a `config` command's cfg dict. Returns (applied keys, rejected {key: why}).

        All-or-nothing per key: a bad value leaves that key as it was.
        """
        applied = []
        rejected = {}
        for key in changes:
            if key not in SETTABLE:
                rejected[key] = "not settable remotely"
                continue
            try:
                value = _check(key, changes[key])
            except ValueError as e:
                rejected[key] = str(e)
                continue
            setattr(self, key, value)
            self.raw[key] = list(value) if key == "buttons" else value
            applied.append(key)
        return applied, rejected

    def save(self, hal):
        fsutil.write_atomic(hal, hal.path(FILE), json.dumps(self.raw).encode())
