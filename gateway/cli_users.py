"""`hcp-gateway users`: web console accounts (gateway/accounts.py is the service).

    hcp-gateway users add NAME --role admin|liaison|supervisor|readonly [--name 显示名]
                              [--hall H ...] [--dept CODE ...] [--must-change]
    hcp-gateway users list
    hcp-gateway users passwd NAME [--must-change]
    hcp-gateway users disable NAME | enable NAME
    hcp-gateway users scope NAME [--role R] [--hall H ...] [--dept CODE ...] [--all-halls] [--all-depts]
The password is read from standard input (its first line), never from the command line:
`printf '%s\\n' "$PW" | hcp-gateway users add ...`; at a terminal it is asked for twice
without echo. Registered on the gateway CLI by `register(cli)`.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from typing import Any

import click

from gateway import accounts
from gateway.cli import CliError, CliState, _state, actor, emit, local_time, run_db

# gateway.cli's own --json option, declared here with its type: this module and gateway.cli
# import each other, and mypy cannot infer a decorator's type across that cycle.
json_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--json", "as_json", is_flag=True, help="machine-readable output")


def read_password(confirm: bool = True) -> str:
    """The first line of standard input, or asked twice at a terminal."""
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if confirm and getpass.getpass("again: ") != first:
            raise CliError("the two passwords differ")
        return first
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise CliError("no password on standard input (give it as the first line)", 2)
    return line.rstrip("\r\n")


@click.group("users", invoke_without_command=True)
@json_option
@click.pass_context
def users(ctx: click.Context, as_json: bool) -> None:
    """Web console accounts: list them; add, passwd, disable, enable, scope."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(users_list, as_json=as_json)


@users.command("list")
@json_option
@click.pass_context
def users_list(ctx: click.Context, as_json: bool) -> None:
    """Accounts, their role, scope and state (never a password hash)."""
    state: CliState = _state(ctx, as_json)
    rows = run_db(state, accounts.list_accounts)
    cfg = state.cfg
    emit(state, [a.public() for a in rows],
         ["account", "name", "role", "halls", "depts", "state", "last login"],
         [(a.name, a.display_name, a.role, ",".join(a.halls) or "(all)", ",".join(a.depts) or "(all)",
           "disabled" if a.disabled else ("must change password" if a.must_change else "active"),
           local_time(cfg, a.last_login_ms)) for a in rows], "(no console accounts)")


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(list(accounts.ROLES)),
              help="what the account may do")
@click.option("--name", "display_name", default="", help="display name (e.g. 张三)")
@click.option("--hall", "halls", multiple=True, help="limit to this hall (repeat for several)")
@click.option("--dept", "depts", multiple=True, help="limit to this department code (repeat for several)")
@click.option("--must-change", is_flag=True, help="the first login must set a new password")
@click.pass_context
def users_add(ctx: click.Context, name: str, role: str, display_name: str, halls: tuple[str, ...],
              depts: tuple[str, ...], must_change: bool) -> None:
    """Create an account; the password is the first line of standard input."""
    state: CliState = _state(ctx, False)
    password = read_password()
    a = run_db(state, lambda store: accounts.add_account(
        store, name, password, role, actor(), display_name=display_name, halls=halls, depts=depts,
        must_change=must_change), create=True)
    click.echo("console account %s added (role %s%s)" % (
        a.name, a.role, "; scope " + ",".join(a.halls + a.depts) if a.halls or a.depts else ""))


@users.command("passwd")
@click.argument("name")
@click.option("--must-change", is_flag=True, help="the next login must set a new password")
@click.pass_context
def users_passwd(ctx: click.Context, name: str, must_change: bool) -> None:
    """Set a new password (standard input); the account's sessions end."""
    state: CliState = _state(ctx, False)
    password = read_password()
    ended = run_db(state, lambda store: accounts.set_password(store, name, password, actor(),
                                                              must_change=must_change))
    click.echo("password of %s changed; %d session(s) ended" % (name, ended))


@users.command("disable")
@click.argument("name")
@click.pass_context
def users_disable(ctx: click.Context, name: str) -> None:
    """Refuse the account's logins; its sessions end at once."""
    state: CliState = _state(ctx, False)
    ended = run_db(state, lambda store: accounts.set_disabled(store, name, True, actor()))
    click.echo("console account %s disabled; %d session(s) ended" % (name, ended))


@users.command("enable")
@click.argument("name")
@click.pass_context
def users_enable(ctx: click.Context, name: str) -> None:
    """Allow a disabled account to log in again."""
    state: CliState = _state(ctx, False)
    run_db(state, lambda store: accounts.set_disabled(store, name, False, actor()))
    click.echo("console account %s enabled" % name)


@users.command("scope")
@click.argument("name")
@click.option("--role", type=click.Choice(list(accounts.ROLES)))
@click.option("--hall", "halls", multiple=True, help="limit to this hall (repeat; replaces the list)")
@click.option("--dept", "depts", multiple=True, help="limit to this department (repeat; replaces the list)")
@click.option("--all-halls", is_flag=True, help="no hall limit")
@click.option("--all-depts", is_flag=True, help="no department limit")
@click.pass_context
def users_scope(ctx: click.Context, name: str, role: str | None, halls: tuple[str, ...],
                depts: tuple[str, ...], all_halls: bool, all_depts: bool) -> None:
    """Change an account's role or scope; its sessions end."""
    state: CliState = _state(ctx, False)
    if all_halls and halls or all_depts and depts:
        raise CliError("give --hall or --all-halls (and --dept or --all-depts), not both", 2)
    new_halls = () if all_halls else (halls or None)
    new_depts = () if all_depts else (depts or None)
    a = run_db(state, lambda store: accounts.set_profile(store, name, actor(), role=role, halls=new_halls,
                                                         depts=new_depts))
    click.echo("console account %s: role %s, halls %s, departments %s" % (
        a.name, a.role, ",".join(a.halls) or "(all)", ",".join(a.depts) or "(all)"))


def register(cli: click.Group) -> None:
    cli.add_command(users)
