"""Checking /config.json: defaults, the validation of every key, the gateway's `config` command.

Rare work: firmware.config imports this module when the device boots and when a `config` command
arrives, and unloads it right after (firmware.rare), so its bytecode is not in the device's RAM
in between. Keys and format: docs/architecture.md section 2.
"""

from protocol.grade_set import DEFAULT_BUTTONS, button_map

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


def fill(cfg, raw, error):
    """Set cfg's attributes from the file's dict raw; error(text) is raised for what the device
    cannot run without, a bad settable value falls back to its default with a warning."""
    dev = raw.get("device_id")
    secret = raw.get("secret")
    if type(dev) is not str or not dev:
        raise error("config.json: device_id missing")
    if type(secret) is not str or len(secret) != 64:
        raise error("config.json: secret must be 64 hex characters")
    cfg.device_id = dev
    cfg.secret = secret
    cfg.hall = raw.get("hall", "")
    cfg.wifi = raw.get("wifi") or {}
    cfg.broker = raw.get("broker") or {}
    pins = {"buttons": [32, 33, 25, 26, 27], "led_r": 2, "led_g": 4, "buzzer": 15,   # defaults
            "i2c_sda": 21, "i2c_scl": 22}
    p = raw.get("pins")
    if type(p) is dict:
        for k in p:
            pins[k] = p[k]
    cfg.pins = pins
    for key in SETTABLE:
        default = SETTABLE[key][0]
        value = default
        if key in raw:
            try:
                value = _check(key, raw[key])
            except ValueError as e:
                cfg.warnings.append("config %s: %s; using %r" % (key, e, default))
        setattr(cfg, key, value)


def apply(cfg, changes):
    """See firmware.config.Config.apply."""
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
        setattr(cfg, key, value)
        cfg.raw[key] = list(value) if key == "buttons" else value
        applied.append(key)
    return applied, rejected
