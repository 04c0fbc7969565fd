"""`hcp-gateway doctor`: is this hall server set up right, and is it working now?

One line per check, `ok`, `warn`, `FAIL` or `skip`; exit 1 when any check failed:

  config    the config file loads (every error at once) and others cannot read it (passwords)
  store     it opens, its schema is this gateway's, its own integrity check passes (SQLite:
            quick_check (--full: integrity_check) and foreign keys; PostgreSQL: every table
            read through), records and size
  service   a gateway instance serving this store has said so within the last 20 s
  broker    the broker takes the gateway's account: the running service's own connection
            (never a second connection with its client id, which would knock it off); with
            no service running, one CONNECT with the gateway's account, client id and
            persistent session, closed at once without acknowledging anything (its queued
            messages stay queued)
  accounts  dynsec: the control account works, the gateway's account is tied to its client
            id with the gateway's role, the default ACL denies, every registered device has
            its broker account; password file: the file, its mode, the broker's pid
  acl       anonymous clients are refused; with dynsec a throw-away device account
            (hcp-doctor-probe-*, a name no device may take) is refused another device's
            topic and another client id, and may use its own; then deleted
  platform  [uplink]: the platform answers and takes the credentials (a token request)
  clock     the clock is not behind what the store already holds, nor off the platform's
            clock (its HTTP Date), and NTP is synchronised where timedatectl can tell
  disk      each watched file system ([alerts] disk_paths, default the store's directory)
            has room for `--days` days (default [alerts] disk_min_days) at the rate the store
            grew over the last 7 days, and more than [alerts] disk_min_free_pct free
  tls       certificates configured for MQTT/HTTPS are valid for 30 days more, keys 0600
  alerts    open alerts (warn), and whether [notify] sends them anywhere
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import secrets
import shutil
import ssl
import stat
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway import broker_dynsec, tls
from gateway.alerts import AlertSettings, disk_figures, store_growth_per_day
from gateway.api.settings import HttpSettings
from gateway.clock import fmt_ms, now_ms
from gateway.config import Config, ConfigError, load_config
from gateway.instances import FRESH_MS
from gateway.store import Store, claim_single_instance, open_store
from gateway.store.errors import StoreError
from gateway.store.migrate import latest_version
from gateway.store.rows import InstanceBeat

PROBE_PREFIX = "hcp-doctor-probe-"
CHECK_TIMEOUT_S = 20.0
MQTT_TIMEOUT_S = 5.0
CLOCK_SLACK_MS = 60_000
PLATFORM_SKEW_S = 30.0
CERT_FAIL_DAYS = 30
CERT_WARN_DAYS = 90

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return "%-5s %-9s %s" % ("FAIL" if self.status == FAIL else self.status, self.name, self.detail)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Context:
    config_path: str
    days: int | None
    full: bool
    cfg: Config | None = None
    store: Store | None = None
    instances: list[InstanceBeat] | None = None


def _mb(n: float) -> str:
    return "%.1f GB" % (n / 1e9) if n >= 1e9 else "%.1f MB" % (n / 1e6)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# ---- a minimal MQTT 3.1.1 client: CONNECT, SUBSCRIBE, their answers, DISCONNECT -------------

class MqttProbeError(Exception):
    pass


CONNACK_TEXT = {1: "unacceptable protocol version", 2: "client id refused", 3: "broker unavailable",
                4: "bad user name or password", 5: "not authorised"}


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray([first])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    mult, n = 1, 0
    for _ in range(4):
        b = (await reader.readexactly(1))[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first, await reader.readexactly(n)


class RawMqtt:
    """One short connection; nothing it receives is ever acknowledged."""

    def __init__(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None) -> None:
        self.host, self.port, self.ssl_ctx = host, port, ssl_ctx
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._pid = 0

    async def connect(self, client_id: str, username: str | None, password: str | None,
                      clean: bool = True) -> int:
        """CONNACK's return code (0 = accepted)."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_ctx,
                server_hostname=self.host if self.ssl_ctx is not None else None), MQTT_TIMEOUT_S)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise MqttProbeError("%s:%d: %s" % (self.host, self.port, _why(e))) from None
        self.reader, self.writer = reader, writer
        flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password else 0)
        body = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + _utf8(client_id)
        if username is not None:
            body += _utf8(username)
        if password:
            body += _utf8(password)
        writer.write(_packet(0x10, body))
        try:
            first, rest = await asyncio.wait_for(_read_packet(reader), MQTT_TIMEOUT_S)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise MqttProbeError("%s:%d closed the connection at CONNECT" % (self.host, self.port)) from None
        except TimeoutError:
            raise MqttProbeError("%s:%d did not answer CONNECT" % (self.host, self.port)) from None
        if first >> 4 != 2 or len(rest) != 2:
            raise MqttProbeError("%s:%d did not answer like an MQTT broker" % (self.host, self.port))
        return rest[1]

    async def subscribe(self, topic: str) -> int:
        """The SUBACK return code for one topic (0x80 = refused)."""
        assert self.reader is not None and self.writer is not None
        self._pid += 1
        self.writer.write(_packet(0x82, struct.pack("!H", self._pid) + _utf8(topic) + b"\x01"))
        deadline = time.monotonic() + MQTT_TIMEOUT_S
        while True:
            try:
                first, rest = await asyncio.wait_for(_read_packet(self.reader),
                                                     max(0.1, deadline - time.monotonic()))
            except (asyncio.IncompleteReadError, ConnectionError):
                raise MqttProbeError("the broker closed the connection at SUBSCRIBE %s" % topic) from None
            if first >> 4 == 9 and rest[:2] == struct.pack("!H", self._pid):
                return rest[2]

    async def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.write(b"\xe0\x00")   # DISCONNECT: leave normally (no last will)
                await asyncio.wait_for(self.writer.drain(), 2)
            except (OSError, TimeoutError, ssl.SSLError):
                pass
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except (OSError, TimeoutError, ssl.SSLError):
                pass
            self.writer = None


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "no answer within %.0f s" % MQTT_TIMEOUT_S
    if isinstance(e, ssl.SSLCertVerificationError):
        return "TLS: %s" % e.verify_message
    if isinstance(e, ssl.SSLError):
        return "TLS: %s" % (e.reason or e)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _mqtt_ssl(cfg: Config) -> ssl.SSLContext | None:
    return tls.client_context(cfg.mqtt.tls_ca) if cfg.mqtt.tls_ca is not None else None


async def _try_connect(cfg: Config, client_id: str, username: str | None, password: str | None,
                       clean: bool = True) -> int:
    c = RawMqtt(cfg.mqtt.host, cfg.mqtt.port, _mqtt_ssl(cfg))
    try:
        return await c.connect(client_id, username, password, clean)
    finally:
        await c.close()


def _dynsec(cfg: Config) -> broker_dynsec.DynsecAccounts:
    b = cfg.broker
    return broker_dynsec.DynsecAccounts(
        cfg.mqtt.host, cfg.mqtt.port, broker_dynsec.Account(b.control_username, b.control_password,
                                                            b.control_client_id),
        set(), cfg.mqtt.tls_ca, timeout_s=MQTT_TIMEOUT_S)


def _data(r: dict[str, Any]) -> dict[str, Any]:
    d = r.get("data")
    return d if isinstance(d, dict) else {}


# ---- the checks --------------------------------------------------------------------------------

async def check_config(ctx: Context) -> Check:
    p = Path(ctx.config_path)
    try:
        ctx.cfg = load_config(p)
    except ConfigError as e:
        lines = str(e).splitlines()
        more = " (and %d more)" % (len(lines) - 1) if len(lines) > 1 else ""
        return Check("config", FAIL, "%s: %s%s" % (p, lines[0] if lines else e, more))
    mode = _mode(p)
    if mode & 0o004:
        return Check("config", FAIL, "%s is readable by every user (mode %04o) and holds passwords: "
                     "chmod 640 %s" % (p, mode, p))
    return Check("config", OK, "%s (mode %04o)" % (ctx.cfg.path or p, mode))


async def check_store(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None
    where = str(cfg.store.path) if cfg.store.path is not None else "postgresql"
    try:
        ctx.store = await open_store(cfg.store.url, run_migrations=False, create=False)
    except StoreError as e:
        return Check("store", FAIL, str(e))
    except OSError as e:
        return Check("store", FAIL, "%s: %s" % (where, e.strerror or e))
    store = ctx.store
    version, problems, count, size = await store.read(lambda tx: (
        tx.schema.version(), tx.schema.integrity(ctx.full), tx.ops.record_count(), tx.ops.database_bytes()))
    ctx.instances = await store.read(lambda tx: tx.ops.instances())
    latest = latest_version(store.backend)
    label = "%s %s" % (store.backend, cfg.store.path or store.label)
    if problems:
        return Check("store", FAIL, "%s is damaged: %s%s" % (label, problems[0],
                                                              " (and %d more)" % (len(problems) - 1)
                                                              if len(problems) > 1 else ""))
    facts = "%s: schema %d, %s ok, %d records, %s" % (
        label, version, "integrity_check" if ctx.full or store.backend != "sqlite" else "quick_check", count,
        _mb(size))
    if cfg.store.path is not None and _mode(cfg.store.path) & 0o077:
        return Check("store", FAIL, "%s; but %s is readable by others (mode %04o) and holds device keys: "
                     "chmod 600 %s" % (facts, cfg.store.path, _mode(cfg.store.path), cfg.store.path))
    if version < latest:
        return Check("store", WARN, "%s; this gateway knows schema %d: the service migrates it when it "
                     "starts" % (facts, latest))
    return Check("store", OK, facts)


def _mine(ctx: Context) -> list[InstanceBeat]:
    """Fresh heartbeats of instances using this config's MQTT client id."""
    assert ctx.cfg is not None
    now = now_ms()
    cid = ctx.cfg.mqtt.client_id
    return [b for b in ctx.instances or [] if now - b.seen_ms <= FRESH_MS and b.client_id == cid]


async def check_service(ctx: Context) -> Check:
    assert ctx.cfg is not None
    now = now_ms()
    fresh = [b for b in ctx.instances or [] if now - b.seen_ms <= FRESH_MS]
    mine = _mine(ctx)
    if not fresh:
        return Check("service", FAIL, "no gateway serves this store (none seen in the last %d s): "
                     "systemctl status hcp-gateway" % (FRESH_MS // 1000))
    if not mine:
        return Check("service", WARN, "%d instance(s) serve this store, none with this config's client id %s"
                     % (len(fresh), ctx.cfg.mqtt.client_id))
    b = mine[0]
    return Check("service", OK, "%s running since %s, version %s%s" % (
        b.instance, fmt_ms(b.started_ms, ctx.cfg.hall.tz), b.version,
        " (+%d more instances)" % (len(fresh) - 1) if len(fresh) > 1 else ""))


async def check_broker(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None
    m = cfg.mqtt
    where = "%s:%d%s" % (m.host, m.port, " (TLS)" if m.tls_ca else "")
    mine = _mine(ctx)
    if mine:
        b = mine[0]
        if b.mqtt_ok:
            return Check("broker", OK, "%s takes the gateway's account %s: the service (%s) is connected"
                         % (where, m.username, b.instance))
        return Check("broker", FAIL, "the service (%s) is not connected to %s: %s"
                     % (b.instance, where, b.mqtt_error or "not connected yet"))
    # No service with this client id runs: one CONNECT as the gateway, its persistent session
    # kept (clean=False), nothing acknowledged. On SQLite, hold the store's instance lock meanwhile
    # so no service starts beside the probe.
    try:
        lock = claim_single_instance(cfg.store.url) if cfg.store.path is not None else None
    except StoreError as e:
        return Check("broker", FAIL, "%s, but it has not reported its broker connection" % e)
    try:
        rc = await _try_connect(cfg, m.client_id, m.username, m.password, clean=False)
    except MqttProbeError as e:
        return Check("broker", FAIL, "cannot reach %s: %s" % (where, e))
    except tls.TlsError as e:
        return Check("broker", FAIL, str(e))
    finally:
        if lock is not None:
            lock.release()
    if rc:
        return Check("broker", FAIL, "%s refused the gateway's account %s (client id %s): %s"
                     % (where, m.username, m.client_id, CONNACK_TEXT.get(rc, "code %d" % rc)))
    return Check("broker", OK, "%s takes the gateway's account %s (client id %s; no service running, "
                 "tested with one connection)" % (where, m.username, m.client_id))


async def check_accounts(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None and ctx.store is not None
    b = cfg.broker
    devices = [d.device_id for d in await ctx.store.read(lambda tx: tx.devices.all(enabled_only=True))]
    if not b.dynsec:
        return await _password_file_accounts(cfg, devices)
    try:
        got = await _dynsec(cfg).run([
            {"command": "getClient", "username": cfg.mqtt.username},
            {"command": "getDefaultACLAccess"},
            {"command": "listClients", "verbose": False, "count": -1, "offset": 0}])
    except Exception as e:  # noqa: BLE001 - BrokerAccountsError and anything the broker does
        return Check("accounts", FAIL, "dynsec control account %s: %s" % (b.control_username, e))
    client, acl, listing = got[0], got[1], got[2]
    problems = []
    if client.get("error"):
        problems.append("the gateway's account %s: %s" % (cfg.mqtt.username, client["error"]))
    else:
        c = _data(client).get("client", {})
        roles = [r.get("rolename") for r in c.get("roles", []) if isinstance(r, dict)]
        if c.get("clientid") != cfg.mqtt.client_id:
            problems.append("the gateway's account %s is tied to client id %s, not %s"
                            % (cfg.mqtt.username, c.get("clientid") or "(none: any)", cfg.mqtt.client_id))
        if broker_dynsec.GATEWAY_ROLE not in roles:
            problems.append("the gateway's account %s lacks role %s (hcp-gateway broker init gives it)"
                            % (cfg.mqtt.username, broker_dynsec.GATEWAY_ROLE))
    allowed = [a.get("acltype") for a in _data(acl).get("acls", []) if isinstance(a, dict)
               and a.get("allow") and a.get("acltype") != "unsubscribe"]
    if allowed:
        problems.append("the default ACL allows %s (must deny)" % ", ".join(map(str, allowed)))
    names = {x if isinstance(x, str) else x.get("username") for x in _data(listing).get("clients", [])}
    missing = sorted(set(devices) - names)
    if missing:
        problems.append("%d registered device(s) have no broker account: %s (register them again: "
                        "flash.py provision, or hcp-gateway devices add)" % (
                            len(missing), ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")))
    if problems:
        return Check("accounts", FAIL, "; ".join(problems))
    return Check("accounts", OK, "dynsec: control account works, %s tied to client id %s, default ACL "
                 "denies, all %d registered devices have their account"
                 % (cfg.mqtt.username, cfg.mqtt.client_id, len(devices)))


def _proc_name(pid_file: Path) -> tuple[int, str]:
    pid = int(pid_file.read_text().strip())
    return pid, Path("/proc/%d/comm" % pid).read_text().strip()


def _passwd_users(p: Path) -> set[str]:
    return {ln.split(":", 1)[0] for ln in p.read_text(errors="replace").splitlines() if ":" in ln}


async def _password_file_accounts(cfg: Config, devices: list[str]) -> Check:
    b = cfg.broker
    if b.password_file is None:
        return Check("accounts", WARN, "[broker] manages no accounts (no dynsec, no password_file): device "
                     "accounts are made by hand")
    p = b.password_file
    try:
        mode = _mode(p)
    except OSError:
        return Check("accounts", FAIL, "password file %s does not exist" % p)
    if mode & 0o004:
        return Check("accounts", FAIL, "password file %s is readable by every user (mode %04o)"
                     % (p, _mode(p)))
    users = _passwd_users(p)
    missing = sorted(set(devices) - users)
    if missing:
        return Check("accounts", FAIL, "%d registered device(s) are not in %s: %s"
                     % (len(missing), p, ", ".join(missing[:5])))
    if b.pid_file is None:
        return Check("accounts", WARN, "password file %s ok, but no [broker] pid_file: new devices wait for "
                     "a broker restart" % p)
    try:
        pid, comm = _proc_name(b.pid_file)
    except (OSError, ValueError):
        return Check("accounts", FAIL, "pid file %s does not name a running process: the broker is not "
                     "told about new devices" % b.pid_file)
    if "mosquitto" not in comm:
        return Check("accounts", FAIL, "pid file %s names process %d (%s), not mosquitto"
                     % (b.pid_file, pid, comm))
    return Check("accounts", WARN, "password file %s (%d devices) and broker pid %d ok; without dynsec any "
                 "device may use any client id (docs/security.md)" % (p, len(devices), pid))


async def check_acl(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None
    try:
        rc = await _try_connect(cfg, "hcp-doctor-anon-" + secrets.token_hex(3), None, None)
    except MqttProbeError as e:
        return Check("acl", FAIL, "cannot reach the broker: %s" % e)
    if rc == 0:
        return Check("acl", FAIL, "the broker accepts anonymous clients: set allow_anonymous false")
    if not cfg.broker.dynsec:
        return Check("acl", WARN, "anonymous clients refused; the per-device ACL is checked with dynsec only "
                     "([broker] dynsec = true)")
    ctl = _dynsec(cfg)
    probe, other = PROBE_PREFIX + secrets.token_hex(4), PROBE_PREFIX + "other"
    password = secrets.token_urlsafe(18)
    role = broker_dynsec.device_role(probe)
    try:
        await _remove_stale_probes(ctl)
        got = await ctl.run([
            {"command": "createRole", "rolename": role, "acls": broker_dynsec.device_acls(probe)},
            {"command": "createClient", "username": probe, "password": password, "clientid": probe,
             "roles": [{"rolename": role}]}])
        errors = [r["error"] for r in got if r.get("error")]
        if errors:
            return Check("acl", FAIL, "could not create the probe account: %s" % errors[0])
        try:
            return await _probe(cfg, probe, other, password)
        finally:
            await ctl.run([{"command": "deleteClient", "username": probe},
                           {"command": "deleteRole", "rolename": role}])
    except MqttProbeError as e:
        return Check("acl", FAIL, "probe device: %s" % e)
    except Exception as e:  # noqa: BLE001 - BrokerAccountsError and the like
        return Check("acl", FAIL, "dynsec control account: %s" % e)


async def _remove_stale_probes(ctl: broker_dynsec.DynsecAccounts) -> None:
    """Probe accounts a doctor run left behind (killed half-way)."""
    got = await ctl.run([{"command": "listClients", "verbose": False, "count": -1, "offset": 0}])
    stale = [x for x in _data(got[0]).get("clients", []) if isinstance(x, str) and x.startswith(PROBE_PREFIX)]
    for name in stale:
        await ctl.run([{"command": "deleteClient", "username": name},
                       {"command": "deleteRole", "rolename": broker_dynsec.device_role(name)}])


async def _probe(cfg: Config, probe: str, other: str, password: str) -> Check:
    rc = await _try_connect(cfg, probe + "-x", probe, password)
    if rc == 0:
        return Check("acl", FAIL, "a device account connected with another client id: accounts are not tied "
                     "to their client ids")
    c = RawMqtt(cfg.mqtt.host, cfg.mqtt.port, _mqtt_ssl(cfg))
    try:
        rc = await c.connect(probe, probe, password)
        if rc:
            return Check("acl", FAIL, "the probe device account was refused: %s" % CONNACK_TEXT.get(rc, rc))
        own = await c.subscribe("hcp/1/down/%s/#" % probe)
        foreign = await c.subscribe("hcp/1/down/%s/#" % other)
        everything = await c.subscribe("hcp/#")
    finally:
        await c.close()
    if foreign != 0x80 or everything != 0x80:
        return Check("acl", FAIL, "ACL NOT in force: a device may subscribe to %s"
                     % ("another device's commands" if foreign != 0x80 else "hcp/#"))
    if own == 0x80:
        return Check("acl", FAIL, "a device may not subscribe to its own commands: devices cannot work")
    return Check("acl", OK, "anonymous refused; a device account is tied to its client id, may read only "
                 "its own topics (another device's and hcp/# refused)")


async def check_platform(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None
    settings = cfg.sections.get("uplink")
    if settings is None or not settings.enabled:
        return Check("platform", SKIP, "no [uplink] (or enabled = false): nothing is pushed")
    from gateway.uplink.client import PlatformClient, PlatformRefused, PlatformUnavailable
    client = PlatformClient(settings)
    try:
        await client.token()
    except PlatformRefused as e:
        return Check("platform", FAIL, "%s refused the credentials ([uplink] app_key / app_secret): %s"
                     % (settings.url, e.reason))
    except PlatformUnavailable as e:
        return Check("platform", FAIL, "%s cannot be reached: %s" % (settings.url, e.reason))
    finally:
        await client.close()
    return Check("platform", OK, "%s takes the credentials (app_key %s)" % (settings.url, settings.app_key))


async def _platform_skew_s(cfg: Config) -> float | None:
    """The platform's clock minus ours, by its HTTP Date header (None when it cannot tell)."""
    settings = cfg.sections.get("uplink")
    if settings is None or not settings.enabled:
        return None
    import aiohttp
    try:
        async with aiohttp.ClientSession() as s, s.get(
                settings.url + settings.token_path, timeout=aiohttp.ClientTimeout(total=5)) as r:
            date = r.headers.get("Date")
            ours = time.time()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    if not date:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
    return theirs + 0.5 - ours   # Date has whole seconds: its middle


def _ntp_synchronised() -> bool | None:
    exe = shutil.which("timedatectl")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    v = out.stdout.strip()
    return {"yes": True, "no": False}.get(v) if out.returncode == 0 else None


async def check_clock(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None and ctx.store is not None
    now = now_ms()
    newest = await ctx.store.read(lambda tx: tx.ops.newest_times())
    ahead = {k: v for k, v in newest.items() if v is not None and v > now + CLOCK_SLACK_MS}
    if ahead:
        k, v = max(ahead.items(), key=lambda kv: kv[1])
        return Check("clock", FAIL, "the clock (%s) is %.0f s behind the newest %s time in the store (%s): "
                     "was it set back? fix the time (NTP) before devices are given it"
                     % (fmt_ms(now, cfg.hall.tz), (v - now) / 1000, k.replace("_", " "),
                        fmt_ms(v, cfg.hall.tz)))
    skew = await _platform_skew_s(cfg)
    if skew is not None and abs(skew) > PLATFORM_SKEW_S:
        return Check("clock", FAIL, "the clock is %.0f s %s the platform's: fix the time (NTP)"
                     % (abs(skew), "behind" if skew > 0 else "ahead of"))
    ntp = await asyncio.to_thread(_ntp_synchronised)
    facts = fmt_ms(now, cfg.hall.tz) + ("; %+.0f s from the platform" % -skew if skew is not None else "")
    if ntp is False:
        return Check("clock", WARN, facts + "; NTP is not synchronised (timedatectl)")
    return Check("clock", OK, facts + ("; NTP synchronised" if ntp else ""))


async def check_disk(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None and ctx.store is not None
    settings: AlertSettings = cfg.sections.get("alerts") or AlertSettings.from_config(cfg)
    days_needed = ctx.days if ctx.days is not None else settings.disk_min_days
    paths = list(settings.disk_paths) or [cfg.path.parent if cfg.path else Path.cwd()]
    growth = await store_growth_per_day(ctx.store, now_ms())
    worst: tuple[str, str] | None = None
    facts = []
    for p in paths:
        try:
            f = await asyncio.to_thread(disk_figures, p, growth)
        except OSError as e:
            return Check("disk", FAIL, "%s: %s" % (p, e.strerror or e))
        left = f.days_left
        text = "%s %s free (%.0f%%)" % (p, _mb(f.free_bytes), f.free_pct)
        facts.append(text)
        if f.free_pct < settings.disk_min_free_pct:
            worst = (FAIL, "%s: below %.0f%% ([alerts] disk_min_free_pct)"
                     % (text, settings.disk_min_free_pct))
        elif left is not None and left < days_needed:
            worst = (FAIL, "%s: %.0f days at %s/day, fewer than the %d needed" % (text, left, _mb(growth),
                                                                                   days_needed))
    if worst is not None:
        return Check("disk", worst[0], worst[1])
    rate = ("store grows %s/day: %s days at this rate" % (_mb(growth), "> %d" % days_needed)) if growth else \
        "the store did not grow in the last 7 days"
    return Check("disk", OK, "; ".join(facts) + "; " + rate)


def _cert_days(path: Path) -> tuple[float, str]:
    from cryptography import x509
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    soonest = min(certs, key=lambda c: c.not_valid_after_utc)
    left = (soonest.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    return left, soonest.subject.rfc4514_string()


async def check_tls(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None
    http = HttpSettings.from_config(cfg)
    files = [(p, what) for p, what in ((cfg.mqtt.tls_ca, "[mqtt] tls_ca"), (http.tls_cert, "[http] tls_cert"))
             if p is not None]
    if not files:
        return Check("tls", WARN, "no TLS configured: passwords and ratings cross the hall LAN in clear "
                     "(docs/security.md; hcp-gateway tls init)")
    facts, status = [], OK
    for p, what in files:
        try:
            left, subject = _cert_days(p)
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or e
            return Check("tls", FAIL, "%s %s cannot be read: %s" % (what, p, why))
        if left < CERT_FAIL_DAYS:
            return Check("tls", FAIL, "%s %s (%s) expires in %.0f days: hcp-gateway tls init --force"
                         % (what, p, subject, left))
        if left < CERT_WARN_DAYS:
            status = WARN
        facts.append("%s valid %.0f days more" % (p.name, left))
    if http.tls_key is not None:
        try:
            tls.check_private(http.tls_key)
        except tls.TlsError as e:
            return Check("tls", FAIL, str(e))
    return Check("tls", status, "; ".join(facts))


async def check_alerts(ctx: Context) -> Check:
    cfg = ctx.cfg
    assert cfg is not None and ctx.store is not None
    rows = await ctx.store.read(lambda tx: tx.alerts.open_alerts())
    notify = cfg.sections.get("notify")
    channels = len(notify.channels) if notify is not None else 0
    where = "%d notification channel(s)" % channels if channels else \
        "no [notify] channel: alerts reach nobody"
    if rows:
        keys = ", ".join(a.cond_key for a in rows[:5]) + (" ..." if len(rows) > 5 else "")
        return Check("alerts", WARN, "%d open: %s; %s" % (len(rows), keys, where))
    return Check("alerts", OK if channels else WARN, "none open; " + where)


CHECKS: list[tuple[str, Callable[[Context], Awaitable[Check]], bool]] = [
    # name, check, needs the store
    ("store", check_store, False), ("service", check_service, True), ("broker", check_broker, True),
    ("accounts", check_accounts, True), ("acl", check_acl, False), ("platform", check_platform, False),
    ("clock", check_clock, True), ("disk", check_disk, True), ("tls", check_tls, False),
    ("alerts", check_alerts, True),
]


async def run(config_path: str, days: int | None = None, full: bool = False) -> list[Check]:
    ctx = Context(config_path, days, full)
    out = [await check_config(ctx)]
    if ctx.cfg is None:
        return out + [Check(name, SKIP, "no usable config") for name, _, _ in CHECKS]
    try:
        for name, fn, needs_store in CHECKS:
            if needs_store and ctx.store is None:
                out.append(Check(name, SKIP, "no usable store"))
                continue
            try:
                out.append(await asyncio.wait_for(fn(ctx), CHECK_TIMEOUT_S))
            except TimeoutError:
                out.append(Check(name, FAIL, "no answer within %.0f s" % CHECK_TIMEOUT_S))
            except Exception as e:  # noqa: BLE001 - a check that breaks is a failed check, one line
                out.append(Check(name, FAIL, "%s: %s" % (type(e).__name__, " ".join(str(e).split())[:300])))
    finally:
        if ctx.store is not None:
            await ctx.store.close()
    return out


def report(checks: list[Check], as_json: bool) -> str:
    if as_json:
        return json.dumps({"ok": not any(c.status == FAIL for c in checks),
                           "checks": [c.as_dict() for c in checks]}, ensure_ascii=False, indent=1)
    return "\n".join(c.line() for c in checks)


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


