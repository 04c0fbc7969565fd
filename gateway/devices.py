"""Device registration: the domain service the HTTP API and the CLI both call.

Registering stores the device key (a re-registration replaces it: re-flash), audits it, and
notes a `device.key` change in the same transaction, so every running gateway (this process,
another process, another instance) refuses the old secret at once. Then the device's broker
account is set through the injected `BrokerAccounts`. The store row comes first: if the
broker step fails, running the same registration again repairs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gateway.broker_accounts import BrokerAccounts, BrokerAuthError
from gateway.clock import now_ms
from gateway.errors import BadInput, NotFound
from gateway.store import Store
from gateway.store.api import Tx
from protocol.auth import parse_secret
from protocol.errors import MalformedMessage

DEVICE_ID = re.compile(r"[a-z0-9-]{1,32}")


class RegistrationError(BadInput):
    """A device could not be registered; the message says why (never the secret)."""

    code = "bad_registration"


def validate_registration(device_id: Any, secret_hex: Any, broker_password: Any) -> None:
    if not isinstance(device_id, str) or not DEVICE_ID.fullmatch(device_id):
        raise RegistrationError("device id must match [a-z0-9-]{1,32}")
    if device_id.startswith("qr-"):
        raise RegistrationError("device ids qr-* are reserved for QR codes; choose another id")
    try:
        parse_secret(secret_hex)
    except MalformedMessage:
        raise RegistrationError("secret must be 64 hex characters (32 bytes)") from None
    if secret_hex != secret_hex.lower():
        raise RegistrationError("secret must be lower-case hex")
    if not isinstance(broker_password, str) or not broker_password or "\n" in broker_password:
        raise RegistrationError("broker password must be a non-empty single line")


def add_device(tx: Tx, device_id: str, secret_hex: str, fw: str | None, actor: str, at_ms: int) -> bool:
    """Inside a unit of work: store or re-key the device, audit, note the change; True if new."""
    created = tx.devices.upsert(device_id, secret_hex, fw, at_ms)
    tx.audit.add(at_ms, actor, "device.add" if created else "device.rekey",
                 {"device_id": device_id, "fw": fw})
    tx.changes.note("device.key", device_id, at_ms)
    return created


class DeviceService:
    def __init__(self, store: Store, accounts: BrokerAccounts,
                 on_rekey: Callable[[str, str], None] | None = None) -> None:
        self.store = store
        self.accounts = accounts
        self.on_rekey = on_rekey   # this process's registry, at once (others poll the change feed)

    async def register(self, device_id: str, secret_hex: str, broker_password: str, fw: str | None = None,
                       actor: str = "gateway") -> bool:
        """True if the device is new."""
        validate_registration(device_id, secret_hex, broker_password)
        t = now_ms()
        created = await self.store.write(lambda tx: add_device(tx, device_id, secret_hex, fw, actor, t))
        if self.on_rekey is not None:
            self.on_rekey(device_id, secret_hex)
        try:
            await self.accounts.set_device(device_id, broker_password)
        except BrokerAuthError as e:
            # Same answer as before the refactoring (HTTP 400 bad_registration): running the
            # same registration again repairs it.
            raise RegistrationError(f"device {device_id} stored, but the broker was not updated: {e}") from e
        return created

    async def get(self, device_id: str) -> dict[str, Any]:
        row = await self.store.read(lambda tx: tx.devices.get(device_id))
        if row is None:
            raise NotFound("unknown device %s" % device_id, "unknown_device")
        return row.public()

    async def list(self) -> list[dict[str, Any]]:
        return [r.public() for r in await self.store.read(lambda tx: tx.devices.all())]
