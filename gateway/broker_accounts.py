"""Device accounts on the MQTT broker, behind the `BrokerAccounts` interface the device
registration service calls.

A device's broker account is its id (username == client id == device id). Registering a
device sets its account's password; removing it deletes the account. Implementations:
  gateway.broker_dynsec.DynsecAccounts   mosquitto's dynamic security plugin, through its
                                         control API (the hall deployment; issue 14)
  PasswordFileAccounts (below)           mosquitto password entries and a config reload:
                                         `mosquitto_passwd -b` writes the hashed entry (a
                                         subprocess, never blocking the event loop); SIGHUP
                                         makes mosquitto re-read its password file, so a freshly
                                         registered device can connect at once
  NoBrokerAccounts                       the broker is managed by hand: registration only
                                         stores the device's key
`for_config` picks the one the [broker] section configures.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Protocol

from gateway.config import BrokerConfig, Config

_file_lock = asyncio.Lock()  # one mosquitto_passwd at a time: it rewrites the whole file


class BrokerAccountsError(Exception):
    """The broker did not take the change; the message says why (never the password)."""


class BrokerAuthError(BrokerAccountsError):
    """The password entry could not be written or the broker could not be signalled."""


class BrokerAccounts(Protocol):
    async def set_device(self, device_id: str, password: str) -> None: ...

    async def remove_device(self, device_id: str) -> None: ...

    async def set_enabled(self, device_id: str, enabled: bool) -> bool:
        """Disable (quench a flooding device) or enable a device's account; False where this
        kind of accounts cannot (then the gateway only rate-limits the device)."""
        ...


class NoBrokerAccounts:
    """No broker accounts are managed here (no dynsec, no [broker] password_file): a no-op."""

    async def set_device(self, device_id: str, password: str) -> None:
        return None

    async def remove_device(self, device_id: str) -> None:
        return None

    async def set_enabled(self, device_id: str, enabled: bool) -> bool:
        return False


class PasswordFileAccounts:
    """mosquitto_passwd on [broker] password_file, then SIGHUP to [broker] pid_file."""

    def __init__(self, broker: BrokerConfig) -> None:
        self.broker = broker

    async def set_device(self, device_id: str, password: str) -> None:
        if await set_password(self.broker, device_id, password):
            reload_broker(self.broker)

    async def remove_device(self, device_id: str) -> None:
        if await _run_passwd(self.broker, ["-D", str(self.broker.password_file), device_id], "") \
                and self.broker.password_file is not None:
            reload_broker(self.broker)

    async def set_enabled(self, device_id: str, enabled: bool) -> bool:
        return False   # a password file has no disabled state (removing it would lose the hash)


def for_config(cfg: Config) -> BrokerAccounts:
    """The accounts the [broker] section configures: dynsec, a password file, or none."""
    if cfg.broker.dynsec:
        from gateway.broker_dynsec import DynsecAccounts  # imports this module
        return DynsecAccounts.from_config(cfg)
    return broker_accounts(cfg.broker)


def broker_accounts(broker: BrokerConfig) -> BrokerAccounts:
    """Password-file accounts when [broker] password_file is set, else none (no dynsec)."""
    return PasswordFileAccounts(broker) if broker.password_file is not None else NoBrokerAccounts()


async def set_password(broker: BrokerConfig, username: str, password: str) -> bool:
    """Write username's entry; False when no [broker] password_file is configured."""
    if broker.password_file is None:
        return False
    if not password or "\n" in password or ":" in username:
        raise BrokerAuthError("broker password must be non-empty and on one line")
    path = broker.password_file
    path.parent.mkdir(parents=True, exist_ok=True)
    _private_file(path)
    return await _run_passwd(broker, ["-b", str(path), username, password], password)


def _private_file(path: Path) -> None:
    """The password file (hashes) readable by its owner only: created 0600 here (then
    mosquitto_passwd -b, without -c, keeps that mode), and tightened if it is wider. The broker
    must run as its owner (issue 14: it was created 0644 by mosquitto_passwd -c)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return
    os.close(fd)


async def _run_passwd(broker: BrokerConfig, args: list[str], secret: str) -> bool:
    if broker.password_file is None or not broker.password_file.exists() and "-D" in args:
        return False
    async with _file_lock:
        try:
            proc = await asyncio.create_subprocess_exec(
                broker.passwd_command, *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError:
            raise BrokerAuthError(f"{broker.passwd_command} not found (install mosquitto)") from None
        out, err = await proc.communicate()
    if proc.returncode != 0:
        # The message may echo arguments: strip the password before it reaches a log.
        text = (err or out).decode(errors="replace")
        text = (text.replace(secret, "***") if secret else text).strip()
        raise BrokerAuthError(f"{broker.passwd_command} failed ({proc.returncode}): {text}")
    return True


def reload_broker(broker: BrokerConfig) -> bool:
    """SIGHUP the broker named by [broker] pid_file; False when none is configured."""
    if broker.pid_file is None:
        return False
    try:
        pid = int(broker.pid_file.read_text().strip())
    except FileNotFoundError:
        raise BrokerAuthError(f"broker pid file {broker.pid_file} does not exist") from None
    except ValueError:
        raise BrokerAuthError(f"broker pid file {broker.pid_file} does not hold a pid") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise BrokerAuthError(f"broker process {pid} (from {broker.pid_file}) is not running") from None
    except PermissionError:
        raise BrokerAuthError(f"not allowed to signal broker process {pid}") from None
    return True
