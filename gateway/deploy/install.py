"""The second half of `scripts/install.sh`: everything after the venv exists.

`python -m gateway.deploy.install [--root DIR] [options]` (install.sh passes its options on):

  users       haochaping (the gateway) and the broker's (Debian's mosquitto), system accounts
  directories with their owners and modes (below)
  TLS         the hall CA and server certificate (`hcp-gateway tls init`), a copy of the key for
              each service that serves TLS, each readable by that service's user only
  config      /etc/haochaping/gateway.toml with random passwords and tokens (kept when it exists:
              a re-run is an upgrade), 0640 root:haochaping
  broker      mosquitto.conf (loopback plain port, LAN TLS port, dynamic security, persistence,
              log file) and the plugin's file with this gateway's accounts (`hcp-gateway broker
              init`; kept when it exists: the broker owns it once it runs)
  store       `hcp-gateway init` as the service user (SQLite), or on PostgreSQL (--postgres: a
              local database with peer authentication; --store-url: any)
  systemd     hcp-mosquitto.service, hcp-gateway.service (Restart=always, sandboxed),
              hcp-backup.service + hcp-backup.timer; Debian's mosquitto.service is disabled
  logrotate   the broker's log file
  PATH        /usr/local/bin/hcp-gateway (runs as the service user), hcp-sim, flash.py

Layout (all under --root DIR when given: a dry run that touches nothing outside DIR, creates no
user and starts nothing, with every path in the written files inside DIR so that they work
there as they are):
  /opt/haochaping/src, /opt/haochaping/venv         root 0755 (install.sh)
  /etc/haochaping/gateway.toml                      root:haochaping 0640
  /etc/haochaping/secrets/                          haochaping 0700 (webhook URL, 0600)
  /etc/haochaping/tls/{ca,server}.pem               0644; ca.key, server.key root 0600
  /etc/haochaping/tls/gateway.key                   haochaping 0600 (HTTPS)
  /etc/haochaping/mosquitto/                        root:mosquitto 0750
      mosquitto.conf 0640, server.key mosquitto 0600
  /var/lib/haochaping/gateway.db                    haochaping, dir 0750, file 0600
  /var/lib/hcp-mosquitto/{dynsec.json,mosquitto.db} mosquitto 0700 / 0600
  /var/log/hcp-mosquitto/mosquitto.log              mosquitto 0750
  /var/backups/haochaping/                          haochaping 0700 (the timer's backups, 0600)
"""

from __future__ import annotations

import argparse
import getpass
import glob
import grp
import json
import os
import pwd
import re
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"
MOSQUITTO = "/usr/sbin/mosquitto"
PG_SOCKET = "/var/run/postgresql"


class InstallError(Exception):
    """Why the install stopped: one line."""


_PLACEHOLDER = re.compile(r"@\{([a-z_]+)\}")


def render(name: str, values: dict[str, Any]) -> str:
    """@{name} placeholders only: units and shell scripts are full of $ (and "$@"), which stay
    as they are."""
    text = (TEMPLATES / (name + ".in")).read_text(encoding="utf-8")
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise InstallError("template %s needs %s" % (name, ", ".join(missing)))
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


@dataclass
class Plan:
    root: Path
    user: str
    broker_user: str
    hall: str
    hosts: list[str]
    timezone: str
    bind: str
    mqtt_port: int
    mqtts_port: int
    http_port: int
    postgres: bool
    store_url: str | None
    webhook: str | None
    backup_at: str
    keep: int
    systemd: bool
    dry: bool                  # --root given: nothing outside root, no users, no services
    notes: list[str] = field(default_factory=list)

    def p(self, path: str) -> Path:
        """A system path inside the root."""
        return self.root / path.lstrip("/")

    @property
    def values(self) -> dict[str, Any]:
        group = _group_of(self.user)
        broker_group = _group_of(self.broker_user)
        pg = self.postgres or (self.store_url or "").startswith(("postgresql://", "postgres://"))
        return {
            "src": self.p("/opt/haochaping/src"), "venv": self.p("/opt/haochaping/venv"),
            "config": self.p("/etc/haochaping/gateway.toml"), "state": self.p("/var/lib/haochaping"),
            "backups": self.p("/var/backups/haochaping"), "tls_dir": self.p("/etc/haochaping/tls"),
            "broker_key": self.p("/etc/haochaping/mosquitto/server.key"),
            "mosquitto_conf": self.p("/etc/haochaping/mosquitto/mosquitto.conf"),
            "broker_state": self.p("/var/lib/hcp-mosquitto"), "broker_log": self.p("/var/log/hcp-mosquitto"),
            "user": self.user, "group": group, "broker_user": self.broker_user, "broker_group": broker_group,
            "mosquitto": MOSQUITTO, "dynsec_plugin": dynsec_plugin(), "bind": self.bind,
            "mqtt_port": self.mqtt_port, "mqtts_port": self.mqtts_port, "timezone": self.timezone,
            "backup_at": self.backup_at, "keep": self.keep,
            "after": " postgresql.service" if self.postgres else "",
            "pg": pg,
        }


def _group_of(user: str) -> str:
    try:
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return user


def dynsec_plugin() -> str:
    """Where Debian's mosquitto keeps the plugin on this machine's architecture."""
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so"))
    if not found:
        raise InstallError("mosquitto's dynamic security plugin is not installed (apt-get install mosquitto)")
    return found[0]


# ---- files, owners and modes ------------------------------------------------------------------

def _ids(plan: Plan, user: str | None) -> tuple[int, int] | None:
    """uid, gid to chown to (None: leave as created, e.g. a dry run without that user)."""
    if user is None or os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def _chown(plan: Plan, path: Path, user: str | None, group_of: str | None = None) -> None:
    ids = _ids(plan, user)
    if ids is None:
        return
    gid = ids[1]
    if group_of is not None:
        g = _ids(plan, group_of)
        gid = g[1] if g is not None else gid
    os.chown(path, ids[0], gid)


def make_dir(plan: Plan, path: Path, mode: int, owner: str | None = None,
             group_of: str | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    _chown(plan, path, owner or "root", group_of)


def write_file(plan: Plan, path: Path, text: str, mode: int, owner: str | None = None,
               group_of: str | None = None) -> None:
    """Written with its final mode from the start (a secret is never readable by others)."""
    tmp = path.with_name("." + path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o700)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    _chown(plan, tmp, owner or "root", group_of)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def set_owner(plan: Plan, path: Path, mode: int, owner: str, group_of: str | None = None) -> None:
    os.chmod(path, mode)
    _chown(plan, path, owner, group_of)


def run(cmd: list[str], what: str, user: str | None = None, env: dict[str, str] | None = None) -> str:
    if user is not None and os.geteuid() == 0 and user != "root" and _ids_exist(user):
        cmd = ["runuser", "-u", user, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if out.returncode != 0:
        lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
        raise InstallError("%s failed: %s" % (what, lines[-1] if lines else "exit %d" % out.returncode))
    return out.stdout


def _ids_exist(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


# ---- the steps --------------------------------------------------------------------------------

def step_users(plan: Plan) -> None:
    if plan.dry:
        plan.notes.append("dry run: no system users created (files belong to %s)" % getpass.getuser())
        return
    if not _ids_exist(plan.user):
        # useradd (package passwd, always there), not adduser (missing on minimal images).
        run(["useradd", "--system", "--user-group", "--home-dir", str(plan.p("/var/lib/haochaping")),
             "--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", "haochaping gateway",
             plan.user], "creating user %s" % plan.user)
    if not _ids_exist(plan.broker_user):
        raise InstallError("the broker's user %s does not exist (apt-get install mosquitto creates it)"
                           % plan.broker_user)


def step_dirs(plan: Plan) -> None:
    u, b = plan.user, plan.broker_user
    make_dir(plan, plan.p("/etc/haochaping"), 0o755)
    make_dir(plan, plan.p("/etc/haochaping/secrets"), 0o700, u)
    make_dir(plan, plan.p("/etc/haochaping/tls"), 0o755)
    make_dir(plan, plan.p("/etc/haochaping/mosquitto"), 0o750, "root", group_of=b)
    make_dir(plan, plan.p("/var/lib/haochaping"), 0o750, u)
    make_dir(plan, plan.p("/var/backups/haochaping"), 0o700, u)
    make_dir(plan, plan.p("/var/lib/hcp-mosquitto"), 0o700, b)
    make_dir(plan, plan.p("/var/log/hcp-mosquitto"), 0o750, b)
    for d in ("/etc/systemd/system", "/etc/logrotate.d", "/usr/local/bin"):
        make_dir(plan, plan.p(d), 0o755)


def step_tls(plan: Plan) -> None:
    from gateway import tls
    d = plan.p("/etc/haochaping/tls")
    if not (d / tls.SERVER_CERT).exists():
        tls.init(d, plan.hosts)
    key = (d / tls.SERVER_KEY).read_bytes()
    # One copy of the server key per service, each readable by that service's user only.
    write_file(plan, d / "gateway.key", key.decode(), 0o600, plan.user)
    write_file(plan, plan.p("/etc/haochaping/mosquitto/server.key"), key.decode(), 0o600, plan.broker_user)


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def gateway_toml(plan: Plan, store_url: str | None) -> str:
    v = plan.values
    state, tls_dir = v["state"], v["tls_dir"]
    store = ('url = %s' % _toml_str(store_url)) if store_url else 'path = "%s/gateway.db"' % state
    disk = [str(state), str(v["backups"])] + (["/var/lib/postgresql"] if plan.postgres else [])
    notify = ""
    if plan.webhook:
        notify = ('\n[notify]\ntimezone = %s\n\n[[notify.webhook]]\nname = "duty"\nurl_file = "%s"\n'
                  'min_severity = "warning"\n' % (_toml_str(plan.timezone),
                                                   plan.p("/etc/haochaping/secrets/webhook.url")))
    else:
        notify = ('\n# Alerts and 差评 notices go nowhere until a channel is configured (docs/notify.md):\n'
                  '# [[notify.webhook]]\n# name = "duty"\n# url_file = "%s"   # 0600, owned by %s\n'
                  % (plan.p("/etc/haochaping/secrets/webhook.url"), plan.user))
    return f"""# The hall gateway's configuration, written by scripts/install.sh on {socket.gethostname()}.
# A re-run of the install keeps this file. After a change: systemctl restart hcp-gateway.
# Every key: docs/gateway.md, docs/gateway_admin.md, docs/uplink.md, docs/operations.md.
# It holds passwords and tokens: 0640 root:{v['group']}, never readable by others.

[mqtt]
host = "127.0.0.1"                 # the broker on this server (plain, loopback only)
port = {plan.mqtt_port}
username = "gateway"
password = {_toml_str(secrets.token_urlsafe(24))}
client_id = "hcp-gateway"          # one per gateway instance

[broker]
dynsec = true                      # device accounts through mosquitto's dynamic security plugin
control_username = "hcp-gateway-ctl"
control_password = {_toml_str(secrets.token_urlsafe(24))}
control_client_id = "hcp-gateway-ctl"

[store]
{store}

[hall]
id = {_toml_str(plan.hall)}
timezone = {_toml_str(plan.timezone)}
opening_hours = ["09:00-12:00", "13:30-17:30"]
opening_days = [1, 2, 3, 4, 5]

[http]
host = {_toml_str(plan.bind)}              # the window systems' network (HTTPS)
port = {plan.http_port}
window_token = {_toml_str(secrets.token_urlsafe(24))}    # for the window systems (综合受理系统)
admin_token = {_toml_str(secrets.token_urlsafe(24))}     # for flash.py and admin tools
tls_cert = "{tls_dir}/server.pem"
tls_key = "{tls_dir}/gateway.key"

[alerts]
disk_paths = {json.dumps(disk)}

[log]
format = "text"                    # or "json": one object per line, for a log shipper

# The push to the provincial platform (docs/uplink.md): off until it is configured.
# [uplink]
# url = "https://<provincial platform>"
# app_key = "..."
# app_secret = "..."
# adapter = "default"
# daily_at = "01:30"
{notify}"""


def _same_mqtt_port(plan: Plan, cfg: Path) -> None:
    """The broker's config is rewritten from the options, the gateway's is kept: the one port
    both name must agree, or the upgraded gateway could not reach its broker."""
    import tomllib
    try:
        port = tomllib.loads(cfg.read_text(encoding="utf-8")).get("mqtt", {}).get("port", 1883)
    except (OSError, ValueError) as e:
        raise InstallError("the kept config %s cannot be read: %s" % (cfg, e)) from None
    if port != plan.mqtt_port:
        raise InstallError("the kept config %s has [mqtt] port %s but --mqtt-port is %d: give the same "
                           "port, or change both" % (cfg, port, plan.mqtt_port))


def step_config(plan: Plan) -> Path:
    cfg = plan.p("/etc/haochaping/gateway.toml")
    store_url = plan.store_url
    if plan.postgres and store_url is None:
        store_url = "postgresql:///haochaping?host=%s" % PG_SOCKET
    if plan.webhook:
        write_file(plan, plan.p("/etc/haochaping/secrets/webhook.url"), plan.webhook + "\n", 0o600, plan.user)
    if cfg.exists():
        _same_mqtt_port(plan, cfg)
        plan.notes.append("kept %s (its passwords and tokens are in use)" % cfg)
    else:
        write_file(plan, cfg, gateway_toml(plan, store_url), 0o640, "root", group_of=plan.user)
    set_owner(plan, cfg, 0o640, "root", group_of=plan.user)
    return cfg


def _cli(plan: Plan, *args: str, user: str | None = None) -> str:
    venv = plan.values["venv"]
    return run([str(venv / "bin" / "hcp-gateway"), "--config", str(plan.p("/etc/haochaping/gateway.toml")),
                *args], "hcp-gateway %s" % " ".join(args), user=user)


def step_broker(plan: Plan) -> None:
    v = plan.values
    write_file(plan, plan.p("/etc/haochaping/mosquitto/mosquitto.conf"), render("mosquitto.conf", v), 0o640,
               "root", group_of=plan.broker_user)
    dynsec = plan.p("/var/lib/hcp-mosquitto/dynsec.json")
    if dynsec.exists():
        plan.notes.append("kept %s (the broker owns it: device accounts live there)" % dynsec)
    else:
        _cli(plan, "broker", "init", str(dynsec))
    set_owner(plan, dynsec, 0o600, plan.broker_user)


def step_postgres(plan: Plan) -> None:
    if not plan.postgres:
        return
    # Here, not at the top: install.sh runs this file with the system python3 (--parse-only)
    # before the venv, and the package, exist.
    from gateway.store.provision import database_exists_query, role_exists_query
    sql_role = role_exists_query(plan.user)
    if plan.dry:
        plan.notes.append("dry run: PostgreSQL not touched; on a server: runuser -u postgres -- "
                          "createuser %s; runuser -u postgres -- createdb -O %s haochaping"
                          % (plan.user, plan.user))
        return
    if run(["runuser", "-u", "postgres", "--", "psql", "-tAc", sql_role], "psql").strip() != "1":
        run(["runuser", "-u", "postgres", "--", "createuser", plan.user], "createuser %s" % plan.user)
    have = run(["runuser", "-u", "postgres", "--", "psql", "-tAc",
                database_exists_query("haochaping")], "psql").strip()
    if have != "1":
        run(["runuser", "-u", "postgres", "--", "createdb", "-O", plan.user, "haochaping"],
            "createdb haochaping")


def step_store(plan: Plan) -> None:
    out = _cli(plan, "init", user=plan.user)
    plan.notes.append(out.strip())


def step_units(plan: Plan) -> list[Path]:
    v = plan.values
    written = []
    for name in ("hcp-mosquitto.service", "hcp-gateway.service", "hcp-backup.service", "hcp-backup.timer"):
        path = plan.p("/etc/systemd/system/" + name)
        write_file(plan, path, render(name, v), 0o644)
        written.append(path)
    write_file(plan, plan.p("/etc/logrotate.d/haochaping"), render("logrotate", v), 0o644)
    for tool in ("hcp-gateway", "hcp-sim", "flash.py"):
        write_file(plan, plan.p("/usr/local/bin/" + tool), render("wrapper-" + tool, v), 0o755)
    return written


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def step_services(plan: Plan) -> None:
    if plan.dry or not plan.systemd:
        why = "dry run" if plan.dry else "--no-systemd"
        plan.notes.append("services not started (%s): systemctl daemon-reload && systemctl enable --now "
                          "hcp-mosquitto hcp-gateway hcp-backup.timer" % why)
        return
    if not systemd_running():
        plan.notes.append("systemd is not running here: start hcp-mosquitto and hcp-gateway as their "
                          "units say")
        return
    run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
    subprocess.run(["systemctl", "disable", "--now", "mosquitto.service"], capture_output=True, check=False)
    run(["systemctl", "enable", "hcp-mosquitto.service", "hcp-gateway.service", "hcp-backup.timer"],
        "systemctl enable")
    run(["systemctl", "restart", "hcp-mosquitto.service"], "starting hcp-mosquitto")
    run(["systemctl", "restart", "hcp-gateway.service"], "starting hcp-gateway")
    run(["systemctl", "start", "hcp-backup.timer"], "starting hcp-backup.timer")


def install(plan: Plan) -> list[str]:
    if plan.dry and plan.root.resolve() == Path("/"):
        raise InstallError("--root / is not a dry run: leave --root out")
    step_users(plan)
    step_dirs(plan)
    step_tls(plan)
    step_config(plan)
    step_broker(plan)
    step_postgres(plan)
    step_units(plan)
    step_store(plan)
    step_services(plan)
    return plan.notes


def _default_hosts() -> list[str]:
    names = [socket.gethostname()]
    try:
        fqdn = socket.getfqdn()
        if fqdn and fqdn not in names and fqdn != "localhost":
            names.append(fqdn)
    except OSError:
        pass
    return names


def _hhmm(text: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
        raise argparse.ArgumentTypeError("%r is not HH:MM" % text)
    return text


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="scripts/install.sh", description="Set up a haochaping hall or "
                                 "district server (docs/operations.md).")
    ap.add_argument("--root", default=None, help="install into this directory instead of / (a dry run)")
    ap.add_argument("--hall", default="hall-1", help="the hall's id (default hall-1)")
    ap.add_argument("--host", action="append", default=[], help="a name or IP devices and window systems use "
                    "for this server, in its TLS certificate (repeat; default: the host name)")
    ap.add_argument("--timezone", default="Asia/Shanghai")
    ap.add_argument("--bind", default="0.0.0.0", help="address of the LAN listeners (MQTT TLS, HTTPS)")
    ap.add_argument("--mqtt-port", type=int, default=1883, help="plain MQTT on the loopback")
    ap.add_argument("--mqtts-port", type=int, default=8883, help="MQTT over TLS for the hall LAN")
    ap.add_argument("--http-port", type=int, default=8080, help="the HTTPS API")
    ap.add_argument("--postgres", action="store_true", help="the store on a local PostgreSQL (created)")
    ap.add_argument("--store-url", default=None, help="the store on this PostgreSQL (postgresql://...)")
    ap.add_argument("--webhook", default=None, help="where alerts are POSTed (kept in a 0600 file)")
    ap.add_argument("--user", default=None, help="the gateway's system user (default haochaping)")
    ap.add_argument("--broker-user", default=None, help="the broker's user (default mosquitto)")
    ap.add_argument("--backup-at", type=_hhmm, default="02:30", help="daily backup time, HH:MM hall time")
    ap.add_argument("--keep", type=int, default=14, help="backups kept")
    ap.add_argument("--no-systemd", action="store_true", help="write the units, start nothing")
    # install.sh checks its options with this first, before any package or copy.
    ap.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.parse_only:
        return 0
    dry = a.root is not None
    me = getpass.getuser()
    if not dry and os.geteuid() != 0:
        print("install: run it as root (sudo bash scripts/install.sh ...), or give --root DIR",
              file=sys.stderr)
        return 2
    if a.postgres and a.store_url:
        print("install: --postgres or --store-url, not both", file=sys.stderr)
        return 2
    plan = Plan(root=Path(a.root or "/").resolve(), user=a.user or (me if dry else "haochaping"),
                broker_user=a.broker_user or (me if dry else "mosquitto"), hall=a.hall,
                hosts=a.host or _default_hosts(), timezone=a.timezone, bind=a.bind, mqtt_port=a.mqtt_port,
                mqtts_port=a.mqtts_port, http_port=a.http_port, postgres=a.postgres, store_url=a.store_url,
                webhook=a.webhook, backup_at=a.backup_at, keep=a.keep, systemd=not a.no_systemd, dry=dry)
    try:
        notes = install(plan)
    except InstallError as e:
        print("install: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("install: %s: %s" % (getattr(e, "filename", "") or "", e.strerror or e), file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one line, not a traceback (HCP_DEBUG=1 shows it)
        if os.environ.get("HCP_DEBUG"):
            raise
        print("install: internal error: %s: %s (HCP_DEBUG=1 shows where)" % (type(e).__name__, e),
              file=sys.stderr)
        return 1
    for n in notes:
        print("install: " + n)
    bindir = plan.p("/usr/local/bin")
    print("install: done. Next: %s/hcp-gateway doctor   (docs/operations.md)" % bindir
          if dry else "install: done. Next: hcp-gateway doctor   (docs/operations.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
