"""`hcp-gateway qr ...`: the QR channel on the command line (docs/qr.md, docs/cli-hcp-gateway.md).

    qr plate --window W [--format pdf|png|svg] [--size A4|A5] [--new] --out FILE
    qr list [--all]
    qr revoke PLATE_ID --reason TEXT
    qr bind --window W --staff ACCOUNT [--force]      (a window without an evaluator)
    qr unbind --window W
    qr link INVITATION_ID                             (a case's receipt link)
    qr points
    qr key list | rotate | retire KID

A thin layer over gateway.qr.service.QrService (the API and the console call the same). Every
change is recorded as `cli:<os user>`. `--json` prints JSON. Exit 0 done, 1 refused (one line
saying why), 2 bad arguments or config (e.g. no [qr] section). Times in the hall's zone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.cli import CliError, CliState, _state, actor, emit, run_db
from gateway.config import ConfigError
from gateway.qr import tokens
from gateway.qr.service import QrService
from gateway.qr.settings import QrSettings
from gateway.store import Store

T = TypeVar("T")


def _settings(state: CliState) -> QrSettings:
    s = state.cfg.sections.get("qr")
    if s is None:
        raise CliError("the QR channel is off: add a [qr] section to %s (docs/qr.md)" % state.config_path, 2)
    assert isinstance(s, QrSettings)
    return s


def _run(state: CliState, body: Callable[[QrService], Awaitable[T]]) -> T:
    _settings(state)
    cfg = state.cfg

    async def go(store: Store) -> T:
        try:
            svc = QrService.from_config(store, cfg)
        except ConfigError as e:
            raise CliError("config: %s" % e, 2) from None
        assert svc is not None
        return await body(svc)

    return run_db(state, go)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))


@click.group("qr")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def qr(ctx: click.Context, as_json: bool) -> None:
    """The QR channel: plates per window and clerk, receipt links, keys."""
    _state(ctx, as_json)


@qr.command("plate")
@click.option("--window", "window", required=True, help="the window number")
@click.option("--format", "fmt", type=click.Choice(["pdf", "png", "svg"]), default=None,
              help="default: from the --out file's suffix, else pdf")
@click.option("--size", type=click.Choice(["A4", "A5"]), default="A4", show_default=True)
@click.option("--new", is_flag=True, help="a new code: the clerk's old plates at this window are revoked")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="where to write the plate")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def plate_cmd(ctx: click.Context, window: str, fmt: str | None, size: str, new: bool, out: str,
              as_json: bool) -> None:
    """Write the printable plate of WINDOW's current clerk (the same code on a reprint)."""
    state = _state(ctx, as_json)
    suffix = Path(out).suffix.lower().lstrip(".")
    kind = fmt or (suffix if suffix in ("pdf", "png", "svg") else "pdf")
    who = actor()
    plate, data = _run(state, lambda svc: svc.render_plate(window, kind, size, who, new))
    path = Path(out)
    tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CliError("cannot write %s: %s" % (out, e.strerror or e)) from None
    info = {"plate": plate.id, "window": plate.window_id, "staff_account": plate.staff_account,
            "format": kind, "size": size, "bytes": len(data), "out": str(path)}
    if state.json:
        _print_json(info)
    else:
        click.echo("plate %s for window %s (%s): %s %s, %d bytes -> %s"
                   % (plate.id, plate.window_id, plate.staff_account, kind, size, len(data), path))


@qr.command("list")
@click.option("--all", "every", is_flag=True, help="revoked plates too")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def list_cmd(ctx: click.Context, every: bool, as_json: bool) -> None:
    """Plates: state (active, inactive: the clerk left the window, revoked), ratings taken."""
    state = _state(ctx, as_json)
    rows = _run(state, lambda svc: svc.plates(every))
    emit(state, rows, ["plate", "window", "staff", "state", "issued", "ratings", "last rating", "revoked"],
         [(p["id"], p["window_id"], p["staff_account"], p["state"], p["issued_at"], p["ratings"],
           p["last_rating_at"], _revoked(p)) for p in rows], empty="(no plates)")


def _revoked(p: dict[str, Any]) -> str | None:
    return "%s (%s)" % (p["revoked_at"], p["revoke_reason"]) if p["revoked_ms"] else None


@qr.command("revoke")
@click.argument("plate_id")
@click.option("--reason", required=True, help="why (e.g. photographed and posted online)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def revoke_cmd(ctx: click.Context, plate_id: str, reason: str, as_json: bool) -> None:
    """Revoke a plate: its code is refused from now on (print a new one: qr plate --window W)."""
    state = _state(ctx, as_json)
    who = actor()
    p = _run(state, lambda svc: svc.revoke(plate_id, who, reason))
    if state.json:
        _print_json(p.as_dict())
    else:
        click.echo("plate %s (window %s, %s) revoked" % (p.id, p.window_id, p.staff_account))


def _change(state: CliState, change: Any, what: str) -> None:
    data = {"binding": change.created.as_dict() if change.created else None,
            "closed": [b.as_dict() for b in change.closed], "unchanged": change.unchanged,
            "cancelled_invitations": [i for i, _ in change.cancelled_invitations]}
    if state.json:
        _print_json(data)
        return
    for b in change.closed:
        click.echo("closed binding %d (%s at window %s)" % (b.id, b.staff_account, b.window_id))
    click.echo(what)


@qr.command("bind")
@click.option("--window", "window", required=True)
@click.option("--staff", "staff_account", required=True, help="the clerk's account")
@click.option("--force", is_flag=True, help="move an active binding of the window or clerk (audited)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def bind_cmd(ctx: click.Context, window: str, staff_account: str, force: bool, as_json: bool) -> None:
    """Bind WINDOW's QR code to a clerk (a window with no evaluator: plates alone)."""
    state = _state(ctx, as_json)
    who = actor()
    change = _run(state, lambda svc: svc.bind(window, staff_account, who, force))
    _change(state, change, "window %s: QR code bound to %s%s" % (
        window, staff_account, " (unchanged)" if change.unchanged else ""))


@qr.command("unbind")
@click.option("--window", "window", required=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def unbind_cmd(ctx: click.Context, window: str, as_json: bool) -> None:
    """End the binding of WINDOW's QR code (its plates stop crediting the clerk)."""
    state = _state(ctx, as_json)
    who = actor()
    change = _run(state, lambda svc: svc.unbind(window, who))
    _change(state, change, "window %s: QR code unbound" % window)


@qr.command("link")
@click.argument("invitation_id")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def link_cmd(ctx: click.Context, invitation_id: str, as_json: bool) -> None:
    """The receipt link of an invitation (what its QR code carries) and until when it rates."""
    state = _state(ctx, as_json)
    link = _run(state, lambda svc: svc.case_link(invitation_id))
    if state.json:
        _print_json(link)
    else:
        click.echo("%s\nfirst rating until %s" % (link["url"], link["valid_until"]))


@qr.command("points")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def points_cmd(ctx: click.Context, as_json: bool) -> None:
    """The windows' QR points (the device id their QR ratings are recorded under)."""
    state = _state(ctx, as_json)
    rows = _run(state, lambda svc: svc.points())
    emit(state, rows, ["point", "window", "records"], [(r["device_id"], r["window_id"], r["records"])
                                                       for r in rows], empty="(no QR points)")


@qr.group("key")
def key() -> None:
    """The signing keys of plates and links ([qr] key_file): list, rotate, retire."""


@key.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def key_list(ctx: click.Context, as_json: bool) -> None:
    """Key ids (never the keys); the last one signs new plates and links."""
    state = _state(ctx, as_json)
    path = _settings(state).key_file
    try:
        ring = tokens.KeyRing.open(path, create=False)
    except tokens.KeyFileError as e:
        raise CliError(str(e)) from None
    kids = ring.kids()
    current = ring.current.kid
    emit(state, {"key_file": str(path), "kids": kids, "current": current}, ["kid", "signs new tokens"],
         [(k, "yes" if k == current else "") for k in kids])


@key.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def key_rotate(ctx: click.Context, as_json: bool) -> None:
    """Add a new key: new plates and links are signed with it, old ones keep working."""
    state = _state(ctx, as_json)
    path = _settings(state).key_file
    try:
        kid = tokens.rotate_key_file(path)
    except tokens.KeyFileError as e:
        raise CliError(str(e)) from None
    if state.json:
        _print_json({"key_file": str(path), "current": kid})
    else:
        click.echo("key %d added to %s: it signs new plates and links from now on (running gateways "
                   "take it within seconds); reprint plates, then retire the old key" % (kid, path))


@key.command("retire")
@click.argument("kid", type=int)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def key_retire(ctx: click.Context, kid: int, as_json: bool) -> None:
    """Remove key KID: every plate and link signed with it stops working."""
    state = _state(ctx, as_json)
    path = _settings(state).key_file
    try:
        tokens.retire_key(path, kid)
    except tokens.KeyFileError as e:
        raise CliError(str(e)) from None
    if state.json:
        _print_json({"key_file": str(path), "retired": kid})
    else:
        click.echo("key %d retired from %s" % (kid, path))
