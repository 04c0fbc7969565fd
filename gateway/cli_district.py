"""`hcp-gateway` commands for the district's figures:

    hcp-gateway bulletin --period 2026-Q2 --by department|hall|town|window|clerk|item [--hall H]
                         [--format table|json|csv|xlsx] [--out FILE]
    hcp-gateway supervision --period 2026-06 [--hall H] [--evidence N] [--format table|json] [--out FILE]
    hcp-gateway cases [list] --period P [--window W] [--staff A] [--limit N]
    hcp-gateway cases show CASE
    hcp-gateway cases report FILE.json      the case feed from a file (the API's body: a case or
                                            {"cases": [...]})

Registered by `register(cli)` (one line in gateway/cli.py). Services: gateway/bulletin.py,
gateway/supervision.py, gateway/casefeed.py; periods: gateway/periods.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from gateway import casefeed
from gateway.bulletin import GROUPS, make_bulletin
from gateway.cli import CliError, CliState, _state, actor, emit, json_option, local_time, run_db
from gateway.complaint_figures import complaint_figures
from gateway.district_text import bulletin_text, supervision_text
from gateway.errors import DomainError
from gateway.export import ExportSettings, csv_bytes, write_table
from gateway.periods import HELP as PERIOD_HELP
from gateway.periods import Period, parse_period
from gateway.supervision import supervise


def _period(text: str) -> Period:
    try:
        return parse_period(text)
    except DomainError as e:
        raise CliError(str(e), 2) from None


def _export_settings(state: CliState) -> ExportSettings:
    s = state.cfg.sections.get("export")
    return s if isinstance(s, ExportSettings) else ExportSettings()


def _write(out: str | None, data: bytes) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def register(cli: click.Group) -> None:

    @cli.command("bulletin")
    @click.option("--period", required=True, help="e.g. " + PERIOD_HELP)
    @click.option("--by", "by", type=click.Choice(GROUPS), default="department", show_default=True)
    @click.option("--hall", "hall", help="only this hall (and the halls under it)")
    @click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "xlsx"]), default="table",
                  show_default=True)
    @click.option("--out", "out", help="write to this file (xlsx: required)")
    @json_option
    @click.pass_context
    def bulletin(ctx: click.Context, period: str, by: str, hall: str | None, fmt: str, out: str | None,
                 as_json: bool) -> None:
        """The district's bulletin (通报表) for a period, as the seed's attachments."""
        state = _state(ctx, as_json)
        if state.json:
            fmt = "json"
        p = _period(period)
        if fmt == "xlsx" and out is None:
            raise CliError("--format xlsx needs --out FILE", 2)
        cfg = state.cfg
        b = run_db(state, lambda store: make_bulletin(store, cfg, p, by, hall, complaint_figures(cfg)))
        settings = _export_settings(state)
        if fmt == "json":
            _write(out, (json.dumps(b.to_json(), ensure_ascii=False, indent=1) + "\n").encode())
        elif fmt == "csv":
            _write(out, csv_bytes(b.table(), settings))
        elif fmt == "xlsx":
            assert out is not None
            asyncio.run(write_table(b.table(), Path(out), "xlsx", settings))
        else:
            _write(out, (bulletin_text(b) + "\n").encode())
        if out is not None:
            click.echo("%s: %d rows, written to %s" % (b.title, len(b.rows), out), err=True)

    @cli.command("supervision")
    @click.option("--period", required=True, help="e.g. 2026-06 (each calendar month listed apart)")
    @click.option("--hall", "hall", help="only this hall (and the halls under it)")
    @click.option("--evidence", default=5, show_default=True, type=click.IntRange(0, 100000),
                  help="evidence rows shown per finding (table)")
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    @click.option("--out", "out", help="write to this file")
    @json_option
    @click.pass_context
    def supervision_cmd(ctx: click.Context, period: str, hall: str | None, evidence: int, fmt: str,
                        out: str | None, as_json: bool) -> None:
        """Findings on data truthfulness (数据质量) per clerk, window and device, with evidence."""
        state = _state(ctx, as_json)
        if state.json:
            fmt = "json"
        p = _period(period)
        cfg = state.cfg
        sv = run_db(state, lambda store: supervise(store, cfg, p, hall))
        if fmt == "json":
            _write(out, (json.dumps(sv.to_json(), ensure_ascii=False, indent=1) + "\n").encode())
        else:
            _write(out, (supervision_text(sv, evidence) + "\n").encode())

    @cli.group("cases", invoke_without_command=True)
    @click.pass_context
    def cases(ctx: click.Context) -> None:
        """The case feed: every 办件 the window systems reported."""
        if ctx.invoked_subcommand is None:
            raise CliError("cases: give list --period P, show CASE or report FILE", 2)

    @cases.command("list")
    @click.option("--period", required=True, help="e.g. " + PERIOD_HELP)
    @click.option("--window", "window", help="window number")
    @click.option("--staff", "staff_account", help="clerk account")
    @click.option("--limit", type=click.IntRange(1, 1000000), default=1000, show_default=True)
    @json_option
    @click.pass_context
    def cases_list(ctx: click.Context, period: str, window: str | None, staff_account: str | None, limit: int,
                   as_json: bool) -> None:
        """Cases accepted in the period (default hall's time zone)."""
        state = _state(ctx, as_json)
        lo, hi = _period(period).bounds(state.cfg.hall.tz)
        rows, total = run_db(state, lambda store: store.read(
            lambda tx: tx.cases.find(lo, hi, window, staff_account, limit)))
        cfg = state.cfg
        emit(state, {"cases": [c.as_dict() for c in rows], "total": total},
             ["case", "accepted", "finished", "status", "hall", "window", "clerk", "item"],
             [(c.case_no, local_time(cfg, c.accepted_ms), local_time(cfg, c.finished_ms), c.status,
               c.hall_id or cfg.hall.id, c.window_id or "-", c.staff_account or "-",
               c.task_name or c.task_code)
              for c in rows], "(no cases)")
        if not state.json and total > len(rows):
            click.echo("… %d more cases not shown (--limit)" % (total - len(rows)))

    @cases.command("show")
    @click.argument("case_no")
    @click.pass_context
    def cases_show(ctx: click.Context, case_no: str) -> None:
        """One case and its invitations (JSON)."""
        state = _state(ctx, True)
        data = run_db(state, lambda store: casefeed.get_case(store, case_no))
        click.echo(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))

    @cases.command("report")
    @click.argument("file", type=click.Path(dir_okay=False))
    @json_option
    @click.pass_context
    def cases_report(ctx: click.Context, file: str, as_json: bool) -> None:
        """Report cases from a JSON file: one case or {"cases": [...]} (as POST /api/v1/cases)."""
        state = _state(ctx, as_json)
        try:
            body = json.loads(Path(file).read_text(encoding="utf-8"))
        except OSError as e:
            raise CliError("cannot read %s: %s" % (file, e.strerror)) from None
        except ValueError as e:
            raise CliError("%s is not JSON: %s" % (file, e)) from None
        reports = casefeed.parse_batch(body)
        res = run_db(state, lambda store: casefeed.report_cases(store, state.cfg.hall, reports, actor()),
                     create=True)
        data = res.counts()
        if state.json:
            click.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))
        else:
            click.echo("cases: %(created)d created, %(updated)d updated, %(unchanged)d unchanged" % data)
