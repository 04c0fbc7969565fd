"""Device accounts on the broker, behind the `BrokerAccounts` interface the device
registration service calls.

`PasswordFileAccounts`: mosquitto password entries and a config reload. The broker username
of a device is its id. `mosquitto_passwd -b` writes the hashed entry
(run as a subprocess, never blocking the event loop); SIGHUP makes mosquitto re-read its
password file, so a freshly registered device can connect at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Protocol

from gateway.config import BrokerConfig

_file_lock = asyncio.Lock()  # one mosquitto_passwd at a time: it rewrites the whole file


class BrokerAuthError(Exception):
    """The password entry could not be written or the broker could not be signalled."""


class BrokerAccounts(Protocol):
    async def set_device(self, device_id: str, password: str) -> None: ...

    async def remove_device(self, device_id: str) -> None: ...


class NoBrokerAccounts:
    """No broker accounts are managed here (no [broker] password_file): a no-op."""

    async def set_device(self, device_id: str, password: str) -> None:
        return None

    async def remove_device(self, device_id: str) -> None:
        return None


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


def broker_accounts(broker: BrokerConfig) -> BrokerAccounts:
    return PasswordFileAccounts(broker) if broker.password_file is not None else NoBrokerAccounts()


async def set_password(broker: BrokerConfig, username: str, password: str) -> bool:
    """Write username's entry; False when no [broker] password_file is configured."""
    if broker.password_file is None:
        return False
    if not password or "\n" in password or ":" in username:
        raise BrokerAuthError("broker password must be non-empty and on one line")
    path = broker.password_file
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["-b", str(path), username, password]
    if not path.exists():
        args.insert(0, "-c")  # create the file
    return await _run_passwd(broker, args, password)


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
