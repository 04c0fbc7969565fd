"""`hcp-gateway uplink push|reconcile|status|rejections|requeue`: the uplink's admin commands.

Part of the main CLI (gateway/cli.py registers them with one line) with its conventions:
`--config` (before the command, or after it as before), `--json` on every command, errors as
one line on stderr; exit 0 fine, 1 a finding or a failure (the platform unavailable or
refusing, records a push could not map or the platform rejected, a reconcile mismatch,
rejected records listed), 2 bad arguments or config. Times
are shown in the hall's zone, with it; `rejections --limit` says how many rows it hid.
`hcp-gateway push` / `reconcile` and `python -m gateway.uplink.commands ...` stay as aliases.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from gateway.cli import CliError, CliState, actor, json_option, local_time, run_db, table
from gateway.config import ConfigError
from gateway.store import Store
from gateway.uplink import state
from gateway.uplink.client import PlatformRefused, PlatformUnavailable
from gateway.uplink.push import push_once
from gateway.uplink.reconcile import ReconcileResult, reconcile, reconcile_with_platform
from gateway.uplink.settings import UplinkSettings, load_settings

T = TypeVar("T")

config_option = click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                             help="gateway.toml (default: the CLI's --config)")


def _state(ctx: click.Context, as_json: bool, config: str | None) -> CliState:
    st: CliState = ctx.find_root().obj
    if config:
        st.config_path, st._cfg = config, None   # given after the command: it wins
    st.json = st.json or as_json
    return st


def _run(st: CliState, body: Callable[[Store, UplinkSettings], Awaitable[T]]) -> T:
    try:
        settings = load_settings(st.cfg)
    except ConfigError as e:
        raise CliError("config: %s" % e, 2) from None
    return run_db(st, lambda store: body(store, settings))


def _check_date(date: str | None) -> str | None:
    if date is None:
        return None
    try:
        return dt.date.fromisoformat(date).isoformat()
    except ValueError:
        raise CliError("--date must be YYYY-MM-DD, got %r" % date, 2) from None


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))


@click.group("uplink")
def uplink() -> None:
    """Delivery to the provincial platform: push, reconcile, status, rejections, requeue."""


@uplink.command("push")
@click.option("--date", "date", help="only records pressed on this local date (YYYY-MM-DD)")
@json_option
@config_option
@click.pass_context
def push(ctx: click.Context, date: str | None, as_json: bool, config: str | None) -> None:
    """Send pending records to the provincial platform now; exit 1 if it could not."""
    st = _state(ctx, as_json, config)
    day = _check_date(date)
    report = _run(st, lambda db, s: push_once(db, s, day, "manual"))
    # 1 when anything could not be delivered: the platform was away or refused, or records
    # could not be mapped or were refused (they wait in `uplink rejections` for an admin).
    ok = report.ok and not report.rejected and not report.local_rejected
    if st.json:
        _echo_json(dataclasses.asdict(report) | {"ok": ok})
    else:
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
    sys.exit(0 if ok else 1)


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
    listed: dict[str, int] = {}
    for m in res.mismatches:
        listed[m.kind] = listed.get(m.kind, 0) + 1
    for kind, n in sorted(res.mismatch_counts.items()):
        if n > listed.get(kind, 0):
            click.echo("  (%d more %s not listed)" % (n - listed.get(kind, 0), kind))


@uplink.command("reconcile")
@click.option("--date", "date", required=True, help="local date to reconcile (YYYY-MM-DD)")
@click.option("--no-platform", is_flag=True, help="do not query the platform's own list")
@json_option
@config_option
@click.pass_context
def reconcile_cmd(ctx: click.Context, date: str, no_platform: bool, as_json: bool,
                  config: str | None) -> None:
    """Devices vs gateway store vs platform acknowledgements for one day; exit 1 on mismatch."""
    st = _state(ctx, as_json, config)
    day = _check_date(date)
    assert day is not None

    async def body(db: Store, s: UplinkSettings) -> ReconcileResult:
        if no_platform:
            return await reconcile(db, s, day)
        try:
            return await reconcile_with_platform(db, s, day)
        except (PlatformUnavailable, PlatformRefused, OSError, TimeoutError, ValueError) as e:
            raise CliError("platform query failed (%s); use --no-platform to reconcile locally" % e) from None

    res = _run(st, body)
    if st.json:
        _echo_json(res.to_dict())
    else:
        _print_reconcile(res)
    sys.exit(0 if res.ok else 1)


@uplink.command("status")
@json_option
@config_option
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool, config: str | None) -> None:
    """Records per uplink state and the last runs (times in the hall's zone)."""
    st = _state(ctx, as_json, config)

    async def body(db: Store, s: UplinkSettings) -> tuple[dict[str, int], list[Any]]:
        return await state.status_counts(db), await state.recent_runs(db, 5)

    counts, runs = _run(st, body)
    if st.json:
        _echo_json({"records": counts, "runs": runs})
        return
    click.echo("records: " + (" ".join("%s=%d" % kv for kv in sorted(counts.items())) or "none yet"))
    for r in runs:
        click.echo("run %d %s%s started=%s outcome=%s batches=%d acked=%d rejected=%d%s" % (
            r["id"], r["trigger"], " " + r["for_date"] if r["for_date"] else "",
            local_time(st.cfg, r["started_ms"]), r["outcome"], r["batches"], r["acked"], r["rejected"],
            (" error=" + r["error"]) if r["error"] else ""))


@uplink.command("rejections")
@click.option("--limit", type=click.IntRange(1, 1000000), default=1000, show_default=True)
@json_option
@config_option
@click.pass_context
def rejections_cmd(ctx: click.Context, limit: int, as_json: bool, config: str | None) -> None:
    """Records the platform (or the adapter) rejected, with the reason. Exit 1 if any."""
    st = _state(ctx, as_json, config)
    rows, total = _run(st, lambda db, s: state.list_rejections_counted(db, limit))
    if st.json:
        _echo_json({"rejections": rows, "total": total, "hidden": total - len(rows)})
    else:
        if rows:
            click.echo(table(["record", "kind", "origin", "code", "reason"],
                             [(r["record_id"], r["kind"], r["reject_origin"], r["reject_code"],
                               r["reject_reason"]) for r in rows]))
        if total > len(rows):
            click.echo("(%d more not shown; raise --limit)" % (total - len(rows)))
        click.echo("%d rejected record(s)%s" % (total, "; re-queue with `hcp-gateway uplink requeue`"
                                                 if rows else ""))
    sys.exit(1 if total else 0)


@uplink.command("requeue")
@click.argument("record_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="every rejected record")
@click.option("--code", help="only rejections with this code")
@json_option
@config_option
@click.pass_context
def requeue_cmd(ctx: click.Context, record_ids: tuple[str, ...], all_: bool, code: str | None, as_json: bool,
                config: str | None) -> None:
    """Send rejected records again on the next push (after fixing their cause)."""
    st = _state(ctx, as_json, config)
    if not record_ids and not all_ and code is None:
        raise click.UsageError("name record ids, or use --all / --code")
    ids = list(record_ids) if record_ids else None
    n = _run(st, lambda db, s: state.requeue(db, ids, code, actor=actor()))
    if st.json:
        _echo_json({"requeued": n})
    else:
        click.echo("%d record(s) re-queued" % n)


def register(cli: click.Group) -> None:
    """`uplink ...` on the main CLI, and the old top-level `push` / `reconcile` as aliases."""
    cli.add_command(uplink)
    cli.add_command(push, "push")
    cli.add_command(reconcile_cmd, "reconcile")


def main() -> None:
    """`python -m gateway.uplink.commands ARGS` = `hcp-gateway ARGS` (kept for old scripts)."""
    from gateway.cli import main as cli_main
    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
