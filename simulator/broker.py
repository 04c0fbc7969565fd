"""Run a real mosquitto 2.0 broker on 127.0.0.1 for tests, the demo and the simulator.

The broker is configured like the hall deployment: no anonymous access, accounts and ACLs in
mosquitto's dynamic security plugin (gateway/broker_dynsec.py: every device account tied to
its own client id, the gateway's to its configured one; a device may only publish under its
own id and read its own commands), an optional TLS listener, and on-disk persistence, so
that queued QoS1 messages and persistent sessions survive a restart.

The accounts are given as `users` (name -> password) and the rules as ACL text in mosquitto's
acl_file syntax (`standard_acl()`), which is turned into one dynsec role per user (`pattern`
lines with %u / %c filled in per user). `auth="password_file"` runs the older set-up instead
(password file + acl_file + SIGHUP), for the gateway's password-file account code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from gateway import broker_dynsec
from gateway.broker_dynsec import Account
from simulator.netutil import ProcessExited, free_port, port_open, wait_port
from simulator.proc import stop_process

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"


class BrokerError(RuntimeError):
    """The broker could not be started (or reconfigured); the message carries its log tail."""


def standard_acl(gateway_user: str = "gateway") -> str:
    """The project's ACL: the gateway sees everything, a device only its own id.

    Device username == device id, so ``%u`` pins a device to ``hcp/1/up/<id>/...`` for publishing
    and ``hcp/1/down/<id>/...`` for receiving. ``pattern`` lines apply to every user, including the
    gateway (harmless: its ``topic readwrite hcp/#`` already covers them).

    Under the dynsec plugin (the default) a SUBSCRIBE outside the rules is refused (SUBACK 0x80);
    with acl_file (auth="password_file") it is granted and filtered per message. A denied
    PUBLISH is still acknowledged (MQTT 3.1.1: plain PUBACK; MQTT 5: reason code 135).
    """
    return (
        f"user {gateway_user}\n"
        "topic readwrite hcp/#\n"
        "\n"
        "pattern write hcp/1/up/%u/#\n"
        "pattern read hcp/1/down/%u/#\n"
    )


def _find(executable: str, fallback_name: str) -> str:
    if Path(executable).is_file():
        return executable
    found = shutil.which(fallback_name)
    if found is None:
        raise BrokerError(f"{fallback_name} not found (scripts/setup.sh installs the mosquitto package)")
    return found



class Mosquitto:
    """A mosquitto process owned by this object, living entirely inside ``workdir``.

    Not thread-safe; start/stop/restart from one thread. The chosen port is kept for the life of
    the object so that clients can reconnect to the same address after ``restart()``.
    """

    host: str
    port: int
    log_path: Path

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        *,
        verbose: bool = False,
        client_ids: dict[str, str] | None = None,
        tls_files: tuple[Path, Path] | None = None,
        auth: str = "dynsec",
    ) -> None:
        """client_ids: the client id each named account is tied to; an account with no `user`
        block in the ACL (a device, governed by `pattern` lines) is tied to its own name, any
        other account (the gateway, test peers) to nothing unless named here.
        tls_files: (certificate chain, private key): also listen with TLS on `tls_port`."""
        if auth not in ("dynsec", "password_file"):
            raise ValueError("auth must be dynsec or password_file")
        self.workdir = Path(workdir).resolve()
        self.host = "127.0.0.1"
        # Port 0 means "not chosen yet": start() picks one and keeps it across restarts.
        self._auto_port = port is None
        self.port = 0 if port is None else port
        self._users: dict[str, str] = dict(users or {})
        self._acl = acl
        self.auth = auth
        self._client_ids = dict(client_ids or {})
        self.tls_files = tls_files
        self.tls_port = 0
        # dynsec: the gateway's control account (a gateway config's [broker] control_*), and
        # the runner's own (add_user while running): both may only use the control topic.
        self.control = Account("hcp-gateway-ctl", secrets.token_urlsafe(18), "hcp-gateway-ctl")
        self.admin = Account("broker-admin", secrets.token_urlsafe(18), "broker-admin")
        # verbose adds subscribe/unsubscribe/debug lines (e.g. "Denied PUBLISH ..."); off by
        # default because benchmarks push enough traffic to make the debug log large.
        self._verbose = verbose
        self.conf_path = self.workdir / "mosquitto.conf"
        self.passwd_path = self.workdir / "passwd"
        self.acl_path = self.workdir / "acl"
        self.dynsec_path = self.workdir / "dynsec.json"
        self.persist_dir = self.workdir / "persist"
        self.log_path = self.workdir / "mosquitto.log"
        # The gateway's [broker] pid_file / password_file can point at these two, so that it
        # registers devices (mosquitto_passwd -b) and SIGHUPs this broker like in the hall.
        self.pid_path = self.workdir / "mosquitto.pid"
        self.stderr_path = self.workdir / "mosquitto.stderr"
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], float], Mosquitto] | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            raise BrokerError(f"mosquitto already running on {self.host}:{self.port}")
        self._reap()  # a broker that died on its own: drop the old handle and finalizer
        deadline = time.monotonic() + timeout
        # A port picked by free_port() can be taken by someone else before mosquitto binds it;
        # only then (auto port, never started yet) is it safe to move to another port.
        attempts = 3 if self._auto_port and self.port == 0 else 1
        for attempt in range(attempts):
            if self._auto_port and (self.port == 0 or attempt > 0):
                self.port = free_port(self.host)
                if self.tls_files is not None:
                    self.tls_port = free_port(self.host)
            marks = (self._size(self.stderr_path), self._size(self.log_path))
            try:
                self._start_once(deadline)
                self._auto_port = False  # the port is now ours: keep it across restarts
                return
            except BrokerError:
                fresh = self._read_from(self.stderr_path, marks[0]) + self._read_from(self.log_path, marks[1])
                if attempt + 1 < attempts and b"Address already in use" in fresh:
                    continue
                raise

    def _start_once(self, deadline: float) -> None:
        if port_open(self.host, self.port):
            raise BrokerError(f"port {self.host}:{self.port} is already in use")
        self._write_config()
        exe = _find(MOSQUITTO, "mosquitto")
        with open(self.stderr_path, "ab") as err:
            # stdout/stderr only carry messages printed before the log file is opened
            # (config errors); everything later goes to log_path.
            proc = subprocess.Popen(
                [exe, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.workdir,
            )
        self._proc = proc
        # Never leave an orphan broker behind if the owner forgets stop() or the interpreter exits.
        self._finalizer = weakref.finalize(self, stop_process, proc, 2.0)
        try:
            wait_port(self.host, self.port, deadline, proc)
            if self.tls_files is not None:
                wait_port(self.host, self.tls_port, deadline, proc)
        except ProcessExited as exc:
            self._reap()
            raise BrokerError(
                f"mosquitto exited with code {exc.returncode} while starting on port {self.port}"
                f"{' (13: cannot read its files after dropping privileges?)' if exc.returncode == 13 else ''}"
                f"\n--- log tail ---\n{self.log_tail()}"
            ) from None
        except TimeoutError:
            self._reap()
            raise BrokerError(
                f"mosquitto did not open {self.host}:{self.port} in time\n--- log tail ---\n{self.log_tail()}"
            ) from None

    def stop(self) -> None:
        """SIGTERM (the broker saves its persistence db), SIGKILL after 5 s; idempotent."""
        self._reap()

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut: no final db save (autosave keeps all but ~1 s)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._reap()

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            stop_process(proc)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (cleanly, so the persistence db is written) and start again on the same port."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- users

    def add_user(self, name: str, password: str) -> None:
        """Add (or change) a user. Running: through the dynsec control API (in effect when
        this returns), or a password file reload; stopped: in the files for the next start."""
        self._users[name] = password
        if self.auth == "password_file":
            self._write_passwd()
            if self.running:
                self.reload()
        elif self.running:
            role = self._user_role(name)
            entry = self._client(name)
            account: dict[str, Any] = {k: entry[k] for k in ("username", "roles") if k in entry}
            cmds: list[dict[str, Any]] = [
                {"command": "createRole", "rolename": role["rolename"], "acls": role["acls"]},
                {"command": "createClient", **account, "password": password,
                 **({"clientid": entry["clientid"]} if "clientid" in entry else {})}]
            got = self.control_api(cmds)
            if "already exists" in str(got[1].get("error", "")):
                self.control_api([dict(cmds[1], command="modifyClient")])
        else:
            self._write_dynsec()

    def control_api(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Commands to the running broker's dynsec control topic (as the runner's admin
        account); their responses. Blocking: runs its own event loop in a thread."""
        ctl = broker_dynsec.DynsecAccounts(self.host, self.port, self.admin, set())
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            return ex.submit(asyncio.run, ctl.run(commands)).result()

    def gateway_broker_toml(self) -> str:
        """The [broker] section that lets a gateway manage device accounts on this broker."""
        if self.auth == "password_file":
            return '[broker]\npassword_file = "%s"\npid_file = "%s"\n' % (self.passwd_path, self.pid_path)
        c = self.control
        return ('[broker]\ndynsec = true\ncontrol_username = "%s"\ncontrol_password = "%s"\n'
                'control_client_id = "%s"\n' % (c.username, c.password, c.client_id))

    def reload(self, timeout: float = 5.0) -> None:
        """SIGHUP: mosquitto re-reads password and ACL files.

        The signal is handled asynchronously, so wait for the "Reloading config" log line to be
        followed by the broker answering connections again; otherwise a client connecting right
        after add_user() could race the reload and be refused.
        """
        assert self._proc is not None
        before = self._size(self.log_path)
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto died on reload\n--- log tail ---\n{self.log_tail()}")
            if b"Reloading config" in self._read_from(self.log_path, before):
                # mosquitto logs this line and then re-reads the files synchronously in its
                # single-threaded loop, so any CONNECT sent from now on sees the new files.
                return
            time.sleep(0.005)
        raise BrokerError(f"mosquitto did not reload in time\n--- log tail ---\n{self.log_tail()}")

    @property
    def users(self) -> dict[str, str]:
        return dict(self._users)

    # ----------------------------------------------------------------- files

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persist_dir.mkdir(exist_ok=True)
        lines = [
            "# generated by simulator/broker.py; rewritten on every start",
            f"listener {self.port} {self.host}",
        ]
        if self.tls_files is not None:
            cert, key = self.tls_files
            lines += [f"listener {self.tls_port} {self.host}", f"certfile {cert}", f"keyfile {key}"]
        lines.append("allow_anonymous false")
        if self.auth == "password_file":
            self._write_passwd()
            lines.append(f"password_file {self.passwd_path}")
            if self._acl is not None:
                self.acl_path.write_text(self._acl)
                lines.append(f"acl_file {self.acl_path}")
        else:
            self._write_dynsec()
            lines += broker_dynsec.mosquitto_lines(self.dynsec_path)
        log_types = ["error", "warning", "notice", "information"]
        if self._verbose:
            log_types += ["subscribe", "unsubscribe", "debug"]
        lines += [
            "persistence true",
            # mosquitto concatenates location and file name, hence the trailing slash.
            f"persistence_location {self.persist_dir}/",
            "persistence_file mosquitto.db",
            # Also save every second while running, so a SIGKILLed broker loses at most ~1 s;
            # a SIGTERM (stop/restart) always writes the db.
            "autosave_interval 1",
            "autosave_on_changes false",
            f"pid_file {self.pid_path}",
            f"log_dest file {self.log_path}",
            *(f"log_type {t}" for t in log_types),
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            "max_inflight_messages 20",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Started as root, mosquitto drops to user "mosquitto" and then cannot read files in a
            # root-owned tmp dir (exit code 13). Staying root is fine for a loopback test broker.
            lines.append("user root")
        self.conf_path.write_text("\n".join(lines) + "\n")

    # ----------------------------------------------------------------- dynsec

    def _rules(self) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str]]]:
        """The ACL text as (per-user topic rules, pattern rules), each (access, topic)."""
        users: dict[str, list[tuple[str, str]]] = {}
        patterns: list[tuple[str, str]] = []
        current: list[tuple[str, str]] | None = None
        for raw in (self._acl or "").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            if word == "user":
                current = users.setdefault(rest, [])
                continue
            if word not in ("topic", "pattern"):
                raise BrokerError(f"ACL line {raw!r}: expected user, topic or pattern")
            access, _, topic = rest.partition(" ")
            if not topic:
                access, topic = "readwrite", access
            if access not in ("read", "write", "readwrite", "deny"):
                raise BrokerError(f"ACL line {raw!r}: Invalid topic access type {access!r}")
            if word == "pattern":
                patterns.append((access, topic))
            elif current is not None:
                current.append((access, topic))
            # topic lines before any user line are for anonymous clients: none are allowed
        return users, patterns

    def _client_id(self, name: str) -> str | None:
        users, _ = self._rules()
        return self._client_ids.get(name, None if name in users else name)

    def _user_role(self, name: str) -> dict[str, Any]:
        users, patterns = self._rules()
        cid = self._client_id(name) or name
        rules = users.get(name, []) + [(a, t.replace("%u", name).replace("%c", cid)) for a, t in patterns]
        acls: list[dict[str, Any]] = []
        for access, topic in rules:
            types = {"read": ["publishClientReceive", "subscribePattern"], "write": ["publishClientSend"],
                     "readwrite": ["publishClientSend", "publishClientReceive", "subscribePattern"],
                     "deny": ["publishClientSend", "publishClientReceive", "subscribePattern"]}[access]
            for t in types:
                # deny first: dynsec takes the highest priority match
                acls.append({"acltype": t, "topic": topic, "allow": access != "deny",
                             "priority": 10 if access == "deny" else 0})
                if t == "subscribePattern" and access != "deny" and not topic.startswith("$"):
                    # The same filter as an MQTT 5 shared subscription of any group (several
                    # gateway instances): dynsec checks the whole $share/<group>/... filter.
                    acls.append({"acltype": t, "topic": "$share/+/" + topic, "allow": True, "priority": 0})
        return {"rolename": self._role_name(name), "acls": acls}

    def _role_name(self, name: str) -> str:
        """A device (no `user` block) gets the role name the gateway gives device accounts, so
        the gateway may re-register it; any other account its own ACL role."""
        users, _ = self._rules()
        return "acl-" + name if name in users else broker_dynsec.device_role(name)

    def _client(self, name: str) -> dict[str, Any]:
        return broker_dynsec.client_entry(name, self._users[name], self._client_id(name),
                                          [self._role_name(name)])

    def _write_dynsec(self) -> None:
        """Create the plugin's file, or bring our users up to date in the one the broker
        saved (accounts the gateway created through the control API are kept)."""
        cfg: dict[str, Any] = {}
        try:
            saved = json.loads(self.dynsec_path.read_text())
        except FileNotFoundError:
            saved = None
        except ValueError as e:
            raise BrokerError(f"{self.dynsec_path} is not JSON: {e}") from None
        if isinstance(saved, dict):
            cfg = saved
        base = broker_dynsec.bootstrap([self.control, self.admin], [])
        ours = {c["username"]: c for c in [self._client(u) for u in self._users] + base["clients"]}
        roles = {r["rolename"]: r for r in [self._user_role(u) for u in self._users] + base["roles"]}
        cfg["clients"] = [c for c in cfg.get("clients", []) if c.get("username") not in ours] + [
            *ours.values()]
        cfg["roles"] = [r for r in cfg.get("roles", []) if r.get("rolename") not in roles] + [*roles.values()]
        cfg.setdefault("groups", [])
        cfg["defaultACLAccess"] = dict(broker_dynsec.DEFAULT_ACL_ACCESS)
        broker_dynsec.write_file(self.dynsec_path, cfg)

    def _write_passwd(self) -> None:
        """Hash our users with one ``mosquitto_passwd -U`` call and merge them into the file.

        Our users are hashed from plaintext every time because ``-U`` hashes every line blindly:
        running it on an already hashed file would hash the hashes (and ``-U`` on an empty file
        exits 1). Entries for other users already in the file (written by the gateway with
        ``mosquitto_passwd -b`` when it registers a device) are kept verbatim.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, password in self._users.items():
            if not name or ":" in name or "\n" in name or "\n" in password:
                raise ValueError(f"invalid MQTT username/password for the password file: {name!r}")
        tmp = self.passwd_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # hashes: owner only
        os.fchmod(fd, 0o600)
        os.close(fd)
        tmp.write_text("".join(f"{u}:{p}\n" for u, p in self._users.items()))
        if self._users:
            res = subprocess.run(
                [_find(MOSQUITTO_PASSWD, "mosquitto_passwd"), "-U", str(tmp)],
                capture_output=True,
                check=False,
            )
            if res.returncode != 0:
                raise BrokerError(f"mosquitto_passwd -U failed: {res.stderr.decode(errors='replace')}")
        ours = tmp.read_text()
        try:
            existing = self.passwd_path.read_text().splitlines()
        except FileNotFoundError:
            existing = []
        kept = [ln for ln in existing if ln.strip() and ln.partition(":")[0] not in self._users]
        tmp.write_text("".join(f"{ln}\n" for ln in kept) + ours)
        os.replace(tmp, self.passwd_path)  # atomic: a concurrent SIGHUP never sees a half file

    # ----------------------------------------------------------------- logs

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    @staticmethod
    def _read_from(path: Path, offset: int) -> bytes:
        """What was appended to a log since ``offset`` (logs are appended across restarts)."""
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the log file plus anything printed on stderr (config errors land there)."""
        parts: list[str] = []
        for path in (self.stderr_path, self.log_path):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if text.strip():
                parts.append(f"[{path.name}]\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) if parts else "(no log output)"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Mosquitto {self.host}:{self.port} {state} workdir={self.workdir}>"
