"""/config.json: load with defaults, validate, apply the gateway's `config` command, persist.

Keys and format: docs/architecture.md section 2. Identity and transport keys (device_id,
secret, wifi, broker, pins) come only from flash.py over serial; the gateway may change the
behaviour keys in SETTABLE, which is what its authenticated `config` command applies.
"""

import json

from firmware import fsutil
from protocol.grade_set import DEFAULT_BUTTONS, button_map

FILE = "config.json"

DEFAULT_PINS = {"buttons": [32, 33, 25, 26, 27], "led_r": 2, "led_g": 4, "buzzer": 15,
                "i2c_sda": 21, "i2c_scl": 22}

# key: (default, check) for the keys the gateway may set. check returns the clean value or
# raises ValueError.
WALKUP_MODES = ("accept", "ignore")


class ConfigError(Exception):
    """config.json is missing, not JSON, or lacks what the device cannot run without."""


def _int_in(lo, hi):
    def check(v):
        if type(v) is not int or v < lo or v > hi:
            raise ValueError("must be an integer in %d..%d" % (lo, hi))
        return v
    return check


def _walkup(v):
    if v not in WALKUP_MODES:
        raise ValueError("must be accept or ignore")
    return v


def _buttons(v):
    if type(v) is not list and type(v) is not tuple:
        raise ValueError("must be a list of 5 grade codes")
    return button_map(v)


SETTABLE = {
    "buttons": (DEFAULT_BUTTONS, _buttons),
    "debounce_ms": (50, _int_in(5, 500)),
    "countdown_s": (60, _int_in(5, 600)),
    "cooldown_s": (8, _int_in(0, 120)),
    "walkup": ("accept", _walkup),
    "hb_s": (180, _int_in(10, 3600)),
    "cfg": (0, _int_in(0, 2147483647)),
}


class Config:
    def __init__(self, raw):
        self.raw = raw                     # everything in the file, unknown keys kept on persist
        self.warnings = []
        self.device_id = raw.get("device_id")
        self.secret = raw.get("secret")
        if type(self.device_id) is not str or not self.device_id:
            raise ConfigError("config.json: device_id missing")
        if type(self.secret) is not str or len(self.secret) != 64:
            raise ConfigError("config.json: secret must be 64 hex characters")
        self.hall = raw.get("hall", "")
        self.wifi = raw.get("wifi") or {}
        self.broker = raw.get("broker") or {}
        pins = dict(DEFAULT_PINS)
        p = raw.get("pins")
        if type(p) is dict:
            for k in p:
                pins[k] = p[k]
        self.pins = pins
        for key in SETTABLE:
            default, check = SETTABLE[key]
            value = default
            if key in raw:
                try:
                    value = check(raw[key])
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
                value = SETTABLE[key][1](changes[key])
            except ValueError as e:
                rejected[key] = str(e)
                continue
            setattr(self, key, value)
            self.raw[key] = list(value) if key == "buttons" else value
            applied.append(key)
        return applied, rejected

    def save(self, hal):
        fsutil.write_atomic(hal, hal.path(FILE), json.dumps(self.raw).encode())


def load(hal):
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
