"""/config.json: the values, validation, the gateway's `config` command, persist. Reading the
file at boot is firmware.bootstate.load_config (boot-only code).

Keys and format: docs/architecture.md section 2. Identity and transport keys (device_id,
secret, wifi, broker, pins) come only from flash.py over serial; the gateway may change the
behaviour keys in firmware.cfgcheck.SETTABLE, which is what its authenticated `config` command
applies. The checks live in firmware/cfgcheck.py, loaded only while they run (boot, `config`).
"""

import json

import firmware

FILE = "config.json"


class ConfigError(Exception):
    """config.json is missing, not JSON, or lacks what the device cannot run without."""


class Config:
    """The device's settings as attributes: device_id, secret, hall, wifi, broker, pins and the
    settable buttons, debounce_ms, countdown_s, cooldown_s, walkup, hb_s, cfg."""

    def __init__(self, raw):
        self.raw = raw                     # everything in the file, unknown keys kept on persist
        self.warnings = []
        firmware.rare("cfgcheck", "fill", self, raw, ConfigError)

    def apply(self, changes):
        """Apply a `config` command's cfg dict. Returns (applied keys, rejected {key: why}).

        All-or-nothing per key: a bad value leaves that key as it was.
        """
        return firmware.rare("cfgcheck", "apply", self, changes)

    def save(self, hal):
        from firmware import fsutil  # rare (a config command): its caller unloads fsutil again
        fsutil.write_atomic(hal, hal.path(FILE), json.dumps(self.raw).encode())

