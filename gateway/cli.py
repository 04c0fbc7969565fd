"""`hcp-gateway`: the hall admin's command line (and `serve`, which runs the service).

    hcp-gateway --config gateway.toml devices [add ID [--secret-file F --broker-password-file F]]
    hcp-gateway windows [add W --dept CODE --name NAME | list]
    hcp-gateway staff [add ACCOUNT --name NAME | list]
    hcp-gateway pair DEVICE --window W --staff ACCOUNT [--force]
    hcp-gateway unpair DEVICE
    hcp-gateway bindings [--history]
    hcp-gateway ratings [--date D --window W --staff A --kind K]
    hcp-gateway invitations [--status S --date D]
    hcp-gateway health | report --date D | init | serve
    hcp-gateway complaints [list|show|verify|contact|rectify|callback|appeal|review|exclude ...]
    hcp-gateway qr [plate|list|revoke|bind|unbind|link|points|key ...]
Tables by default, `--json` (before or after the command) for scripts. Every error is one
line on stderr and a non-zero exit: 1 refused / failed, 2 bad arguments or config.
A thin layer: every command calls the same domain services as the HTTP API, on the store
(SQLite beside the running service, or the district's PostgreSQL); no SQL, no HTTP client.
A binding change is noted in the store's change feed in the same unit of work: the leader
among the running gateways tells the device within a second (or the device learns its state
at its next hello). Times are shown in the hall's zone, with it; a listing cut by --limit
says how many rows it hid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import getpass
import json
import os
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from gateway import bindings, invitations, reports
from gateway import health as health_mod
from gateway.bindings import AdminError
from gateway.clock import fmt_ms
from gateway.config import Config, ConfigError, load_config
from gateway.devices import device_service
from gateway.store import Store, open_store
from gateway.store.api import Tx
from gateway.store.errors import StoreError

T = TypeVar("T")
DEFAULT_CONFIG = "gateway.toml"


class CliError(Exception):
    """One line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


@dataclass
class CliState:
    config_path: str
    json: bool = False
    _cfg: Config | None = None

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            try:
                self._cfg = load_config(self.config_path)
            except ConfigError as e:
                raise CliError("config: %s" % e, 2) from None
        return self._cfg


def actor() -> str:
    try:
        # HCP_CLI_USER: the person behind /usr/local/bin/hcp-gateway, which runs the tool as the
        # service's user (no more trust than $USER, which getuser() reads too).
        return "cli:" + (os.environ.get("HCP_CLI_USER") or getpass.getuser())
    except (KeyError, OSError):
        return "cli:uid%d" % os.getuid()


def run_db(state: CliState, body: Callable[[Store], Awaitable[T]], create: bool = False) -> T:
    """Open the configured store (refusing a file that does not exist unless create), run body."""
    cfg = state.cfg
    path = cfg.store.path
    if not create and path is not None and not path.exists():
        raise CliError("store %s does not exist (check [store] in %s, or run `hcp-gateway init`)"
                       % (path, state.config_path))

    async def go() -> T:
        try:
            store = await open_store(cfg.store.url, create=create)
        except StoreError as e:
            raise CliError("store: %s" % e) from None
        try:
            return await body(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except OSError as e:
        raise CliError("store %s: %s" % (path or cfg.store.url, e.strerror or e)) from None


# ---- output --------------------------------------------------------------------------------

def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.2f" % v
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([_width(h)] + [_width(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v + " " * (w - _width(v)) for v, w in zip(vals, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(out)


def emit(state: CliState, data: Any, headers: Sequence[str], rows: Sequence[Sequence[Any]],
         empty: str = "(none)", hidden: int = 0) -> None:
    """A table (or JSON); hidden: rows a --limit left out, said below the table (on stderr
    with --json, so stdout stays the document scripts read)."""
    if state.json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))
    elif not rows:
        click.echo(empty)
    else:
        click.echo(table(headers, rows))
    if hidden > 0:
        click.echo("(%d more not shown; raise --limit)" % hidden, err=state.json)


def local_time(cfg: Config, ms: int | None) -> str:
    """A stored time in the hall's zone, with the zone: "2026-12-06 09:32:50+08:00"."""
    if ms is None:
        return "-"
    try:
        return fmt_ms(ms, cfg.hall.tz)
    except (OverflowError, ValueError, OSError):
        # Outside datetime's years 1..9999 (a value stored before device times were checked):
        # shown raw, so one bad row never stops a listing.
        return "epoch-ms %d" % ms


def check_date(date: str) -> str:
    try:
        return dt.date.fromisoformat(date).isoformat()
    except ValueError:
        raise CliError("--date must be YYYY-MM-DD, got %r" % date, 2) from None


json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def _state(ctx: click.Context, as_json: bool) -> CliState:
    state: CliState = ctx.find_root().obj
    state.json = state.json or as_json
    return state


# ---- the group -----------------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="HCP_GATEWAY_CONFIG", default=DEFAULT_CONFIG,
              show_default=True, help="gateway TOML config (env HCP_GATEWAY_CONFIG)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def cli(ctx: click.Context, config_path: str, as_json: bool) -> None:
    """Hall gateway of the haochaping 好差评 rating stack: admin commands and `serve`."""
    ctx.obj = CliState(config_path, as_json)


@cli.command()
@click.option("--log-level", default=None, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
              help="default: [log] level of the config, else INFO")
@click.option("--log-format", default=None, type=click.Choice(["text", "json"]),
              help="text lines or one JSON object per line (default: [log] format, else text)")
@click.pass_context
def serve(ctx: click.Context, log_level: str | None, log_format: str | None) -> None:
    """Run the gateway service (MQTT ingest, HTTP API, uplink) until SIGTERM/SIGINT."""
    state: CliState = ctx.find_root().obj
    try:
        from gateway.__main__ import serve_main  # lazy: the admin commands work without it
    except ImportError as e:
        raise CliError("the gateway service is not available in this install: %s" % e) from None
    code = serve_main(state.config_path, log_level, log_format)
    if code:
        sys.exit(code)


@cli.command()
@json_option
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Create the store (if missing) and apply every migration."""
    state = _state(ctx, as_json)

    async def body(store: Store) -> int:
        return await store.read(lambda tx: tx.schema.version())

    v = run_db(state, body, create=True)
    if state.json:
        click.echo(json.dumps({"store": str(state.cfg.store.path or "postgresql"), "schema_version": v}))
        return
    click.echo("store %s ready (schema version %d)" % (state.cfg.store.path or "postgresql", v))


# ---- devices ---------------------------------------------------------------------------------

@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def devices(ctx: click.Context, as_json: bool) -> None:
    """List devices (with their binding); `devices add` registers one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(devices_list, as_json=as_json)


@devices.command("list")
@json_option
@click.pass_context
def devices_list(ctx: click.Context, as_json: bool) -> None:
    """Registered devices, health and binding."""
    state = _state(ctx, as_json)
    async def body(store: Store) -> list[dict[str, Any]]:
        out = await device_service(store, state.cfg).list()
        for d in out:
            b = await bindings.active_binding(store, d["device_id"])
            d["binding"] = b.as_dict() if b else None
        return out

    rows = run_db(state, body)
    cfg = state.cfg
    emit(state, rows, ["device", "online", "last seen", "fw", "boot", "journal", "window", "staff"],
         [(d["device_id"], "yes" if d["online"] else "no", local_time(cfg, d["last_seen"]), d["fw"],
           d["boot"], d["journal_depth"], d["binding"]["window_id"] if d["binding"] else "-",
           d["binding"]["staff_account"] if d["binding"] else "-") for d in rows], "(no devices)")


def _read_secret(path: str | None, what: str, stdin_lines: list[str]) -> str:
    """A secret from a file (its first line), or the next line of standard input: never argv,
    where every local user could read it (ps, /proc)."""
    if path is not None and path != "-":
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline().strip()
        except OSError as e:
            raise CliError("cannot read the %s from %s: %s" % (what, path, e.strerror)) from None
    if not stdin_lines:
        stdin_lines.extend(line.strip() for line in sys.stdin.read().splitlines())
    if not stdin_lines:
        raise CliError("no %s on standard input (one line each: secret, then broker password)" % what)
    return stdin_lines.pop(0)


@devices.command("add")
@click.argument("device_id")
@click.option("--secret-file", default=None, metavar="FILE",
              help="file whose first line is the device key (64 lower-case hex); default: stdin")
@click.option("--broker-password-file", default=None, metavar="FILE",
              help="file whose first line is the device's broker password; default: stdin")
@click.option("--fw", default=None, help="firmware version")
@json_option
@click.pass_context
def devices_add(ctx: click.Context, device_id: str, secret_file: str | None,
                broker_password_file: str | None, fw: str | None, as_json: bool) -> None:
    """Register (or re-key) a device: store its key, set its broker account. The secrets come
    from files or standard input (secret, then broker password, one line each), never argv."""
    state = _state(ctx, as_json)
    lines: list[str] = []
    secret = _read_secret(secret_file, "device secret", lines)
    broker_password = _read_secret(broker_password_file, "broker password", lines)

    async def body(store: Store) -> None:
        await device_service(store, state.cfg).register(
            device_id, secret, broker_password, fw, actor())

    run_db(state, body, create=True)
    click.echo(json.dumps({"registered": device_id}) if state.json else "device %s registered" % device_id)


# ---- windows and staff -----------------------------------------------------------------------

@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def windows(ctx: click.Context, as_json: bool) -> None:
    """List windows; `windows add` creates one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(windows_list, as_json=as_json)


@windows.command("list")
@json_option
@click.pass_context
def windows_list(ctx: click.Context, as_json: bool) -> None:
    state = _state(ctx, as_json)
    rows = run_db(state, bindings.list_windows)
    emit(state, [w.__dict__ for w in rows], ["window", "dept_code", "name", "hall", "state"],
         [(w.window_id, w.dept_code, w.name, w.hall_id or state.cfg.hall.id, "retired" if w.retired else "")
          for w in rows], "(no windows)")


@windows.command("add")
@click.argument("window")
@click.option("--dept", "dept_code", default="", help="department code (unified social credit code)")
@click.option("--name", default="", help="readable name of the window")
@click.option("--hall", "hall_id", default=None, help="hall it is in (default: the default hall)")
@json_option
@click.pass_context
def windows_add(ctx: click.Context, window: str, dept_code: str, name: str, hall_id: str | None,
                as_json: bool) -> None:
    state = _state(ctx, as_json)
    w = run_db(state, lambda db: bindings.add_window(db, window, dept_code, name, actor(), hall_id))
    click.echo(json.dumps(dataclasses.asdict(w), ensure_ascii=False) if state.json
               else "window %s added" % w.window_id)


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def staff(ctx: click.Context, as_json: bool) -> None:
    """List clerk accounts; `staff add` creates one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(staff_list, as_json=as_json)


@staff.command("list")
@json_option
@click.pass_context
def staff_list(ctx: click.Context, as_json: bool) -> None:
    state = _state(ctx, as_json)
    rows = run_db(state, bindings.list_staff)
    emit(state, [s.__dict__ for s in rows], ["account", "name", "dept_code", "state"],
         [(s.account, s.display_name, s.dept_code or "-", "retired" if s.retired else "") for s in rows],
         "(no staff)")


@staff.command("add")
@click.argument("account")
@click.option("--name", "display_name", required=True, help="display name (shown on the device)")
@click.option("--dept", "dept_code", default="", help="the clerk's department (unified social credit code)")
@json_option
@click.pass_context
def staff_add(ctx: click.Context, account: str, display_name: str, dept_code: str, as_json: bool) -> None:
    state = _state(ctx, as_json)
    s = run_db(state, lambda db: bindings.add_staff(db, account, display_name, actor(), dept_code))
    click.echo(json.dumps(dataclasses.asdict(s), ensure_ascii=False) if state.json
               else "staff %s (%s) added" % (s.account, s.display_name))


# ---- bindings --------------------------------------------------------------------------------

def _binding_rows(state: CliState, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    cfg = state.cfg
    return [(b["device_id"], b["window_id"], b["staff_account"], b["display_name"],
             local_time(cfg, b["valid_from_ms"]),
             local_time(cfg, b["valid_to_ms"]) if b["valid_to_ms"] else "active",
             b["created_by"]) for b in rows]


BINDING_HEADERS = ["device", "window", "staff", "name", "from", "to", "by"]


@cli.command()
@click.argument("device")
@click.option("--window", "window", required=True, help="window number")
@click.option("--staff", "staff_account", required=True, help="clerk account")
@click.option("--force", is_flag=True, help="close the device's, window's and clerk's active bindings first")
@json_option
@click.pass_context
def pair(ctx: click.Context, device: str, window: str, staff_account: str, force: bool,
         as_json: bool) -> None:
    """Bind DEVICE to a window and a clerk (一码一账号); the running gateway tells the device."""
    state = _state(ctx, as_json)
    change = run_db(state, lambda db: bindings.pair(db, device, window, staff_account, actor(), force=force,
                                                    tell_later=True))
    assert change.created is not None
    b = change.created.as_dict()
    if state.json:
        click.echo(json.dumps({"binding": b, "closed": [c.as_dict() for c in change.closed],
                               "unchanged": change.unchanged, "devices": change.devices,
                               "cancelled_invitations": [i for i, _ in change.cancelled_invitations]},
                              ensure_ascii=False, indent=1, sort_keys=True))
        return
    if change.unchanged:
        click.echo("%s is already bound to window %s, staff %s"
                   % (device, b["window_id"], b["staff_account"]))
        return
    for old in change.closed:
        click.echo("closed: %s at window %s, staff %s" % (old.device_id, old.window_id, old.staff_account))
    for inv, _ in change.cancelled_invitations:
        click.echo("cancelled pending invitation %s" % inv)
    click.echo("paired: %s -> window %s, staff %s (%s)" % (device, b["window_id"], b["staff_account"],
                                                          b["display_name"]))


@cli.command()
@click.argument("device")
@json_option
@click.pass_context
def unpair(ctx: click.Context, device: str, as_json: bool) -> None:
    """Close DEVICE's active binding (its history stays); the running gateway tells the device."""
    state = _state(ctx, as_json)
    change = run_db(state, lambda db: bindings.unpair(db, device, actor(), tell_later=True))
    if state.json:
        click.echo(json.dumps({"closed": [c.as_dict() for c in change.closed], "devices": change.devices,
                               "cancelled_invitations": [i for i, _ in change.cancelled_invitations]},
                              ensure_ascii=False, indent=1, sort_keys=True))
        return
    for old in change.closed:
        click.echo("unpaired: %s (was window %s, staff %s)"
                   % (old.device_id, old.window_id, old.staff_account))
    for inv, _ in change.cancelled_invitations:
        click.echo("cancelled pending invitation %s" % inv)


@cli.command("bindings")
@click.option("--history", is_flag=True, help="every binding, closed ones included")
@json_option
@click.pass_context
def bindings_cmd(ctx: click.Context, history: bool, as_json: bool) -> None:
    """Active bindings (or the whole history)."""
    state = _state(ctx, as_json)
    rows = [b.as_dict() for b in run_db(state, lambda store: bindings.list_bindings(store, history))]
    emit(state, rows, BINDING_HEADERS, _binding_rows(state, rows), "(no bindings)")


# ---- ratings, invitations, health, report ---------------------------------------------------

KINDS = ("rated", "walkup", "extra", "unrated", "unpaired")


@cli.command()
@click.option("--date", "date", help="local date of the press (YYYY-MM-DD)")
@click.option("--window", "window", help="window number")
@click.option("--staff", "staff_account", help="clerk account")
@click.option("--kind", type=click.Choice(KINDS), help="record kind")
@click.option("--limit", type=click.IntRange(1, 1000000), default=1000, show_default=True)
@json_option
@click.pass_context
def ratings(ctx: click.Context, date: str | None, window: str | None, staff_account: str | None,
            kind: str | None, limit: int, as_json: bool) -> None:
    """Stored records with their attribution; `counted` marks the one rating of an invitation."""
    state = _state(ctx, as_json)
    lo = hi = None
    if date is not None:
        lo, hi = reports.day_bounds(check_date(date), state.cfg)
    rows, total = run_db(state, lambda store: store.read(
        lambda tx: tx.records.search(lo, hi, window, staff_account, kind, limit)))
    cfg = state.cfg
    emit(state, rows, ["record", "pressed", "kind", "grade", "window", "staff", "case", "counted", "flags"],
         [(r["record_id"], local_time(cfg, r["pressed_at_ms"]), r["kind"], r["grade"], r["window_id"],
           r["staff_account"], r["case_no"], "yes" if r["counted"] else "", r["flags"]) for r in rows],
         "(no records)", hidden=total - len(rows))


@cli.command("invitations")
@click.option("--status", type=click.Choice(invitations.STATUSES))
@click.option("--date", "date", help="local date of creation (YYYY-MM-DD)")
@json_option
@click.pass_context
def invitations_cmd(ctx: click.Context, status: str | None, date: str | None, as_json: bool) -> None:
    """Invitations and their outcome."""
    state = _state(ctx, as_json)
    lo = hi = None
    if date is not None:
        lo, hi = reports.day_bounds(check_date(date), state.cfg)
    rows = run_db(state, lambda store: invitations.list_invitations(store, status, lo, hi))
    cfg = state.cfg
    emit(state, [i.public() for i in rows],
         ["invitation", "created", "window", "staff", "device", "case", "status", "grade", "record"],
         [(i.id, local_time(cfg, i.created_ms), i.window_id, i.staff_account, i.device_id, i.case_no,
           i.status, i.grade, i.record_id) for i in rows], "(no invitations)")


@cli.command()
@json_option
@click.pass_context
def health(ctx: click.Context, as_json: bool) -> None:
    """Devices online/silent, journal depths, and the counted rejections."""
    state = _state(ctx, as_json)
    silent_ms = state.cfg.devices.silent_after_s * 1000

    keys = ("device_id", "online", "last_seen", "fw", "boot", "journal_depth", "reconnects", "last_rst",
            "limited", "limited_at")

    def read(tx: Tx) -> dict[str, Any]:
        devs = [{k: d.public()[k] for k in keys} for d in tx.devices.all(enabled_only=True)]
        return {"devices": devs, "rejections": tx.rejections.rows(),
                "pending_invitations": tx.invitations.count("pending")}

    data = run_db(state, lambda store: store.read(read))
    now = bindings.now_ms()
    for d in data["devices"]:
        d["silent"] = d["last_seen"] is None or now - d["last_seen"] > silent_ms
        d["flooding"] = health_mod.flooding(d["limited_at"], now)
    findings = [d for d in data["devices"] if d["silent"] or d["flooding"]]
    if state.json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))
    else:
        cfg = state.cfg
        click.echo(table(["device", "online", "silent", "flooding", "last seen", "fw", "journal",
                          "reconnects", "last reset"],
                         [(d["device_id"], "yes" if d["online"] else "no", "SILENT" if d["silent"] else "",
                           "FLOODING (%d dropped, last %s)" % (d["limited"], local_time(cfg, d["limited_at"]))
                           if d["flooding"] else "",
                           local_time(cfg, d["last_seen"]), d["fw"], d["journal_depth"], d["reconnects"],
                           d["last_rst"]) for d in data["devices"]]) if data["devices"] else "(no devices)")
        click.echo("rejections: " + (", ".join("%s=%d" % (r["reason"], r["count"])
                                               for r in data["rejections"]) or "none"))
        click.echo("pending invitations: %d" % data["pending_invitations"])
    if findings:
        # A finding (a silent or flooding device) is exit 1: monitoring can run `health`.
        sys.exit(1)


def _pct(v: float | None) -> str:
    return "-" if v is None else "%.1f%%" % (v * 100)


@cli.command()
@click.option("--date", "date", default=None, help="local date (YYYY-MM-DD), default today")
@json_option
@click.pass_context
def report(ctx: click.Context, date: str | None, as_json: bool) -> None:
    """The day's report per window and clerk."""
    state = _state(ctx, as_json)
    cfg = state.cfg
    day = check_date(date) if date else dt.datetime.now(tz=cfg.hall.tz).date().isoformat()
    try:
        settings = reports.ReportSettings.from_config(cfg)
    except ConfigError as e:
        raise CliError("config: %s" % e, 2) from None
    rep = run_db(state, lambda store: reports.day_report(store, cfg, day, settings))
    if state.json:
        click.echo(json.dumps(rep.to_dict(), ensure_ascii=False, indent=1, sort_keys=True))
        return
    click.echo("report %s (%s), weights vs/s/bs/d/vd = %s" % (
        rep.date, rep.timezone, "/".join("%g" % rep.weights[g] for g in ("vs", "s", "bs", "d", "vd"))))
    rows = rep.rows + [rep.total]
    click.echo(table(
        ["window", "staff", "name", "cases", "rated", "rate", "vs", "s", "bs", "d", "vd", "差评", "有效差评",
         "satisf.", "score", "unrated", "cancel", "supers.", "excluded", "follow-up", "extra", "walkup",
         "late", "after_h", "burst", "qr"],
        [(r.window_id, r.staff_account, r.display_name, r.cases, r.ratings, _pct(r.rating_rate),
          r.grades["vs"], r.grades["s"], r.grades["bs"], r.grades["d"], r.grades["vd"], r.bad, r.valid_bad,
          _pct(r.satisfaction), r.score, r.unrated + r.expired, r.cancelled, r.superseded, r.excluded,
          r.follow_ups, r.extras, r.walkups, r.late, r.after_hours, r.burst, r.ratings_qr) for r in rows]))


# ---- uplink commands and the entry point ----------------------------------------------------

def _register_uplink() -> None:
    try:
        from gateway.uplink.commands import register
    except ImportError:
        return  # installed without the uplink: its commands are simply absent
    register(cli)


if __name__ != "__main__":   # under `python -m gateway.cli` the real module registers it (below)
    # The uplink's commands import this module: registered from `python -m gateway.cli`'s
    # __main__ copy, they would import the real module half-way through theirs, and the real
    # module (whose main() runs) would find them half-initialised and go without them.
    _register_uplink()
    from gateway.cli_complaints import complaints as _complaints  # noqa: E402 - needs the helpers above
    cli.add_command(_complaints)
    from gateway.cli_qr import qr as _qr  # noqa: E402 - needs the helpers above
    cli.add_command(_qr)
    from gateway.cli_users import register as _register_users  # noqa: E402 - needs the helpers above
    _register_users(cli)
    from gateway.cli_district import register as _register_district  # noqa: E402
    from gateway.cli_org import register as _register_org  # noqa: E402 - needs the groups above
    _register_org(cli)
    _register_district(cli)


def _register_hardening() -> None:
    """`tls` (and `broker`) command groups, each from its own module (issue 14)."""
    from gateway.broker_cli import register as register_broker
    from gateway.tls_cli import register as register_tls
    register_tls(cli)
    register_broker(cli)


_register_hardening()


def _register_ops() -> None:
    """doctor, backup, restore, alerts (issue 20), from their own module."""
    from gateway.cli_ops import register
    register(cli)


if __name__ != "__main__":   # under `python -m gateway.cli` the real module registers it (below)
    _register_ops()


def _fail(message: str, code: int) -> NoReturn:
    click.echo("hcp-gateway: error: %s" % message, err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry: click in non-standalone mode, every failure mapped to one stderr line."""
    try:
        rv = cli.main(args=argv, prog_name="hcp-gateway", standalone_mode=False)
    except CliError as e:
        _fail(str(e), e.exit_code)
    except AdminError as e:
        _fail(str(e), 1)
    except ConfigError as e:
        _fail("config: %s" % e, 2)
    except ValueError as e:
        _fail(str(e), 2)
    except click.UsageError as e:
        hint = " (see `%s --help`)" % e.ctx.command_path if e.ctx is not None else ""
        _fail(e.format_message().replace("\n", " ") + hint, e.exit_code)
    except click.ClickException as e:
        _fail(e.format_message().replace("\n", " "), e.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - a user never sees a traceback
        if os.environ.get("HCP_DEBUG"):
            raise
        _fail("internal error: %s: %s (set HCP_DEBUG=1 for the traceback)" % (type(e).__name__, e), 1)
    if isinstance(rv, int) and rv:
        sys.exit(rv)


if __name__ == "__main__":
    # The module under its own name (with every command group registered), not this __main__
    # copy: commands of other modules raise gateway.cli.CliError, which main must catch.
    from gateway.cli import main as _main
    _main()
