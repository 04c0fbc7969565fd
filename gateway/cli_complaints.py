"""`hcp-gateway complaints ...`: the 差评 work orders on the command line (docs/complaints.md).

    complaints list [--state S]... [--open] [--due soon|overdue] [--limit N]
    complaints show ID
    complaints contact ID --note TEXT
    complaints verify ID --valid [--complex] [--note TEXT]
    complaints verify ID --invalid --reason mistaken_press|malicious|not_our_matter|other --note TEXT
    complaints rectify ID --note TEXT
    complaints callback ID --grade vs|s|bs|d|vd [--tag CODE]... [--text TEXT] [--note TEXT]
    complaints close ID [--note TEXT]
    complaints appeal ID --note TEXT
    complaints review ID --start | --uphold --note TEXT | --overturn --reason R --note TEXT
    complaints exclude ID --reason mistaken_press|malicious --note TEXT
    complaints reasons ID [--tag CODE]... [--text TEXT] [--source liaison|callback|qr]
    complaints corrections [--status S]... | --done ID [--note TEXT]
    complaints tags

A thin layer over gateway.complaints.ComplaintService (the API and the console call the same).
Every action is recorded as `cli:<os user>`, or `cli:<os user> (NAME)` with `--by NAME`.
`--json` prints the complaint (or list) as JSON. Exit 0 done, 1 refused (one line saying why),
2 bad arguments or config. Times are shown in the hall's zone, with their offset.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from gateway.cli import CliError, CliState, _state, actor, emit, run_db, table
from gateway.complaints import (
    EXCLUDE_REASONS,
    INVALID_REASONS,
    REASON_SOURCES,
    STATES,
    ComplaintService,
    ComplaintSettings,
)
from gateway.store import Store
from protocol.grades import GRADES

T = TypeVar("T")
_CORRECTION_STATUSES = ("pending", "sent", "acked", "rejected", "manual", "manual_done")


def _run(state: CliState, body: Callable[[ComplaintService], Awaitable[T]]) -> T:
    cfg = state.cfg

    async def go(store: Store) -> T:
        return await body(ComplaintService.from_config(store, cfg))

    return run_db(state, go)


def _who(by: str | None) -> str:
    who = actor()
    if by:
        by = by.strip()
        if not by or len(by) > 64:
            raise CliError("--by must be a name of 1..64 characters", 2)
        who = "%s (%s)" % (who, by)
    return who


def _next_deadline(v: dict[str, Any]) -> str:
    """The most pressing live deadline of a complaint view, for the list."""
    order = {"overdue": 0, "due_soon": 1, "open": 2, "unknown": 3}
    live = [
        (order[d["status"]], k, d)
        for k, d in v["deadlines"].items()
        if d["status"] in order and k != "appeal"
    ]
    if not live:
        return "-"
    _, kind, d = min(live, key=lambda x: (x[0], x[2]["due_ms"] or 0))
    if d["status"] == "unknown":
        return "%s: unknown (calendar)" % kind
    return "%s %s%s" % (kind, d["due"], {"overdue": " OVERDUE", "due_soon": " due soon"}.get(d["status"], ""))


def _print_one(state: CliState, v: dict[str, Any]) -> None:
    if state.json:
        click.echo(json.dumps(v, ensure_ascii=False, indent=1, sort_keys=True))
        return
    lines = [
        "complaint #%d  %s (%s)  %s%s"
        % (
            v["id"],
            v["state"],
            v["state_zh"],
            "verified " + v["verdict"],
            " (%s)" % v["invalid_reason"] if v["invalid_reason"] else "",
        ),
        "rating     %s %s  %s  case %s  %s%s"
        % (
            v["grade"],
            v["grade_zh"],
            v["rated_at"],
            v["case_no"] or "-",
            v["task_name"] or v["task_code"] or "-",
            "  (follow-up rating)" if v["assess_number"] == 2 else "",
        ),
        "where      hall %s  dept %s  window %s %s  clerk %s %s"
        % (
            v["hall_id"] or "-",
            v["dept_code"] or "-",
            v["window_id"] or "-",
            v["window_name"],
            v["staff_account"] or "-",
            v["staff_name"],
        ),
        "record     %s (%s)  opened %s" % (v["record_id"], v["channel"], v["opened_at"]),
        "reasons    %s%s"
        % (
            ", ".join("%s %s" % (c, n) for c, n in zip(v["tags"], v["tag_names"], strict=True)) or "-",
            ("  text: " + v["comment"]) if v["comment"] else "",
        ),
        "appeal     %s%s"
        % (v["appeal_state"], (" (%s)" % v["overturn_reason"]) if v["overturn_reason"] else ""),
    ]
    if v["complex"]:
        lines.append("complex    yes (rectify within the longer period)")
    if v["callback_grade"]:
        lines.append("callback   %s" % v["callback_grade"])
    if v.get("exclusion"):
        e = v["exclusion"]
        lines.append("EXCLUDED   %s by %s at %s: %s" % (e["reason"], e["actor"], e["at"], e["note"]))
    if v["calendar_error"]:
        lines.append("calendar   %s" % v["calendar_error"])
    click.echo("\n".join(lines))
    click.echo(
        table(
            ["deadline", "due (hall time)", "status"],
            [(k, d["due"] or "unknown", d["status"]) for k, d in v["deadlines"].items()],
        )
    )
    if v.get("history"):
        click.echo(
            table(
                ["when", "who", "what", "from", "to", "note"],
                [
                    (h["at"], h["actor"], h["action"], h["from_state"], h["to_state"], h["note"])
                    for h in v["history"]
                ],
            )
        )
    for k in v.get("corrections") or []:
        click.echo("platform   %s %s (correction %d)" % (k["action"], k["status"], k["id"]))


def _act(
    ctx: click.Context,
    as_json: bool,
    body: Callable[[ComplaintService], Awaitable[Any]],
    complaint_id: int,
    done: str,
) -> None:
    state = _state(ctx, as_json)

    async def go(svc: ComplaintService) -> dict[str, Any]:
        await body(svc)
        return await svc.show(complaint_id)

    v = _run(state, go)
    if state.json:
        _print_one(state, v)
    else:
        click.echo(
            "complaint #%d %s: now %s (%s), verified %s, appeal %s; next: %s"
            % (
                complaint_id,
                done,
                v["state"],
                v["state_zh"],
                v["verdict"],
                v["appeal_state"],
                _next_deadline(v),
            )
        )


# The CLI's --json option (gateway/cli.py), declared here too: the two modules import each
# other and a type checker cannot see its type through the cycle.
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")
by_option = click.option("--by", "by", default=None, help="the person acting, recorded with your user name")
note_option = click.option("--note", default="", help="what was done, or why (recorded)")


@click.group("complaints", invoke_without_command=True)
@json_option
@click.pass_context
def complaints(ctx: click.Context, as_json: bool) -> None:
    """差评 work orders: list, show and work them to their end (docs/complaints.md)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd, as_json=as_json)


@complaints.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="only these states")
@click.option("--open", "open_only", is_flag=True, help="only work orders not closed")
@click.option(
    "--due", type=click.Choice(["soon", "overdue"]), help="only those with a deadline due soon / overdue"
)
@click.option("--limit", type=click.IntRange(1, 100000), default=1000, show_default=True)
@json_option
@click.pass_context
def list_cmd(
    ctx: click.Context, states: tuple[str, ...], open_only: bool, due: str | None, limit: int, as_json: bool
) -> None:
    """Complaints, newest first, with their most pressing deadline."""
    state = _state(ctx, as_json)
    rows, total = _run(state, lambda svc: svc.search(list(states) or None, open_only, due, limit=limit))
    emit(
        state,
        {"complaints": rows, "total": total, "hidden": total - len(rows)},
        ["id", "rated", "grade", "case", "window", "clerk", "state", "verdict", "appeal", "next deadline"],
        [
            (
                v["id"],
                v["rated_at"],
                v["grade_zh"],
                v["case_no"],
                v["window_id"],
                v["staff_name"] or v["staff_account"],
                v["state"],
                v["verdict"],
                v["appeal_state"],
                _next_deadline(v),
            )
            for v in rows
        ],
        "(no complaints)",
    )
    if not state.json and total > len(rows):
        click.echo("(%d more not shown: raise --limit)" % (total - len(rows)))


@complaints.command("show")
@click.argument("complaint_id", type=int)
@json_option
@click.pass_context
def show_cmd(ctx: click.Context, complaint_id: int, as_json: bool) -> None:
    """One complaint: the rating, where, deadlines, reasons, history, corrections."""
    state = _state(ctx, as_json)
    _print_one(state, _run(state, lambda svc: svc.show(complaint_id)))


@complaints.command("contact")
@click.argument("complaint_id", type=int)
@click.option("--note", required=True, help="how the citizen was contacted and what was learned")
@by_option
@json_option
@click.pass_context
def contact_cmd(ctx: click.Context, complaint_id: int, note: str, by: str | None, as_json: bool) -> None:
    """The citizen was contacted (联系, within 1 working day)."""
    who = _who(by)
    _act(ctx, as_json, lambda svc: svc.contact(complaint_id, who, note), complaint_id, "contacted")


@complaints.command("verify")
@click.argument("complaint_id", type=int)
@click.option("--valid/--invalid", "valid", default=None, help="a valid 差评, or not valid (with --reason)")
@click.option("--reason", type=click.Choice(list(INVALID_REASONS)), help="why it is not valid")
@click.option("--complex", "complex_", is_flag=True, help="valid and complex: rectify within 15 working days")
@note_option
@by_option
@json_option
@click.pass_context
def verify_cmd(
    ctx: click.Context,
    complaint_id: int,
    valid: bool | None,
    reason: str | None,
    complex_: bool,
    note: str,
    by: str | None,
    as_json: bool,
) -> None:
    """Verification (核实): --valid, or --invalid --reason R --note TEXT."""
    if valid is None:
        raise click.UsageError("give --valid or --invalid")
    who = _who(by)
    _act(
        ctx,
        as_json,
        lambda svc: svc.verify(complaint_id, who, valid, reason, note, complex_),
        complaint_id,
        "verified " + ("valid" if valid else "not valid"),
    )


@complaints.command("rectify")
@click.argument("complaint_id", type=int)
@click.option("--note", required=True, help="what was done (整改情况)")
@by_option
@json_option
@click.pass_context
def rectify_cmd(ctx: click.Context, complaint_id: int, note: str, by: str | None, as_json: bool) -> None:
    """Rectification done and reported (整改反馈)."""
    who = _who(by)
    _act(ctx, as_json, lambda svc: svc.rectify(complaint_id, who, note), complaint_id, "rectified")


@complaints.command("callback")
@click.argument("complaint_id", type=int)
@click.option(
    "--grade",
    required=True,
    type=click.Choice(GRADES),
    help="the citizen's satisfaction with the rectification",
)
@click.option("--tag", "tags", multiple=True, help="a 差评 reason tag code the citizen gave (repeatable)")
@click.option("--text", default="", help="the citizen's own words")
@note_option
@by_option
@json_option
@click.pass_context
def callback_cmd(
    ctx: click.Context,
    complaint_id: int,
    grade: str,
    tags: tuple[str, ...],
    text: str,
    note: str,
    by: str | None,
    as_json: bool,
) -> None:
    """Callback (回访): the citizen re-rates the rectification."""
    who = _who(by)
    _act(
        ctx,
        as_json,
        lambda svc: svc.callback(complaint_id, who, grade, note, tags, text),
        complaint_id,
        "called back",
    )


@complaints.command("close")
@click.argument("complaint_id", type=int)
@note_option
@by_option
@json_option
@click.pass_context
def close_cmd(ctx: click.Context, complaint_id: int, note: str, by: str | None, as_json: bool) -> None:
    """Close the work order (after the callback)."""
    who = _who(by)
    _act(ctx, as_json, lambda svc: svc.close(complaint_id, who, note), complaint_id, "closed")


@complaints.command("appeal")
@click.argument("complaint_id", type=int)
@click.option("--note", required=True, help="the clerk's grounds (申诉理由)")
@by_option
@json_option
@click.pass_context
def appeal_cmd(ctx: click.Context, complaint_id: int, note: str, by: str | None, as_json: bool) -> None:
    """The rated clerk's appeal (申诉), within 3 working days of being notified."""
    who = _who(by)
    _act(ctx, as_json, lambda svc: svc.appeal(complaint_id, who, note), complaint_id, "appealed")


@complaints.command("review")
@click.argument("complaint_id", type=int)
@click.option("--start", "decision", flag_value="start", help="the review starts (复核)")
@click.option("--uphold", "decision", flag_value="uphold", help="the 差评 stands")
@click.option(
    "--overturn",
    "decision",
    flag_value="overturn",
    help="the rating was mistaken or malicious: excluded (kept), the platform told",
)
@click.option("--reason", type=click.Choice(list(EXCLUDE_REASONS)), help="why it is overturned")
@note_option
@by_option
@json_option
@click.pass_context
def review_cmd(
    ctx: click.Context,
    complaint_id: int,
    decision: str | None,
    reason: str | None,
    note: str,
    by: str | None,
    as_json: bool,
) -> None:
    """The review of an appeal (复核, within 7 working days): --start, then --uphold or --overturn."""
    if decision is None:
        raise click.UsageError("give --start, --uphold or --overturn")
    who = _who(by)
    if decision == "start":
        _act(
            ctx,
            as_json,
            lambda svc: svc.review_start(complaint_id, who, note),
            complaint_id,
            "review started",
        )
    else:
        _act(
            ctx,
            as_json,
            lambda svc: svc.review_decide(complaint_id, who, decision == "overturn", reason, note),
            complaint_id,
            "upheld" if decision == "uphold" else "overturned",
        )


@complaints.command("exclude")
@click.argument("complaint_id", type=int)
@click.option("--reason", required=True, type=click.Choice(list(EXCLUDE_REASONS)))
@click.option("--note", required=True, help="the evidence (recorded)")
@by_option
@json_option
@click.pass_context
def exclude_cmd(
    ctx: click.Context, complaint_id: int, reason: str, note: str, by: str | None, as_json: bool
) -> None:
    """Exclude the rating from statistics (never deleted); the platform is told or it is listed."""
    who = _who(by)
    _act(ctx, as_json, lambda svc: svc.exclude(complaint_id, who, reason, note), complaint_id, "excluded")


@complaints.command("reasons")
@click.argument("complaint_id", type=int)
@click.option("--tag", "tags", multiple=True, help="a tag code of the set in force (repeatable); see `tags`")
@click.option("--text", default="", help="free text (writingEvaluation)")
@click.option("--source", type=click.Choice(REASON_SOURCES), default="liaison", show_default=True)
@by_option
@json_option
@click.pass_context
def reasons_cmd(
    ctx: click.Context,
    complaint_id: int,
    tags: tuple[str, ...],
    text: str,
    source: str,
    by: str | None,
    as_json: bool,
) -> None:
    """Attach the 差评's reasons (evalDetail tags, free text); replaces earlier ones."""
    who = _who(by)
    _act(
        ctx,
        as_json,
        lambda svc: svc.attach_reasons(complaint_id, who, tags, text, source),
        complaint_id,
        "reasons recorded",
    )


@complaints.command("corrections")
@click.option("--status", "statuses", multiple=True, type=click.Choice(_CORRECTION_STATUSES))
@click.option(
    "--done", "done_id", type=int, help="mark this manual correction made in the platform's back office"
)
@note_option
@by_option
@json_option
@click.pass_context
def corrections_cmd(
    ctx: click.Context,
    statuses: tuple[str, ...],
    done_id: int | None,
    note: str,
    by: str | None,
    as_json: bool,
) -> None:
    """What the platform must be told (exclusions, late reasons): sent by the push where the
    adapter can, otherwise `manual` for someone to do in the platform's back office."""
    state = _state(ctx, as_json)
    if done_id is not None:
        who = _who(by)
        k = _run(state, lambda svc: svc.correction_done(done_id, who, note))
        emit(state, k, [], [])
        if not state.json:
            click.echo(
                "correction %d (%s of %s) marked done by %s" % (k["id"], k["action"], k["record_id"], who)
            )
        return
    rows, total = _run(state, lambda svc: svc.corrections(list(statuses) or None))
    emit(
        state,
        {"corrections": rows, "total": total, "hidden": total - len(rows)},
        ["id", "created", "complaint", "rating", "action", "what", "status", "error"],
        [
            (
                k["id"],
                k["created_at"],
                k["complaint_id"],
                k["record_id"],
                k["action"],
                json.dumps(k["payload"], ensure_ascii=False, sort_keys=True),
                k["status"],
                k["error"],
            )
            for k in rows
        ],
        "(no corrections)",
    )


@complaints.command("tags")
@json_option
@click.pass_context
def tags_cmd(ctx: click.Context, as_json: bool) -> None:
    """The province's 差评 tag sets from [complaints] (the one in force marked *)."""
    state = _state(ctx, as_json)
    s = state.cfg.sections.get("complaints") or ComplaintSettings.from_config(state.cfg)
    data = {
        "in_force": s.tag_version,
        "sets": {
            v: {
                "source": ts.source,
                **{g: [{"code": t.code, "name": t.name} for t in tags] for g, tags in ts.by_grade.items()},
            }
            for v, ts in s.tag_sets.items()
        },
    }
    emit(
        state,
        data,
        ["set", "grade", "code", "name"],
        [
            ("%s%s" % (v, "*" if v == s.tag_version else ""), g, t.code, t.name)
            for v, ts in s.tag_sets.items()
            for g, tags in ts.by_grade.items()
            for t in tags
        ],
        "(no tag sets configured: [complaints] tag_version and tag_sets)",
    )
