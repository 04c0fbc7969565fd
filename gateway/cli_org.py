"""`hcp-gateway` commands for the district's organisation (gateway/org.py):

    hcp-gateway org [--all]                          the whole tree (district, halls, departments, ...)
    hcp-gateway org at RECORD                        a record's hall/department/window/clerk at press time
    hcp-gateway halls [list] [--all]
    hcp-gateway halls add H --name N --kind centre|town|village [--parent P] [--area-code C]
                          [--timezone TZ] [--hours 08:30-12:00,13:30-17:30] [--days 1-5]
    hcp-gateway halls rename H NAME | move H (--parent P | --no-parent) | retire H
    hcp-gateway halls set H [--kind K] [--area-code C] [--timezone TZ] [--hours ...] [--days ...]
    hcp-gateway departments [list] [--all] | add CODE --name N [--hall H] | rename CODE NAME
                          | move CODE --hall H | retire CODE
    hcp-gateway windows rename W NAME | move W [--hall H] [--dept CODE] | retire W | history W
    hcp-gateway staff rename A NAME | move A --dept CODE | retire A
    hcp-gateway devices move D --hall H

Registered on the main group by `register(cli)` (one line in gateway/cli.py); `windows add
--hall` and `staff add --dept` are in gateway/cli.py beside the lists.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from gateway import org
from gateway.cli import CliError, CliState, _state, actor, emit, json_option, local_time, run_db, table
from gateway.store import Store


def _hours(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(t.strip() for t in text.split(",") if t.strip())


def _days(text: str | None) -> tuple[int, ...] | None:
    """"1-5", "1,2,3,4,5,6" or "1-5,7"."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-")
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise CliError("--days must be ISO weekdays like 1-5 or 1,2,3,4,5,6 (1 = Monday), got %r" % text,
                       2) from None
    return tuple(out)


def _done(state: CliState, data: dict[str, Any], line: str) -> None:
    if state.json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))
    else:
        click.echo(line)


def _hall_rows(state: CliState, halls: list[org.Hall]) -> list[tuple[Any, ...]]:
    return [(h.hall_id, h.name, h.kind, h.parent_id or "-", h.area_code or "-", h.timezone,
             ",".join(h.hours_text), ",".join(str(d) for d in h.opening_days),
             "retired " + local_time(state.cfg, h.retired_ms) if h.retired
             else ("config" if h.from_config else ""))
            for h in halls]


HALL_HEADERS = ["hall", "name", "kind", "parent", "area", "timezone", "hours", "days", "state"]


def register(cli: click.Group) -> None:
    """Add the organisation commands to the main group."""

    # ---- org -------------------------------------------------------------------------------

    @cli.group("org", invoke_without_command=True)
    @click.option("--all", "show_all", is_flag=True, help="retired ones too")
    @json_option
    @click.pass_context
    def org_group(ctx: click.Context, show_all: bool, as_json: bool) -> None:
        """The district's organisation: halls, departments, windows, clerks, devices' halls."""
        if ctx.invoked_subcommand is not None:
            return
        state = _state(ctx, as_json)
        t = run_db(state, lambda store: org.tree(store, state.cfg))
        data = t.to_dict(include_retired=show_all)
        if state.json:
            click.echo(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))
            return
        d = t.district
        click.echo("district: %s (%s)" % (d.name or "-", d.area_code or "-"))
        halls = [h for h in t.halls if show_all or not h.retired]
        click.echo(table(HALL_HEADERS, _hall_rows(state, halls)))
        click.echo("")
        hall_of = {h.hall_id: h.name for h in t.halls}
        dept_of = {x.dept_code: x.name for x in t.departments}
        default = state.cfg.hall.id
        click.echo(table(["department", "name", "hall", "state"],
                         [(x.dept_code, x.name, hall_of.get(x.hall_id or default, x.hall_id or default),
                           "retired" if x.retired else "")
                          for x in t.departments if show_all or not x.retired])
                   if t.departments else "(no departments)")
        click.echo("")
        click.echo(table(["window", "name", "hall", "department", "state"],
                         [(w.window_id, w.name, hall_of.get(w.hall_id or default, w.hall_id or default),
                           dept_of.get(w.dept_code, w.dept_code) or "-", "retired" if w.retired else "")
                          for w in t.windows if show_all or not w.retired]) if t.windows else "(no windows)")
        click.echo("")
        click.echo(table(["clerk", "name", "department", "state"],
                         [(s.account, s.display_name, dept_of.get(s.dept_code, s.dept_code) or "-",
                           "retired" if s.retired else "") for s in t.staff if show_all or not s.retired])
                   if t.staff else "(no clerks)")

    @org_group.command("at")
    @click.argument("record_id")
    @json_option
    @click.pass_context
    def org_at(ctx: click.Context, record_id: str, as_json: bool) -> None:
        """The hall, department, window and clerk RECORD_ID is credited to (as at its press)."""
        state = _state(ctx, as_json)
        p = run_db(state, lambda store: store.read(
            lambda tx: org.org_at_press_time(tx, record_id, state.cfg.hall)))
        if state.json:
            click.echo(json.dumps(p.as_dict(), ensure_ascii=False, indent=1, sort_keys=True))
            return
        click.echo(table(["record", "pressed", "hall", "department", "window", "clerk"],
                         [(p.record_id, local_time(state.cfg, p.pressed_at_ms),
                           "%s %s" % (p.hall_id, p.hall_name),
                           ("%s %s" % (p.dept_code, p.dept_name)) if p.dept_code else "-",
                           ("%s %s" % (p.window_id, p.window_name)).strip() if p.window_id else "(unbound)",
                           ("%s %s" % (p.staff_account, p.staff_name)) if p.staff_account else "-")]))

    # ---- halls -----------------------------------------------------------------------------

    @cli.group("halls", invoke_without_command=True)
    @click.option("--all", "show_all", is_flag=True, help="retired halls too")
    @json_option
    @click.pass_context
    def halls(ctx: click.Context, show_all: bool, as_json: bool) -> None:
        """Halls (区政务服务中心, 镇/街道便民服务中心, 村/社区代办点); `halls add` creates one."""
        if ctx.invoked_subcommand is None:
            ctx.invoke(halls_list, show_all=show_all, as_json=as_json)

    @halls.command("list")
    @click.option("--all", "show_all", is_flag=True, help="retired halls too")
    @json_option
    @click.pass_context
    def halls_list(ctx: click.Context, show_all: bool, as_json: bool) -> None:
        state = _state(ctx, as_json)
        rows = [h for h in run_db(state, lambda store: org.list_halls(store, state.cfg.hall))
                if show_all or not h.retired]
        emit(state, [h.public() for h in rows], HALL_HEADERS, _hall_rows(state, rows), "(no halls)")

    hall_opts = [
        click.option("--kind", type=click.Choice(org.HALL_KINDS), help="centre | town | village"),
        click.option("--area-code", help="administrative division code (6..12 digits)"),
        click.option("--timezone", help="IANA time zone (default: the default hall's)"),
        click.option("--hours", help="opening hours, e.g. 08:30-12:00,13:30-17:30"),
        click.option("--days", help="opening days, ISO weekdays, e.g. 1-5 or 1-6"),
    ]

    def with_hall_opts(f: Any) -> Any:
        for opt in reversed(hall_opts):
            f = opt(f)
        return f

    @halls.command("add")
    @click.argument("hall_id")
    @click.option("--name", required=True, help="e.g. 马尚街道便民服务中心")
    @click.option("--parent", help="the hall it belongs to (a village point's town centre)")
    @with_hall_opts
    @json_option
    @click.pass_context
    def halls_add(ctx: click.Context, hall_id: str, name: str, parent: str | None, kind: str | None,
                  area_code: str | None, timezone: str | None, hours: str | None, days: str | None,
                  as_json: bool) -> None:
        """Add a hall."""
        state = _state(ctx, as_json)
        if kind is None:
            raise CliError("halls add: --kind is required (centre, town or village)", 2)
        spec = org.HallSpec(name=name, kind=kind, parent_id=parent, area_code=area_code, timezone=timezone,
                            opening_hours=_hours(hours), opening_days=_days(days))
        h = run_db(state, lambda store: org.add_hall(store, state.cfg.hall, hall_id, spec, actor()),
                   create=True)
        _done(state, h.public(), "hall %s (%s) added" % (h.hall_id, h.name))

    @halls.command("set")
    @click.argument("hall_id")
    @with_hall_opts
    @json_option
    @click.pass_context
    def halls_set(ctx: click.Context, hall_id: str, kind: str | None, area_code: str | None,
                  timezone: str | None, hours: str | None, days: str | None, as_json: bool) -> None:
        """Change a hall's kind, area code, time zone, opening hours or days."""
        state = _state(ctx, as_json)
        spec = org.HallSpec(kind=kind, area_code=area_code, timezone=timezone, opening_hours=_hours(hours),
                            opening_days=_days(days))
        h = run_db(state, lambda store: org.update_hall(store, state.cfg.hall, hall_id, spec, actor()))
        _done(state, h.public(), "hall %s: %s %s, %s, days %s" % (
            h.hall_id, h.kind, h.timezone, ",".join(h.hours_text), ",".join(map(str, h.opening_days))))

    @halls.command("rename")
    @click.argument("hall_id")
    @click.argument("name")
    @json_option
    @click.pass_context
    def halls_rename(ctx: click.Context, hall_id: str, name: str, as_json: bool) -> None:
        state = _state(ctx, as_json)
        spec = org.HallSpec(name=name)
        h = run_db(state, lambda store: org.update_hall(store, state.cfg.hall, hall_id, spec, actor()))
        _done(state, h.public(), "hall %s renamed %s" % (h.hall_id, h.name))

    @halls.command("move")
    @click.argument("hall_id")
    @click.option("--parent", help="the hall it now belongs to")
    @click.option("--no-parent", is_flag=True, help="belongs to no other hall")
    @json_option
    @click.pass_context
    def halls_move(ctx: click.Context, hall_id: str, parent: str | None, no_parent: bool,
                   as_json: bool) -> None:
        """Put a hall under another (a village point under its town centre)."""
        state = _state(ctx, as_json)
        if (parent is None) == (not no_parent):
            raise CliError("halls move: give --parent P or --no-parent", 2)
        spec = org.HallSpec(parent_id=parent, no_parent=no_parent)
        h = run_db(state, lambda store: org.update_hall(store, state.cfg.hall, hall_id, spec, actor()))
        _done(state, h.public(), "hall %s now under %s" % (h.hall_id, h.parent_id or "(none)"))

    @halls.command("retire")
    @click.argument("hall_id")
    @json_option
    @click.pass_context
    def halls_retire(ctx: click.Context, hall_id: str, as_json: bool) -> None:
        """Retire a hall (kept for past bulletins; refused while windows, devices or departments
        are in it)."""
        state = _state(ctx, as_json)
        h = run_db(state, lambda store: org.retire_hall(store, state.cfg.hall, hall_id, actor()))
        _done(state, h.public(), "hall %s retired" % h.hall_id)

    # ---- departments -----------------------------------------------------------------------

    @cli.group("departments", invoke_without_command=True)
    @click.option("--all", "show_all", is_flag=True, help="retired departments too")
    @json_option
    @click.pass_context
    def departments(ctx: click.Context, show_all: bool, as_json: bool) -> None:
        """Departments (unified social credit code + name); `departments add` creates one."""
        if ctx.invoked_subcommand is None:
            ctx.invoke(departments_list, show_all=show_all, as_json=as_json)

    @departments.command("list")
    @click.option("--all", "show_all", is_flag=True, help="retired departments too")
    @json_option
    @click.pass_context
    def departments_list(ctx: click.Context, show_all: bool, as_json: bool) -> None:
        state = _state(ctx, as_json)
        rows = [d for d in run_db(state, org.list_departments) if show_all or not d.retired]
        emit(state, [asdict(d) for d in rows], ["code", "name", "hall", "state"],
             [(d.dept_code, d.name, d.hall_id or state.cfg.hall.id,
               "retired " + local_time(state.cfg, d.retired_ms) if d.retired else "") for d in rows],
             "(no departments)")

    @departments.command("add")
    @click.argument("code")
    @click.option("--name", required=True, help="e.g. 区医疗保障局")
    @click.option("--hall", "hall_id", help="the hall it sits in (default: the default hall)")
    @json_option
    @click.pass_context
    def departments_add(ctx: click.Context, code: str, name: str, hall_id: str | None, as_json: bool) -> None:
        """Add a department; CODE is its 18-character unified social credit code (checked)."""
        state = _state(ctx, as_json)
        d = run_db(state, lambda store: org.add_department(store, state.cfg.hall, code, name, hall_id,
                                                           actor()), create=True)
        _done(state, asdict(d), "department %s (%s) added" % (d.dept_code, d.name))

    @departments.command("rename")
    @click.argument("code")
    @click.argument("name")
    @json_option
    @click.pass_context
    def departments_rename(ctx: click.Context, code: str, name: str, as_json: bool) -> None:
        state = _state(ctx, as_json)
        d = run_db(state, lambda store: org.update_department(store, state.cfg.hall, code, actor(),
                                                              name=name))
        _done(state, asdict(d), "department %s renamed %s" % (d.dept_code, d.name))

    @departments.command("move")
    @click.argument("code")
    @click.option("--hall", "hall_id", required=True)
    @json_option
    @click.pass_context
    def departments_move(ctx: click.Context, code: str, hall_id: str, as_json: bool) -> None:
        """Move a department to another hall (its windows are moved one by one: `windows move`)."""
        state = _state(ctx, as_json)
        d = run_db(state, lambda store: org.update_department(store, state.cfg.hall, code, actor(),
                                                              hall_id=hall_id))
        _done(state, asdict(d), "department %s now in hall %s" % (d.dept_code, d.hall_id))

    @departments.command("retire")
    @click.argument("code")
    @json_option
    @click.pass_context
    def departments_retire(ctx: click.Context, code: str, as_json: bool) -> None:
        """Retire a department (kept for past bulletins; refused while it has windows)."""
        state = _state(ctx, as_json)
        d = run_db(state, lambda store: org.retire_department(store, code, actor()))
        _done(state, asdict(d), "department %s retired" % d.dept_code)

    # ---- windows, clerks, devices: the verbs beside gateway/cli.py's add/list -------------------

    windows: click.Group = cli.commands["windows"]  # type: ignore[assignment]
    staff: click.Group = cli.commands["staff"]      # type: ignore[assignment]
    devices: click.Group = cli.commands["devices"]  # type: ignore[assignment]

    @windows.command("rename")
    @click.argument("window")
    @click.argument("name")
    @json_option
    @click.pass_context
    def windows_rename(ctx: click.Context, window: str, name: str, as_json: bool) -> None:
        state = _state(ctx, as_json)
        w = run_db(state, lambda store: org.rename_window(store, window, name, actor()))
        _done(state, asdict(w), "window %s renamed %s" % (w.window_id, w.name))

    @windows.command("move")
    @click.argument("window")
    @click.option("--hall", "hall_id", help="the hall it is now in")
    @click.option("--dept", "dept_code", help="the department it now serves (\"\" for none)")
    @json_option
    @click.pass_context
    def windows_move(ctx: click.Context, window: str, hall_id: str | None, dept_code: str | None,
                     as_json: bool) -> None:
        """Move a window to another hall and/or department from now on (earlier presses stay
        where they were)."""
        state = _state(ctx, as_json)
        if hall_id is None and dept_code is None:
            raise CliError("windows move: give --hall and/or --dept", 2)
        kw: dict[str, Any] = {}
        if hall_id is not None:
            kw["hall_id"] = hall_id
        if dept_code is not None:
            kw["dept_code"] = dept_code
        w = run_db(state, lambda store: org.move_window(store, state.cfg.hall, window, actor(), **kw))
        _done(state, asdict(w), "window %s now in hall %s, department %s"
              % (w.window_id, w.hall_id or state.cfg.hall.id, w.dept_code or "-"))

    @windows.command("retire")
    @click.argument("window")
    @json_option
    @click.pass_context
    def windows_retire(ctx: click.Context, window: str, as_json: bool) -> None:
        """Retire a window (kept for past bulletins; refused while a device is bound to it)."""
        state = _state(ctx, as_json)
        w = run_db(state, lambda store: org.retire_window(store, window, actor()))
        _done(state, asdict(w), "window %s retired" % w.window_id)

    @windows.command("history")
    @click.argument("window")
    @json_option
    @click.pass_context
    def windows_history(ctx: click.Context, window: str, as_json: bool) -> None:
        """Where the window has been (hall, department), oldest first."""
        state = _state(ctx, as_json)
        rows = run_db(state, lambda store: org.window_history(store, window))
        emit(state, [asdict(p) for p in rows], ["window", "hall", "department", "from", "to"],
             [(p.window_id, p.hall_id or state.cfg.hall.id, p.dept_code or "-",
               local_time(state.cfg, p.valid_from_ms) if p.valid_from_ms else "(always)",
               local_time(state.cfg, p.valid_to_ms) if p.valid_to_ms is not None else "now") for p in rows])

    @staff.command("rename")
    @click.argument("account")
    @click.argument("name")
    @json_option
    @click.pass_context
    def staff_rename(ctx: click.Context, account: str, name: str, as_json: bool) -> None:
        state = _state(ctx, as_json)
        s = run_db(state, lambda store: org.update_staff(store, account, actor(), display_name=name))
        _done(state, asdict(s), "staff %s renamed %s" % (s.account, s.display_name))

    @staff.command("move")
    @click.argument("account")
    @click.option("--dept", "dept_code", required=True, help="the clerk's department (\"\" for none)")
    @json_option
    @click.pass_context
    def staff_move(ctx: click.Context, account: str, dept_code: str, as_json: bool) -> None:
        """Move a clerk to another department (their past ratings stay where they were earned)."""
        state = _state(ctx, as_json)
        s = run_db(state, lambda store: org.update_staff(store, account, actor(), dept_code=dept_code))
        _done(state, asdict(s), "staff %s now in department %s" % (s.account, s.dept_code or "-"))

    @staff.command("retire")
    @click.argument("account")
    @json_option
    @click.pass_context
    def staff_retire(ctx: click.Context, account: str, as_json: bool) -> None:
        """Retire a clerk account (kept for past bulletins; refused while bound to a device)."""
        state = _state(ctx, as_json)
        s = run_db(state, lambda store: org.retire_staff(store, account, actor()))
        _done(state, asdict(s), "staff %s retired" % s.account)

    @devices.command("move")
    @click.argument("device")
    @click.option("--hall", "hall_id", required=True)
    @json_option
    @click.pass_context
    def devices_move(ctx: click.Context, device: str, hall_id: str, as_json: bool) -> None:
        """Put a device in a hall (where its presses without a binding are counted)."""
        state = _state(ctx, as_json)

        async def body(store: Store) -> str:
            return await org.move_device(store, state.cfg.hall, device, hall_id, actor())
        h = run_db(state, body)
        _done(state, {"device_id": device, "hall_id": h}, "device %s now in hall %s" % (device, h))
