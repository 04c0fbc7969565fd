#!/usr/bin/env python3
"""flash.py — the technicians' CLI: flash MicroPython, provision, verify, monitor a board.

A thin click layer over flashtool/; every failure is one line on stderr and a non-zero exit.
Commands and options: docs/cli-flash.md.  Procedure: docs/technician.md.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

# flash.py runs from a checkout too, not only from an installed package.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import click
except ImportError:  # run with the system python3, outside the project's venv
    _venv = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venv", "bin", "python")
    sys.stderr.write(
        "error: flash.py needs the project's Python packages: run it as %s flash.py ... "
        "(after `bash scripts/setup.sh`)\n" % os.path.relpath(_venv)
    )
    sys.exit(1)

from flashtool.errors import FlashError  # noqa: E402


class ClickConsole:
    @staticmethod
    def info(text: str) -> None:
        click.echo(text)

    @staticmethod
    def warn(text: str) -> None:
        click.echo("warning: " + text, err=True)

    @staticmethod
    @contextlib.contextmanager
    def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
        with click.progressbar(length=max(total, 1), label=label, file=sys.stderr) as bar:
            yield bar.update


def _fail(e: BaseException | str) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(1)


def _guard(fn: Callable[[], None]) -> None:
    """Run a command body: FlashError -> one line; an unexpected bug -> one line too."""
    try:
        fn()
    except FlashError as e:
        _fail(e)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the technician never sees a traceback
        if os.environ.get("HCP_FLASH_DEBUG"):
            raise
        _fail(f"unexpected {type(e).__name__}: {e} (set HCP_FLASH_DEBUG=1 for details)")


port_option = click.option(
    "--port", "-p", required=True, help="Serial port, e.g. /dev/ttyUSB0 (any path works)."
)
timeout_option = click.option(
    "--timeout", default=3.0, show_default=True, help="Seconds to wait for the board to answer."
)
baud_option = click.option("--baud", default=115200, show_default=True, help="REPL baud rate.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Flash, provision and verify 好差评 evaluator boards."""


@cli.command()
def ports() -> None:
    """List serial ports (pseudo-terminals are not listed; pass their path directly)."""

    def body() -> None:
        from serial.tools import list_ports

        found = sorted(list_ports.comports(), key=lambda p: p.device)
        if not found:
            click.echo("no serial ports found (is the board plugged in? pass a path with --port)")
        for p in found:
            click.echo(f"{p.device}\t{p.description}\t{p.hwid}")

    _guard(body)


@cli.command()
@port_option
@click.option("--image", required=True, type=click.Path(), help="MicroPython firmware image (.bin).")
@click.option("--chip", default="esp32", show_default=True, help="Chip the image must be built for.")
@click.option("--baud", default=460800, show_default=True, help="Flashing baud rate.")
@click.option("--offset", default="0x1000", show_default=True, help="Flash offset of the image.")
@click.option("--no-erase", is_flag=True, help="Do not erase the whole flash first.")
def firmware(port: str, image: str, chip: str, baud: int, offset: str, no_erase: bool) -> None:
    """Check a MicroPython image, then erase the flash and write it."""

    def body() -> None:
        from flashtool import esp

        summary = esp.validate_image(image, chip)
        click.echo(f"image ok: {summary}")
        esp.write_image(port, image, chip, baud, offset, erase=not no_erase)
        click.echo(f"{port}: MicroPython written; next: flash.py provision --port {port} ...")

    _guard(body)


@cli.command()
@port_option
@click.option("--hall", required=True, help="Hall id, e.g. hall-1.")
@click.option(
    "--device-id", default="auto", show_default=True, help="Device id, or auto = hcp-<board unique id>."
)
@click.option("--wifi", required=True, help="Wi-Fi SSID.")
@click.option("--wifi-password", default="", help="Wi-Fi password.")
@click.option("--broker", required=True, help="MQTT broker HOST[:PORT] (port 1883 by default).")
@click.option("--gateway-url", required=True, help="Hall gateway base URL, e.g. http://192.168.1.2:8080.")
@click.option(
    "--gateway-token",
    required=True,
    envvar="HCP_GATEWAY_TOKEN",
    help="Gateway admin token (or env HCP_GATEWAY_TOKEN).",
)
@click.option("--source", is_flag=True, help="Upload .py sources instead of precompiled .mpy.")
@click.option("--rotate-secrets", is_flag=True, help="New device secret and broker password even if present.")
@click.option(
    "--ca", "ca_file", type=click.Path(dir_okay=False),
    help="Hall CA (ca.pem of `hcp-gateway tls init`): the device uses TLS to the broker (give its TLS port "
    "in --broker); also trusted for an https --gateway-url.",
)
@click.option(
    "--label-file", type=click.Path(dir_okay=False), help="Also append the label line to this file."
)
@timeout_option
@baud_option
def provision(
    port: str,
    hall: str,
    device_id: str,
    wifi: str,
    wifi_password: str,
    broker: str,
    gateway_url: str,
    gateway_token: str,
    source: bool,
    rotate_secrets: bool,
    ca_file: str | None,
    label_file: str | None,
    timeout: float,
    baud: int,
) -> None:
    """Upload firmware and config, register with the gateway, print the label line."""

    def body() -> None:
        from flashtool.commands import ProvisionOptions, run_provision
        from flashtool.device_config import read_ca

        opts = ProvisionOptions(
            port,
            hall,
            device_id,
            wifi,
            wifi_password,
            broker,
            gateway_url,
            gateway_token,
            source,
            rotate_secrets,
            timeout,
            baud,
            ca=read_ca(ca_file) if ca_file else None,
        )
        res = run_provision(opts, ClickConsole())
        label = f"LABEL {res.device_id}  hall={hall}  fw={res.fw}"
        click.echo(label)
        if label_file:
            with open(label_file, "a", encoding="utf-8") as f:
                f.write(label + "\n")

    _guard(body)


@cli.command()
@port_option
@timeout_option
@baud_option
def verify(port: str, timeout: float, baud: int) -> None:
    """Read back hashes and config; exit 1 on any drift from what was provisioned."""

    def body() -> None:
        from flashtool.commands import run_verify

        rep = run_verify(port, timeout, baud)
        for line in rep.drift:
            click.echo(line)
        if rep.drift:
            raise FlashError(f"{rep.device_id or port}: {len(rep.drift)} differences (DRIFT)")
        click.echo(f"OK {rep.device_id} fw={rep.fw}: {rep.files} files and config as provisioned")

    _guard(body)


@cli.command()
@port_option
@baud_option
def monitor(port: str, baud: int) -> None:
    """Serial console to the board (mpremote's REPL; Ctrl-] or Ctrl-X to leave)."""

    def body() -> None:
        if "://" not in port and not os.path.exists(port):
            raise FlashError(f"{port}: no such serial port (see `flash.py ports`)")
        from mpremote.main import main as mpremote_main

        sys.argv = ["mpremote", "connect", port, "repl"]
        code = mpremote_main()
        if code:
            raise FlashError(f"{port}: console ended with code {code}")

    _guard(body)


if __name__ == "__main__":
    cli()
