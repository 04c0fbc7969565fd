"""Device registration: the domain service the HTTP API and the CLI both call.

Registering stores the device key (a re-registration replaces it: re-flash), audits it, and
notes a `device.key` change in the same transaction, so every running gateway (this process,
another process, another instance) refuses the old secret at once. Then the device's broker
account is set through the injected `BrokerAccounts`. The store row comes first: if the
broker step fails, running the same registration again repairs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gateway import broker_accounts, device_ids
from gateway.broker_accounts import BrokerAccounts, BrokerAccountsError
from gateway.clock import now_ms
from gateway.config import Config
from gateway.errors import BadInput, NotFound
from gateway.store import Store
from gateway.store.api import Tx
from protocol.auth import parse_secret
from protocol.errors import MalformedMessage

DEVICE_ID = device_ids.DEVICE_ID  # use with fullmatch


class RegistrationError(BadInput):
    """A device could not be registered; the message says why (never the secret)."""

    code = "bad_registration"


def validate_registration(device_id: Any, secret_hex: Any, broker_password: Any,
                          reserved: Iterable[str] = ()) -> None:
    """The id is also the device's broker account and client id: outside the pattern or
    reserved (the gateway's, an admin's, the broker's names) is refused (gateway.device_ids)."""
    why = device_ids.problem(device_id, reserved)
    if why is not None:
        raise RegistrationError(why)
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
                 on_rekey: Callable[[str, str], None] | None = None,
                 reserved: Iterable[str] = ()) -> None:
        self.store = store
        self.accounts = accounts
        self.reserved = frozenset(reserved)   # device_ids.reserved_by(config)
        self.on_rekey = on_rekey   # this process's registry, at once (others poll the change feed)

    async def register(self, device_id: str, secret_hex: str, broker_password: str, fw: str | None = None,
                       actor: str = "gateway") -> bool:
        """True if the device is new."""
        validate_registration(device_id, secret_hex, broker_password, self.reserved)
        t = now_ms()
        created = await self.store.write(lambda tx: add_device(tx, device_id, secret_hex, fw, actor, t))
        if self.on_rekey is not None:
            self.on_rekey(device_id, secret_hex)
        try:
            await self.accounts.set_device(device_id, broker_password)
        except BrokerAccountsError as e:
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


def device_service(store: Store, cfg: Config,
                   on_rekey: Callable[[str, str], None] | None = None) -> DeviceService:
    """The device service as the config sets it up: the broker accounts of [broker] (dynsec,
    a password file, or none) and the names this gateway uses on the broker reserved."""
    return DeviceService(store, broker_accounts.for_config(cfg), on_rekey=on_rekey,
                         reserved=device_ids.reserved_by(cfg))
