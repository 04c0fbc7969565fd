"""`hcp-gateway tls init`: the hall CA and a server certificate (gateway/tls.py), and the
lines that turn TLS on in mosquitto.conf, gateway.toml and the devices (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import click

from gateway import tls


@click.group("tls")
def tls_group() -> None:
    """TLS for the hall LAN: the hall CA and the server certificate."""


@tls_group.command("init")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("tls"),
              show_default=True, help="where ca.pem, ca.key, server.pem and server.key go")
@click.option("--host", "hosts", multiple=True, required=True,
              help="a host name or IP address devices and clients use for this server (repeat)")
@click.option("--days", type=click.IntRange(1, tls.CA_DAYS), default=tls.DEFAULT_DAYS, show_default=True,
              help="validity of the server certificate")
@click.option("--force", is_flag=True, help="issue a new server certificate over an existing one")
def tls_init(directory: Path, hosts: tuple[str, ...], days: int, force: bool) -> None:
    """Make the hall CA (kept if it exists) and a server certificate for --host names/IPs
    (localhost and 127.0.0.1 are always included)."""
    try:
        made = tls.init(directory, list(hosts), days, force=force)
    except tls.TlsError as e:
        raise click.ClickException(str(e)) from None
    d = directory.resolve()
    click.echo("%s CA %s (key %s, 0600)"
               % ("kept" if made.reused_ca else "created", made.ca_cert, made.ca_key))
    click.echo("server certificate %s for %s (key %s, 0600)" % (made.server_cert, ", ".join(made.names),
                                                                 made.server_key))
    click.echo("""
mosquitto.conf (a TLS listener for the hall LAN; keep plain 1883 on 127.0.0.1 only, or drop it):
    listener 8883 0.0.0.0
    certfile %(d)s/server.pem
    keyfile %(d)s/server.key

gateway.toml:
    [mqtt]
    port = 8883
    tls_ca = "%(d)s/ca.pem"
    [http]
    tls_cert = "%(d)s/server.pem"
    tls_key = "%(d)s/server.key"

devices: flash.py provision ... --mqtt-port 8883 --ca %(d)s/ca.pem""" % {"d": d})


def register(cli: click.Group) -> None:
    cli.add_command(tls_group)
