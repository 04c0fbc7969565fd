"""Operations commands of `hcp-gateway` (issue 20): doctor, backup, restore, alerts.

    hcp-gateway doctor [--days N] [--full]          one line per check; exit 1 on a failure
    hcp-gateway backup --out FILE | --dir DIR [--keep N]
    hcp-gateway restore FILE [--force]
    hcp-gateway alerts [--all] [--limit N]          open alerts (or the history)
    hcp-gateway alerts test                         a test notice through every [notify] channel
Each takes `--json`; exit 0 fine, 1 a finding or a failure, 2 usage or config.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import click

from gateway import doctor as doctor_mod
from gateway.cli import CliError, CliState, _state, run_db, table
from gateway.clock import fmt_ms
from gateway.notify import Notification, Notifier, NotifySettings, Severity
from gateway.store import Store
from gateway.store import backup as store_backup
from gateway.store.backup import BackupError, BackupInfo, RestoreInfo
from gateway.store.errors import StoreError

json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))


# ---- doctor --------------------------------------------------------------------------------------

@click.command("doctor")
@click.option("--days", type=click.IntRange(0, 36500), default=None,
              help="disk room needed, in days at the measured rate (default: [alerts] disk_min_days, 30)")
@click.option("--full", is_flag=True, help="SQLite: integrity_check instead of quick_check (slower)")
@json_option
@click.pass_context
def doctor(ctx: click.Context, days: int | None, full: bool, as_json: bool) -> None:
    """Check the config, store, service, broker, accounts, ACL, platform, clock, disk, TLS and
    alerts: one line each; exit 1 when any check fails."""
    state = _state(ctx, as_json)
    checks = asyncio.run(doctor_mod.run(state.config_path, days, full))
    click.echo(doctor_mod.report(checks, state.json))
    if doctor_mod.failed(checks):
        ctx.exit(1)


# ---- backup and restore ----------------------------------------------------------------------------

_STAMP = re.compile(r"^gateway-.*-\d{8}-\d{6}\.(db|pgdump)$")


def _backup_name(state: CliState) -> str:
    cfg = state.cfg
    stamp = dt.datetime.now(tz=cfg.hall.tz).strftime("%Y%m%d-%H%M%S")
    return "gateway-%s-%s.%s" % (cfg.hall.id, stamp, "pgdump" if cfg.store.is_postgres else "db")


def _prune(directory: Path, keep: int) -> list[str]:
    """Remove the oldest backups the command made in directory beyond `keep`."""
    mine = sorted((p for p in directory.iterdir() if _STAMP.match(p.name) and p.is_file()),
                  key=lambda p: p.stat().st_mtime)
    gone = mine[:-keep] if keep and len(mine) > keep else []
    for p in gone:
        p.unlink()
    return [str(p) for p in gone]


@click.command("backup")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the backup file to write (replaced if it exists)")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write gateway-HALL-YYYYmmdd-HHMMSS.db (.pgdump on PostgreSQL) into this directory")
@click.option("--keep", type=click.IntRange(0, 100000), default=0, show_default=True,
              help="with --dir: keep this many of its backups, remove older ones (0: keep all)")
@json_option
@click.pass_context
def backup(ctx: click.Context, out: Path | None, directory: Path | None, keep: int, as_json: bool) -> None:
    """An online, consistent copy of the store (SQLite backup API / pg_dump), 0600: it holds
    the devices' keys."""
    state = _state(ctx, as_json)
    if (out is None) == (directory is None):
        raise click.UsageError("give --out FILE or --dir DIR")
    if directory is not None:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise CliError("cannot create %s: %s" % (directory, e.strerror or e)) from None
        out = directory / _backup_name(state)
    assert out is not None
    try:
        info: BackupInfo = store_backup.backup(state.cfg.store.url, out)
    except (BackupError, StoreError) as e:
        raise CliError(str(e)) from None
    removed = _prune(directory, keep) if directory is not None else []
    if state.json:
        _echo_json({**info.as_dict(), "removed": removed})
        return
    click.echo("backup %s: %s, schema %d%s, %.1f MB in %.1f s (mode 0600: it holds the devices' keys)"
               % (info.path, info.backend, info.schema_version,
                  ", %d records" % info.records if info.records is not None else "", info.bytes / 1e6,
                  info.seconds))
    for p in removed:
        click.echo("removed old backup %s" % p)


@click.command("restore")
@click.argument("backup_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="replace an existing store (SQLite: kept beside it, renamed)")
@json_option
@click.pass_context
def restore(ctx: click.Context, backup_file: Path, force: bool, as_json: bool) -> None:
    """Put BACKUP_FILE in place as the configured store; the gateway must be stopped."""
    state = _state(ctx, as_json)
    try:
        info: RestoreInfo = store_backup.restore(backup_file, state.cfg.store.url, force)
    except (BackupError, StoreError) as e:
        raise CliError(str(e)) from None
    if state.json:
        _echo_json(info.as_dict())
        return
    click.echo("restored %s into %s %s: schema %d, %d records" % (backup_file, info.backend, info.target,
                                                                   info.schema_version, info.records))
    if info.kept:
        click.echo("the store it replaced is kept as %s" % info.kept)


# ---- alerts ---------------------------------------------------------------------------------

@click.group("alerts", invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="the history (open and resolved), newest first")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@json_option
@click.pass_context
def alerts(ctx: click.Context, show_all: bool, limit: int, as_json: bool) -> None:
    """Open alerts (silent devices, push failures, rejections, disk, journals); `alerts test`
    sends a test notice."""
    if ctx.invoked_subcommand is not None:
        return
    state = _state(ctx, as_json)
    tz = state.cfg.hall.tz

    async def body(store: Store) -> tuple[list[Any], int]:
        if show_all:
            return await store.read(lambda tx: tx.alerts.history(limit))
        rows = await store.read(lambda tx: tx.alerts.open_alerts())
        return rows[:limit], len(rows)

    rows, total = run_db(state, body)
    data = [r.as_dict() for r in rows]
    if state.json:
        _echo_json({"alerts": data, "total": total, "shown": len(rows)})
        return
    if not rows:
        click.echo("(no alerts)" if show_all else "(no open alerts)")
        return
    click.echo(table(["id", "opened", "severity", "condition", "subject", "resolved"],
                     [(r.id, fmt_ms(r.opened_ms, tz), r.severity, r.cond_key, r.subject,
                       fmt_ms(r.resolved_ms, tz) if r.resolved_ms else "open") for r in rows]))
    if total > len(rows):
        click.echo("(%d more not shown; --limit N)" % (total - len(rows)))


@alerts.command("test")
@click.option("--wait", type=click.FloatRange(1, 600), default=30.0, show_default=True,
              help="seconds to wait for delivery")
@json_option
@click.pass_context
def alerts_test(ctx: click.Context, wait: float, as_json: bool) -> None:
    """Send a test notice through every [notify] channel; exit 1 unless all delivered it."""
    state = _state(ctx, as_json)
    settings: NotifySettings | None = state.cfg.sections.get("notify")
    if settings is None or not settings.channels:
        raise CliError("no [notify] channel is configured (docs/notify.md): alerts would reach nobody")
    cfg = state.cfg

    async def go() -> dict[str, Any]:
        # Every channel gets it (a test ignores min_severity and kinds).
        n = Notification(kind="alert.test", severity=Severity.CRITICAL, subject="测试提醒：%s" % cfg.hall.id,
                         body="这是一条测试提醒（hcp-gateway alerts test，%s）。收到即说明提醒渠道工作正常。"
                         % fmt_ms(int(dt.datetime.now(dt.UTC).timestamp() * 1000), cfg.hall.tz),
                         payload={"hall": cfg.hall.id, "host": os.uname().nodename})
        async with Notifier(_all_kinds(settings)) as notifier:
            await notifier.send(n)
            await notifier.flush(wait)
            return {name: {"sent": st.sent, "failed": st.failed, "last_error": st.last_error}
                    for name, st in notifier.stats().items()}

    result = asyncio.run(go())
    ok = all(v["sent"] == 1 for v in result.values())
    if state.json:
        _echo_json({"ok": ok, "channels": result})
    else:
        for name, v in sorted(result.items()):
            why = "" if v["sent"] else ": " + (v["last_error"] or "not delivered in time")
            click.echo("%-6s %s%s" % ("ok" if v["sent"] else "FAIL", name, why))
    if not ok:
        ctx.exit(1)


def _all_kinds(settings: NotifySettings) -> NotifySettings:
    from dataclasses import replace

    from gateway.notify import Severity as Sev
    return replace(settings,
                   webhooks=tuple(replace(c, kinds=(), min_severity=Sev.INFO) for c in settings.webhooks),
                   emails=tuple(replace(c, kinds=(), min_severity=Sev.INFO) for c in settings.emails))


def register(cli: click.Group) -> None:
    for cmd in (doctor, backup, restore, alerts):
        cli.add_command(cmd)
