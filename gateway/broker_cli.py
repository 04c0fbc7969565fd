"""`hcp-gateway broker init FILE`: the dynamic security plugin's file for this gateway.

Writes (or updates) mosquitto's dynsec file with this gateway instance's two accounts, from
its config: the MQTT account ([mqtt] username / password, tied to [mqtt] client_id) and the
control account ([broker] control_username / control_password, tied to control_client_id).
Run it once per gateway instance against the same file (each keeps its own accounts and
client ids), with the broker stopped: mosquitto reads the file at start and rewrites it on
every change made through the control API. Device accounts are then made by the gateway when
devices are registered. Passwords come from the config file, never from the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway import broker_dynsec
from gateway.config import ConfigError, load_config


@click.group("broker")
def broker_group() -> None:
    """The broker's accounts (mosquitto dynamic security plugin)."""


@broker_group.command("init")
@click.argument("dynsec_file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def broker_init(ctx: click.Context, dynsec_file: Path) -> None:
    """Add this gateway's MQTT and control accounts to DYNSEC_FILE (created 0600 if missing)."""
    config_path = ctx.find_root().obj.config_path
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        raise click.UsageError("config: %s" % e) from None
    m, b = cfg.mqtt, cfg.broker
    if not b.dynsec:
        raise click.ClickException("[broker] dynsec = true is not set in %s" % config_path)
    if not m.password:
        raise click.ClickException("[mqtt] password is empty in %s" % config_path)
    fresh = broker_dynsec.bootstrap([broker_dynsec.Account(b.control_username, b.control_password,
                                                           b.control_client_id)],
                                    [broker_dynsec.Account(m.username, m.password, m.client_id)])
    try:
        current = json.loads(dynsec_file.read_text())
    except FileNotFoundError:
        current = None
    except (OSError, ValueError) as e:
        raise click.ClickException("%s is not a readable dynsec file: %s" % (dynsec_file, e)) from None
    if isinstance(current, dict):
        names = {c["username"] for c in fresh["clients"]}
        taken = {c.get("clientid"): c.get("username") for c in current.get("clients", [])}
        for c in fresh["clients"]:
            other = taken.get(c["clientid"])
            if other is not None and other not in names:
                raise click.ClickException("client id %s is already tied to account %s in %s"
                                           % (c["clientid"], other, dynsec_file))
        roles = {r["rolename"] for r in fresh["roles"]}
        current["clients"] = [c for c in current.get("clients", []) if c.get("username") not in names] \
            + fresh["clients"]
        current["roles"] = [r for r in current.get("roles", []) if r.get("rolename") not in roles] \
            + fresh["roles"]
        current["defaultACLAccess"] = fresh["defaultACLAccess"]
        fresh = current
    broker_dynsec.write_file(dynsec_file, fresh)
    click.echo("%s: accounts %s (client id %s) and %s (client id %s)"
               % (dynsec_file, m.username, m.client_id, b.control_username, b.control_client_id))
    click.echo("mosquitto.conf:\n    allow_anonymous false\n    "
               + "\n    ".join(broker_dynsec.mosquitto_lines(dynsec_file.resolve())))


def register(cli: click.Group) -> None:
    cli.add_command(broker_group)
