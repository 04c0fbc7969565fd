"""Device credentials on the broker: mosquitto password entries and a config reload.

The broker username of a device is its id. `mosquitto_passwd -b` writes the hashed entry
(run as a subprocess, never blocking the event loop); SIGHUP makes mosquitto re-read its
password file, so a freshly registered device can connect at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from gateway.config import BrokerConfig

_file_lock = asyncio.Lock()  # one mosquitto_passwd at a time: it rewrites the whole file


class BrokerAuthError(Exception):
    """The password entry could not be written or the broker could not be signalled."""


async def set_password(broker: BrokerConfig, username: str, password: str) -> bool:
    """Write username's entry; False when no [broker] password_file is configured."""
    if broker.password_file is None:
        return False
    if not password or "\n" in password or ":" in username:
        raise BrokerAuthError("broker password must be non-empty and on one line")
    path = broker.password_file
    async with _file_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        args = ["-b", str(path), username, password]
        _private_file(path)
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
        text = (err or out).decode(errors="replace").replace(password, "***").strip()
        raise BrokerAuthError(f"{broker.passwd_command} failed ({proc.returncode}): {text}")
    return True


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
