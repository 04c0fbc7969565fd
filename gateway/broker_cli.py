"""`hcp-gateway broker ...`: the broker's accounts (filled in with the dynsec work)."""

from __future__ import annotations

import click


@click.group("broker")
def broker_group() -> None:
    """The broker's accounts (mosquitto dynamic security)."""


def register(cli: click.Group) -> None:
    cli.add_command(broker_group)
