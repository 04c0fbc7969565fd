"""Device accounts on the MQTT broker, behind one interface.

A device's broker account is its id (username == client id == device id). Registering a
device sets its account's password; removing it deletes the account. Two implementations:
  gateway.broker_dynsec.DynsecAccounts   mosquitto's dynamic security plugin, through its
                                         control API (the hall deployment; issue 14)
  PasswordFileAccounts (below)           today's password file + SIGHUP (gateway.broker_auth)
`for_config` picks the one the [broker] section configures (None: the broker is managed by
hand, registration only stores the device's key).
"""

from __future__ import annotations

from typing import Protocol

from gateway import broker_auth
from gateway.config import Config


class BrokerAccounts(Protocol):
    async def set_device(self, device_id: str, password: str) -> None: ...
    async def remove_device(self, device_id: str) -> None: ...


class BrokerAccountsError(Exception):
    """The broker did not take the change; the message says why (never the password)."""


class PasswordFileAccounts:
    """Today's way: a mosquitto_passwd entry and a SIGHUP (see gateway.broker_auth)."""

    def __init__(self, cfg: Config) -> None:
        self.broker = cfg.broker

    async def set_device(self, device_id: str, password: str) -> None:
        try:
            if await broker_auth.set_password(self.broker, device_id, password):
                broker_auth.reload_broker(self.broker)
        except broker_auth.BrokerAuthError as e:
            raise BrokerAccountsError(str(e)) from e

    async def remove_device(self, device_id: str) -> None:
        raise BrokerAccountsError("removing a device from a password file is not supported; use dynsec")


def for_config(cfg: Config) -> BrokerAccounts | None:
    if cfg.broker.dynsec:
        from gateway.broker_dynsec import DynsecAccounts
        return DynsecAccounts.from_config(cfg)
    if cfg.broker.password_file is not None:
        return PasswordFileAccounts(cfg)
    return None
