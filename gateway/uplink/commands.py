"""Admin commands: `push [--date D]`, `reconcile --date D`, `uplink status|rejections|requeue`.

Register all of them on the gateway CLI with one line: `register(cli)` (or
`cli.add_command(...)` for push, reconcile and uplink). Exit codes: 0 done, 1 the platform
was unavailable / refused, a record could not be mapped or was rejected, or reconcile found
mismatches, 2 bad config or arguments.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from gateway.config import Config, ConfigError, load_config
from gateway.store import Store, open_store
from gateway.store.errors import StoreError
from gateway.uplink import state
from gateway.uplink.push import push_once
from gateway.uplink.reconcile import ReconcileResult, reconcile, reconcile_with_platform
from gateway.uplink.settings import UplinkSettings, load_settings

T = TypeVar("T")


def _config_path(ctx: click.Context, given: str | None) -> str:
    if given:
        return given
    obj = ctx.find_root().obj
    for cand in (getattr(obj, "config_path", None), obj.get("config") if isinstance(obj, dict) else None):
        if cand:
            return str(cand)
    return "gateway.toml"


def _run(ctx: click.Context, config: str | None,
         body: Callable[[Store, UplinkSettings], Awaitable[T]]) -> T:
    path = _config_path(ctx, config)
    try:
        cfg: Config = load_config(path)
        settings = load_settings(cfg)
    except ConfigError as e:
        click.echo("error: %s" % e, err=True)
        sys.exit(2)

    async def go() -> T:
        try:
            store = await open_store(cfg.store.url, create=False)
        except StoreError as e:
            click.echo("error: %s" % e, err=True)
            sys.exit(1)
        try:
            return await body(store, settings)
        finally:
            await store.close()

    return asyncio.run(go())


def _check_date(date: str | None) -> str | None:
    if date is None:
        return None
    try:
        return dt.date.fromisoformat(date).isoformat()
    except ValueError:
        raise click.BadParameter("expected YYYY-MM-DD", param_hint="--date") from None


config_option = click.option("--config", "config", type=click.Path(dir_okay=False),
                             help="gateway.toml (default: the CLI's --config, else ./gateway.toml)")


@click.command("push")
@click.option("--date", "date", help="only records pressed on this local date (YYYY-MM-DD)")
@config_option
@click.pass_context
def push(ctx: click.Context, date: str | None, config: str | None) -> None:
    """Send pending records to the provincial platform now."""
    day = _check_date(date)
    report = _run(ctx, config, lambda db, s: push_once(db, s, day, "manual"))
    click.echo("push%s: %s; %d batches, %d accepted, %d duplicates (already held), %d rejected by the"
               " platform, %d not mappable; %d default ratings for invitations closed without a device"
               " record%s%s" % (
                   " " + day if day else "", report.outcome, report.batches, report.accepted,
                   report.duplicates, report.rejected, report.local_rejected, report.invitation_defaults,
                   "; %d corrections applied, %d refused" % (report.corrections_applied,
                                                             report.corrections_rejected)
                   if report.corrections_applied or report.corrections_rejected else "",
                   ("; " + report.error) if report.error else ""))
    if report.rejected or report.local_rejected:
        click.echo("see `hcp-gateway uplink rejections` for the reasons")
    # 1 when anything could not be delivered: the platform was away or refused, or records
    # could not be mapped or were refused (they wait in `uplink rejections` for an admin).
    sys.exit(0 if report.ok and not report.rejected and not report.local_rejected else 1)


def _print_reconcile(res: ReconcileResult) -> None:
    click.echo("reconcile %s" % res.date)
    click.echo("devices:")
    for d in res.devices:
        kinds = " ".join("%s=%d" % kv for kv in sorted(d.by_kind.items()))
        click.echo("  %-24s %s  missing_seq=%d journal_depth=%s" % (
            d.device_id, kinds, d.missing_seq, "?" if d.journal_depth is None else d.journal_depth))
    click.echo("store (device / window):")
    for dev, windows in sorted(res.store.items()):
        for win, per_kind in sorted(windows.items()):
            counts = " ".join("%s=%d" % kv for kv in sorted(per_kind.items()))
            click.echo("  %-24s %-8s %s" % (dev, win or "-", counts))
    u = res.uplink
    click.echo("uplink: records=%d uploadable=%d acked=%d rejected=%d sent_unanswered=%d never_sent=%d"
               " held_by_policy=%d" % (u["records"], u["uploadable"], u["acked"], u["rejected"], u["sent"],
                                       u["unsent"], u["held"]))
    click.echo("  of which invitation defaults (inv:<id>, closed without a device record)=%d;"
               " device unrated records covered by one=%d; invitations held (unrated = skip)=%d"
               % (u["invitation_defaults"], u["covered"], u["held_invitations"]))
    click.echo("platform: %s" % (("holds %d records of this date" % res.platform_held)
                                 if res.platform_checked else "not queried"))
    if res.ok:
        click.echo("OK: no mismatch")
        return
    click.echo("MISMATCHES: " + ", ".join("%s=%d" % kv for kv in sorted(res.mismatch_counts.items())))
    for m in res.mismatches:
        click.echo("  %-16s %-32s %s" % (m.kind, m.record_id or m.device_id, m.detail))


@click.command("reconcile")
@click.option("--date", "date", required=True, help="local date to reconcile (YYYY-MM-DD)")
@click.option("--no-platform", is_flag=True, help="do not query the platform's own list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result")
@config_option
@click.pass_context
def reconcile_cmd(ctx: click.Context, date: str, no_platform: bool, as_json: bool,
                  config: str | None) -> None:
    """Devices vs gateway store vs platform acknowledgements for one day; exit 1 on mismatch."""
    day = _check_date(date)
    assert day is not None

    async def body(db: Store, s: UplinkSettings) -> ReconcileResult:
        if no_platform:
            return await reconcile(db, s, day)
        return await reconcile_with_platform(db, s, day)

    try:
        res = _run(ctx, config, body)
    except Exception as e:   # platform unreachable for the query: say so, do not guess
        click.echo("error: platform query failed (%s); use --no-platform to reconcile locally" % e, err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(res.to_dict(), ensure_ascii=False, indent=1))
    else:
        _print_reconcile(res)
    sys.exit(0 if res.ok else 1)


@click.group("uplink")
def uplink() -> None:
    """Delivery state of the uplink: status, rejections, re-queue."""


@uplink.command("status")
@config_option
@click.pass_context
def status_cmd(ctx: click.Context, config: str | None) -> None:
    """Records per uplink state and the last runs."""

    async def body(db: Store, s: UplinkSettings) -> tuple[dict[str, int], list[Any]]:
        return await state.status_counts(db), await state.recent_runs(db, 5)

    counts, runs = _run(ctx, config, body)
    click.echo("records: " + (" ".join("%s=%d" % kv for kv in sorted(counts.items())) or "none yet"))
    for r in runs:
        click.echo("run %d %s%s started=%s outcome=%s batches=%d acked=%d rejected=%d%s" % (
            r["id"], r["trigger"], " " + r["for_date"] if r["for_date"] else "",
            dt.datetime.fromtimestamp(r["started_ms"] / 1000).isoformat(timespec="seconds"),
            r["outcome"], r["batches"], r["acked"], r["rejected"],
            (" error=" + r["error"]) if r["error"] else ""))


@uplink.command("rejections")
@click.option("--limit", default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@config_option
@click.pass_context
def rejections_cmd(ctx: click.Context, limit: int, as_json: bool, config: str | None) -> None:
    """Records the platform (or the adapter) rejected, with the reason. Exit 1 if any."""
    rows = _run(ctx, config, lambda db, s: state.list_rejections(db, limit))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        for r in rows:
            click.echo("%-32s %-8s %-8s %-18s %s" % (r["record_id"], r["kind"], r["reject_origin"],
                                                    r["reject_code"], r["reject_reason"]))
        click.echo("%d rejected record(s)%s" % (len(rows), "; re-queue with `hcp-gateway uplink requeue`"
                                                 if rows else ""))
    sys.exit(1 if rows else 0)


@uplink.command("requeue")
@click.argument("record_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="every rejected record")
@click.option("--code", help="only rejections with this code")
@config_option
@click.pass_context
def requeue_cmd(ctx: click.Context, record_ids: tuple[str, ...], all_: bool, code: str | None,
                config: str | None) -> None:
    """Send rejected records again on the next push (after fixing their cause)."""
    if not record_ids and not all_ and code is None:
        raise click.UsageError("name record ids, or use --all / --code")
    ids = list(record_ids) if record_ids else None
    n = _run(ctx, config, lambda db, s: state.requeue(db, ids, code))
    click.echo("%d record(s) re-queued" % n)


COMMANDS = (push, reconcile_cmd, uplink)


def register(cli: click.Group) -> None:
    for cmd in COMMANDS:
        cli.add_command(cmd)


def main() -> None:
    """Stand-alone entry (`python -m gateway.uplink.commands ...`) until the gateway CLI registers us."""
    group = click.Group("hcp-gateway", help="uplink commands of the haochaping gateway")
    register(group)
    group()


if __name__ == "__main__":
    main()
