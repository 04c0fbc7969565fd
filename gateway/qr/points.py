"""QR points: the QR code of a window as a rating point (一码一账号), inside a unit of work.

A window's point is a `devices` row that can never connect (enabled = 0, no broker account, a
random key nobody is given). Why a device row: records, invitations and bindings all name a
device, so a QR rating is stored, attributed, invited, bound (in a QR-only window, with the
bindings' history and rules) and uploaded by the same code and tables as a press. Its id is
derived from the window ("qr-" + 12 hex of SHA-256 of the window id): ids "qr-*" are reserved
(gateway/devices.py refuses to register one).
"""

from __future__ import annotations

import hashlib
import secrets

from gateway.store.api import Tx
from gateway.store.errors import IntegrityError

PREFIX = "qr-"


def point_id(window_id: str) -> str:
    return PREFIX + hashlib.sha256(window_id.encode("utf-8")).hexdigest()[:12]


def is_point_id(device_id: str) -> bool:
    return device_id.startswith(PREFIX)


def ensure_point(tx: Tx, window_id: str, at_ms: int, actor: str = "gateway") -> str:
    """The window's point, made (and audited) the first time it is needed."""
    have = tx.qr.point_of_window(window_id)
    if have is not None:
        return have
    pid = point_id(window_id)
    try:
        with tx.savepoint():
            tx.qr.add_point(pid, window_id, secrets.token_hex(32), at_ms)
    except IntegrityError:
        # Made meanwhile by another writer (PostgreSQL: we waited for its commit, so it is visible).
        have = tx.qr.point_of_window(window_id)
        if have is None:
            raise
        return have
    tx.audit.add(at_ms, actor, "qr.point.add", {"subject": pid, "window": window_id})
    return pid
