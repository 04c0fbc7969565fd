"""Which device ids may be registered: the id is also the device's broker account and client id.

A device id names a broker account (username == client id == id) whose password the
registration sets. An id outside the pattern, or one that could be the gateway's own
account, an admin's, or the broker's ($-names, $SYS, $CONTROL), would let whoever registers a
"device" take over that identity (issue 14, item 3). Checked with a full match: `re.match`
with `$` also accepts a trailing newline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.config import Config

# The protocol's device id (protocol.messages: "id" fields): [a-z0-9-], 1..32 characters.
DEVICE_ID = re.compile(r"[a-z0-9-]{1,32}")

# Prefixes no device id may start with: the gateway's and the admins' accounts and client ids
# live there (the configured ones are refused too, whatever their names).
RESERVED_PREFIXES = ("hcp-gateway", "gateway", "admin", "hcp-admin", "hcp-ctl", "mosquitto", "broker",
                     "hcp-doctor")   # hcp-doctor-probe-*: `hcp-gateway doctor`'s throw-away account
# The QR channel's points are records' device ids "qr-<12 hex>" (gateway/qr/points.py).
QR_PREFIX = "qr-"


def problem(device_id: object, reserved: Iterable[str] = ()) -> str | None:
    """Why device_id cannot be a device's id, or None when it can."""
    if not isinstance(device_id, str) or not DEVICE_ID.fullmatch(device_id):
        return "device id must match [a-z0-9-]{1,32}"
    if device_id.startswith(QR_PREFIX):
        return "device ids %s* are reserved for QR codes; choose another id" % QR_PREFIX
    for prefix in RESERVED_PREFIXES:
        if device_id.startswith(prefix):
            return "device id %s is reserved (ids starting with %s are the gateway's or admins')" % (
                device_id, prefix)
    if device_id in set(reserved):
        return "device id %s is reserved (a configured gateway or admin account)" % device_id
    return None


def reserved_by(cfg: Config) -> set[str]:
    """The account names and client ids this gateway's config uses on the broker."""
    names = {cfg.mqtt.username, cfg.mqtt.client_id}
    names.update(cfg.broker.reserved_names)
    return {n for n in names if n}
