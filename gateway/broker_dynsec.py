"""Broker identity with mosquitto's dynamic security plugin (issue 14, item 2).

Every account is tied to one client id, so nobody can connect as another client: a device
may connect only as its own id (username == client id == device id), the gateway only with
its configured client id. Without this, any device could connect with the gateway's client
id (or another device's) and knock it off, and with a clean session wipe its queued messages.

Accounts and roles (the plugin's JSON file, made by `bootstrap()` / `hcp-gateway broker init`):
  role hcp-control     $CONTROL/dynamic-security/#: the gateway's control account(s) only
  role hcp-gateway     hcp/#: the gateway's MQTT account(s)
  role device-<id>     publish hcp/1/up/<id>/#, receive and subscribe hcp/1/down/<id>/#
                       (mosquitto 2.0's plugin has no %u/%c patterns: one role per device)
  default ACL access   deny publish, receive and subscribe; allow unsubscribe
DynsecAccounts creates, updates and deletes device accounts (and their roles) through the
plugin's control topic; the broker applies a change at once (a connected client whose
account changed is disconnected) and saves its file itself, 0600.

Passwords in the file are the plugin's PBKDF2-SHA512 (101 iterations, 12-byte salt), what
`mosquitto_ctrl dynsec init` writes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from gateway import device_ids, tls
from gateway.broker_accounts import BrokerAccountsError
from gateway.config import Config

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
CONTROL_ROLE = "hcp-control"
GATEWAY_ROLE = "hcp-gateway"
PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"  # Debian 12's mosquitto 2.0.11
DEFAULT_ACL_ACCESS = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                      "unsubscribe": True}
_ITERATIONS = 101
CONTROL_TIMEOUT_S = 10.0


def device_role(device_id: str) -> str:
    return "device-" + device_id


def _acl(acltype: str, topic: str, allow: bool = True) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": allow}


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """What a device may do: send on its own up topics, read its own commands."""
    up, down = "hcp/1/up/%s/#" % device_id, "hcp/1/down/%s/#" % device_id
    return [_acl("publishClientSend", up), _acl("publishClientReceive", down), _acl("subscribePattern", down)]


# The gateway subscribes to the devices' uplink plainly (one instance) or as an MQTT 5 shared
# subscription $share/<group>/hcp/... (several instances): dynsec checks the whole filter.
GATEWAY_ACLS = [_acl("publishClientSend", "hcp/#"), _acl("publishClientReceive", "hcp/#"),
                _acl("subscribePattern", "hcp/#"), _acl("subscribePattern", "$share/+/hcp/#")]
CONTROL_ACLS = [_acl("publishClientSend", CONTROL_TOPIC), _acl("publishClientReceive", RESPONSE_TOPIC),
                _acl("subscribePattern", RESPONSE_TOPIC)]


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """The plugin's stored form of a password."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": _ITERATIONS}


def client_entry(username: str, password: str, client_id: str | None, roles: Iterable[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"username": username, **hash_password(password),
                             "roles": [{"rolename": r} for r in roles]}
    if client_id is not None:
        entry["clientid"] = client_id
    return entry


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    client_id: str | None   # None: any client id (never for the gateway's or a device's account)


def bootstrap(control: Iterable[Account], gateways: Iterable[Account],
              devices: dict[str, str] | None = None) -> dict[str, Any]:
    """The plugin's initial file: control and gateway accounts, each tied to its client id,
    and optionally devices (id -> password), each tied to its id."""
    control, gateways = list(control), list(gateways)
    for a in (*control, *gateways):
        if not a.username or not a.client_id:
            raise ValueError("every control and gateway account needs a user name and a client id")
    clients = [client_entry(a.username, a.password, a.client_id, [CONTROL_ROLE]) for a in control]
    clients += [client_entry(a.username, a.password, a.client_id, [GATEWAY_ROLE]) for a in gateways]
    roles = [{"rolename": CONTROL_ROLE, "acls": CONTROL_ACLS},
             {"rolename": GATEWAY_ROLE, "acls": GATEWAY_ACLS}]
    for device_id, password in sorted((devices or {}).items()):
        clients.append(client_entry(device_id, password, device_id, [device_role(device_id)]))
        roles.append({"rolename": device_role(device_id), "acls": device_acls(device_id)})
    return {"defaultACLAccess": dict(DEFAULT_ACL_ACCESS), "clients": clients, "groups": [], "roles": roles}


def write_file(path: Path, config: dict[str, Any]) -> None:
    """Write the plugin's file 0600 (it holds password hashes), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(config, indent=1).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def mosquitto_lines(dynsec_file: Path) -> list[str]:
    """The mosquitto.conf lines that load the plugin with that file."""
    return [f"plugin {PLUGIN}", f"plugin_opt_config_file {dynsec_file}"]


# ---- the control API ---------------------------------------------------------------------------

class DynsecAccounts:
    """BrokerAccounts over the plugin's control topic, with the gateway's control account.

    Each call opens a short connection (clean session) with the control client id: the
    running service and a CLI command of the same gateway may each need one now and then,
    and an account is tied to one client id, so a collision (one knocks the other off) is
    retried once. Calls within a process are serialised."""

    def __init__(self, host: str, port: int, account: Account, reserved: set[str],
                 tls_ca: Path | None = None, timeout_s: float = CONTROL_TIMEOUT_S) -> None:
        self.host, self.port = host, port
        self.account = account
        self.reserved = reserved
        self.tls_ca = tls_ca
        self.timeout_s = timeout_s

    # One lock per event loop (an asyncio.Lock belongs to the loop that first waits on it).
    _locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    @classmethod
    def from_config(cls, cfg: Config) -> DynsecAccounts:
        b = cfg.broker
        return cls(cfg.mqtt.host, cfg.mqtt.port,
                   Account(b.control_username, b.control_password, b.control_client_id),
                   device_ids.reserved_by(cfg), cfg.mqtt.tls_ca)

    def _check(self, device_id: str) -> None:
        why = device_ids.problem(device_id, self.reserved)
        if why is not None:
            raise BrokerAccountsError(why)

    async def set_device(self, device_id: str, password: str) -> None:
        """Create the device's account (tied to its id) and role, or give an existing one
        this password (a re-flash)."""
        self._check(device_id)
        if not password or "\n" in password:
            raise BrokerAccountsError("broker password must be non-empty and on one line")
        role = device_role(device_id)
        account = {"username": device_id, "password": password, "clientid": device_id,
                   "roles": [{"rolename": role}]}
        got = await self.run([{"command": "createRole", "rolename": role, "acls": device_acls(device_id)},
                              {"command": "createClient", **account}])
        _ok(got[0], "already exists")
        if _error(got[1]) and "already exists" in _error(got[1]).lower():
            # Re-registration (a re-flash): a new password, tied to its id again. Only ever an
            # account that is a device's: never another gateway's or an admin's of that name.
            await self._check_is_device(device_id)
            _ok((await self.run([{"command": "modifyClient", **account}]))[0])
        else:
            _ok(got[1])

    async def remove_device(self, device_id: str) -> None:
        """Delete the device's account and role (a connected device is disconnected)."""
        self._check(device_id)
        if not await self._check_is_device(device_id, missing_ok=True):
            return
        got = await self.run([{"command": "deleteClient", "username": device_id},
                              {"command": "deleteRole", "rolename": device_role(device_id)}])
        for r in got:
            _ok(r, "not found")

    async def set_enabled(self, device_id: str, enabled: bool) -> bool:
        """Disable a device's account (the broker disconnects it and refuses it until it is
        enabled again: a flooding device is quenched at the source) or enable it again.
        Only ever a device's account. False if there is no such account."""
        self._check(device_id)
        if not await self._check_is_device(device_id, missing_ok=True):
            return False
        command = "enableClient" if enabled else "disableClient"
        _ok((await self.run([{"command": command, "username": device_id}]))[0])
        return True

    async def _check_is_device(self, device_id: str, missing_ok: bool = False) -> bool:
        """True if the account exists and is a device's (its roles: exactly device-<id>);
        False if it does not exist and missing_ok; BrokerAccountsError otherwise."""
        r = (await self.run([{"command": "getClient", "username": device_id}]))[0]
        if _error(r) and "not found" in _error(r).lower() and missing_ok:
            return False
        _ok(r)
        client = r.get("data", {}).get("client", {}) if isinstance(r.get("data"), dict) else {}
        roles = [x.get("rolename") for x in client.get("roles", []) if isinstance(x, dict)]
        if roles != [device_role(device_id)] or client.get("groups"):
            raise BrokerAccountsError("broker account %s exists and is not a device account" % device_id)
        return True

    async def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in one control message; their responses, in order."""
        lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            try:
                return await self._run_once(commands)
            except (aiomqtt.MqttError, TimeoutError):
                await asyncio.sleep(0.2)   # e.g. the other process's control session took ours
                try:
                    return await self._run_once(commands)
                except aiomqtt.MqttError as e:
                    raise BrokerAccountsError("broker control API at %s:%d: %s" % (self.host, self.port, e)) \
                        from None
                except TimeoutError:
                    raise BrokerAccountsError("broker control API at %s:%d did not answer in %.0f s"
                                              % (self.host, self.port, self.timeout_s)) from None

    async def _run_once(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tag = secrets.token_hex(8)
        sent = [dict(c, correlationData="%s-%d" % (tag, i)) for i, c in enumerate(commands)]
        want = {c["correlationData"]: i for i, c in enumerate(sent)}
        answers: list[dict[str, Any] | None] = [None] * len(sent)
        ctx = tls.client_context(self.tls_ca) if self.tls_ca is not None else None
        async with asyncio.timeout(self.timeout_s), aiomqtt.Client(
                self.host, self.port, username=self.account.username, password=self.account.password,
                identifier=self.account.client_id, clean_session=True, tls_context=ctx) as client:
            await client.subscribe(RESPONSE_TOPIC, qos=1)
            await client.publish(CONTROL_TOPIC, json.dumps({"commands": sent}).encode(), qos=1)
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else b""
                try:
                    body = json.loads(bytes(payload))
                except ValueError:
                    continue
                for r in body.get("responses", []) if isinstance(body, dict) else []:
                    i = want.get(r.get("correlationData")) if isinstance(r, dict) else None
                    if i is not None:
                        answers[i] = r
                if all(a is not None for a in answers):
                    break
        return [a for a in answers if a is not None]


def _error(response: dict[str, Any]) -> str:
    err = response.get("error")
    return str(err) if err else ""


def _ok(response: dict[str, Any], tolerated: str = "") -> None:
    err = _error(response)
    if err and not (tolerated and tolerated in err.lower()):
        raise BrokerAccountsError("broker refused %s: %s" % (response.get("command", "?"), err))


def new_password() -> str:
    return secrets.token_urlsafe(24)
