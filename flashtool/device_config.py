"""/config.json as flash.py writes it (keys: docs/architecture.md section 2).

Identity keys come from the technician's options; keys the gateway may have changed since
(buttons, timings, cfg) are kept from the board's current file, so a re-provision does not
undo the hall's settings.  The secret and broker password are kept when the board already has
them for the same device id (re-provisioning an unchanged board changes nothing), and are
fresh (secrets.token_hex) on a new board, a new device id, or --rotate-secrets.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from flashtool.errors import FlashError

DEVICE_ID = re.compile(r"[a-z0-9-]{1,32}")  # fullmatch: no trailing newline
HEX64 = re.compile(r"[0-9a-f]{64}")
DEFAULTS: dict[str, Any] = {
    "buttons": ["vs", "s", "bs", "d", "vd"],
    "pins": {
        "buttons": [32, 33, 25, 26, 27],
        "led_r": 2,
        "led_g": 4,
        "buzzer": 15,
        "i2c_sda": 21,
        "i2c_scl": 22,
    },
    "debounce_ms": 50,
    "countdown_s": 60,
    "cooldown_s": 8,
    "walkup": "accept",
    "hb_s": 180,
    "cfg": 1,
}
IDENTITY_KEYS = ("device_id", "hall", "secret", "wifi", "broker")


@dataclass
class Identity:
    device_id: str
    hall: str
    wifi_ssid: str
    wifi_password: str
    broker_host: str
    broker_port: int
    ca: str | None = None  # the hall CA (PEM): TLS to the broker (flash.py --ca)


def read_ca(path: str) -> str:
    """The hall CA certificate file (hcp-gateway tls init's ca.pem) as PEM text."""
    try:
        text = open(path, encoding="ascii").read()
    except (OSError, UnicodeDecodeError) as e:
        raise FlashError(f"--ca {path}: cannot read a PEM certificate: {e}") from None
    if "-----BEGIN CERTIFICATE-----" not in text or "PRIVATE KEY" in text:
        raise FlashError(f"--ca {path}: not a PEM CA certificate (ca.pem of `hcp-gateway tls init`)")
    return text


def parse_broker(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, 1883
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FlashError(f"--broker {value!r}: expected HOST or HOST:PORT")
    return host, int(port)


def device_id_for(requested: str, uid: str | None) -> str:
    if requested != "auto":
        dev = requested
    elif not uid:
        raise FlashError("the device reports no unique id (no machine.unique_id, no /.uid): pass --device-id")
    else:
        dev = "hcp-" + uid.lower()
    if not DEVICE_ID.fullmatch(dev):
        raise FlashError(f"device id {dev!r} must match [a-z0-9-]{{1,32}}")
    return dev


def parse_existing(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # a damaged file is simply replaced
    return value if isinstance(value, dict) else None


def build(ident: Identity, existing: dict[str, Any] | None, rotate: bool) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(DEFAULTS)
    reuse = (
        existing is not None
        and not rotate
        and existing.get("device_id") == ident.device_id
        and isinstance(existing.get("secret"), str)
        and HEX64.fullmatch(existing["secret"]) is not None
        and isinstance(existing.get("broker"), dict)
        and isinstance(existing["broker"].get("password"), str)
        and len(existing["broker"]["password"]) >= 16
    )
    if existing is not None and existing.get("device_id") == ident.device_id:
        for key, value in existing.items():
            if key not in IDENTITY_KEYS:
                cfg[key] = value
    if reuse:
        assert existing is not None
        secret = existing["secret"]
        broker_password = existing["broker"]["password"]
    else:
        secret = secrets.token_hex(32)
        broker_password = secrets.token_urlsafe(24)
    cfg.update(
        {
            "device_id": ident.device_id,
            "hall": ident.hall,
            "secret": secret,
            "wifi": {"ssid": ident.wifi_ssid, "password": ident.wifi_password},
            "broker": {"host": ident.broker_host, "port": ident.broker_port, "password": broker_password,
                       **({"ca": ident.ca} if ident.ca else {})},
        }
    )
    return cfg


def encode(cfg: dict[str, Any]) -> bytes:
    return (json.dumps(cfg, sort_keys=True, separators=(",", ":")) + "\n").encode()
