"""`hcp-sim`: simulate a whole hall on this machine (see docs/cli-hcp-sim.md).

    hcp-sim hall --devices 50 --minutes 10 --speed 10 --fault broker-restart@20s
    hcp-sim demo                 the README's demo: 12 windows, 3 departments, two faults
    hcp-sim serial-device        a virtual ESP32 on a pty (simulator/serial_device.py)

Exit codes: 0 the end-to-end check passed, 1 it found lost / doubled / wrong ratings,
2 bad options or a part that could not start (the message says which).
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

import click

from simulator.citizens import CitizenConfigError, CitizenProfile, parse_grade_weights
from simulator.faults import Fault, FaultSpecError, load_scenario, parse_spec, random_faults
from simulator.hall import Hall, HallError, HallOptions, RunResult
from simulator.report import Console, day_report_lines, reconciliation_lines


@click.group()
def main() -> None:
    """Simulated 好差评 hall: virtual evaluators running the real firmware, citizens, faults."""


def _faults(specs: tuple[str, ...], scenario: str | None, n_random: int, run_s: float,
            seed: int) -> list[Fault]:
    faults = [parse_spec(s) for s in specs]
    if scenario:
        faults += load_scenario(scenario)
    if n_random:
        faults += random_faults(n_random, run_s, random.Random(seed))
    return sorted(faults, key=lambda f: f.at_s)


def print_result(console: Console, res: RunResult) -> None:
    console.phase("The day's report (from the gateway's store): per window and clerk")
    console.block(day_report_lines(res.report_rows))
    console.phase("Reconciliation: every accepted press in the store once, every uploadable record "
                  "at the platform once")
    console.block(reconciliation_lines(res.reconciliation))
    rec = res.reconciliation
    presses = len(res.ledger.presses)
    if rec.ok:
        console.phase("Result: all %d presses the devices took are in the gateway's store exactly once, "
                      "credited to the right clerk and case; every uploadable record is at the platform once"
                      % presses)
    else:
        console.phase("Result: MISMATCH: %d lost, %d doubled, %d wrong (see the ! lines above)"
                      % (rec.lost, rec.doubled, sum(r.wrong for r in rec.rows)))
    p50 = _pct(res.latencies, 0.50)
    p99 = _pct(res.latencies, 0.99)
    console.phase("Figures: %d records acked, press-to-ack p50 %s, p99 %s; run took %.0f s" % (
        len(res.latencies), p50, p99, res.wall_s))


def _pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    s = sorted(values)
    return "%.0f ms" % (1000 * s[min(len(s) - 1, int(q * len(s)))])


def run_hall(opts: HallOptions, quiet: bool = False) -> int:
    console = Console(quiet=quiet)
    hall = Hall(opts, console)

    results: list[RunResult] = []

    async def run_then_console() -> RunResult:
        res = await hall.run(close=False)
        results.append(res)
        try:
            print_result(console, res)
            await hall.offer_console()     # until Ctrl-C
        finally:
            await hall.close()
        return res

    try:
        if opts.console:
            asyncio.run(run_then_console())
            return 0
        res = asyncio.run(hall.run())
    except KeyboardInterrupt:
        if opts.console and results:
            console.phase("stopped: the console, the gateway, the devices and the broker are down")
            return 0 if results[0].ok else 1
        console.error("interrupted; everything the run started has been stopped")
        return 130
    except HallError as e:
        console.error(str(e))
        return 2
    except Exception as e:  # a part that could not start (broker, gateway): one clear line
        console.error("%s: %s" % (type(e).__name__, e))
        return 2
    print_result(console, res)
    if opts.keep or opts.workdir:
        console.note("work directory kept: %s" % res.workdir)
    return 0 if res.ok else 1


def _options(devices: int, departments: int, minutes: float, speed: float, seed: int, fault: tuple[str, ...],
             scenario: str | None, random_faults_n: int, grades_text: str | None, p_no_press: float,
             p_double: float, p_walkup: float, service_s: float, countdown: int, workdir: str | None,
             keep: bool, no_push: bool, fsync: bool, console: bool = False) -> HallOptions:
    if devices < 1:
        raise click.BadParameter("must be >= 1", param_hint="--devices")
    if speed <= 0 or minutes <= 0:
        raise click.BadParameter("--speed and --minutes must be > 0")
    try:
        weights: dict[str, float] | None = parse_grade_weights(grades_text) if grades_text else None
        profile = CitizenProfile(p_no_press=p_no_press, p_double=p_double, p_walkup=p_walkup,
                                 service_s=service_s, **({"grade_weights": weights} if weights else {}))
        profile.validate()
        faults = _faults(fault, scenario, random_faults_n, minutes * 60 / speed, seed)
    except (CitizenConfigError, FaultSpecError) as e:
        raise click.UsageError(str(e)) from None
    return HallOptions(devices=devices, departments=departments, minutes=minutes, speed=speed, seed=seed,
                       profile=profile, faults=faults, workdir=Path(workdir) if workdir else None,
                       keep=keep, countdown_s=countdown, push=not no_push, durable=fsync, console=console)


_common: list[Any] = [
    click.option("--departments", default=3, show_default=True, help="Departments the windows belong to."),
    click.option("--speed", default=10.0, show_default=True,
                 help="Simulated seconds per real second of the citizen model."),
    click.option("--seed", default=1, show_default=True, help="Seed of every random choice (replayable)."),
    click.option("--fault", multiple=True, metavar="SPEC",
                 help="KIND@TIME[+DURATION][:TARGET], e.g. broker-restart@30s, wifi-loss@10s+15s:all, "
                      "power-cut@20s:3, gateway-kill@40s+3s, clock-unsynced@5s:0, platform-outage@10s+20s. "
                      "TIME is real seconds after the hall opens. Repeatable."),
    click.option("--scenario", type=click.Path(exists=True, dir_okay=False), help="TOML file of [[fault]]s."),
    click.option("--random-faults", "random_faults_n", default=0, show_default=True,
                 help="Add this many random faults."),
    click.option("--grades", "grades_text", metavar="vs=85,s=10,bs=3,d=1.5,vd=0.5",
                 help="Grade distribution of citizens' presses (weights)."),
    click.option("--p-no-press", default=0.05, show_default=True, help="Share of citizens who never press."),
    click.option("--p-double", default=0.03, show_default=True, help="Share who press twice."),
    click.option("--p-walkup", default=0.03, show_default=True, help="Walk-up presses per case."),
    click.option("--service-s", default=90.0, show_default=True, help="Mean simulated seconds per case."),
    click.option("--countdown", default=20, show_default=True, help="Invitation countdown (real s)."),
    click.option("--workdir", type=click.Path(file_okay=False), help="Work directory (kept)."),
    click.option("--keep", is_flag=True, help="Keep the temporary work directory (logs, store, journals)."),
    click.option("--no-push", is_flag=True, help="Skip the daily push and the platform check."),
    click.option("--fsync", is_flag=True, help="fsync every journal write (slow)."),
    click.option("--quiet", is_flag=True, help="Phases and results only, no progress lines."),
    click.option("--console", is_flag=True,
                 help="Serve the web console and keep the hall running after the run, with a printed "
                      "address and one-time login, until Ctrl-C."),
]


def common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return f


@main.command()
@click.option("--devices", default=12, show_default=True, help="Evaluators (one per window).")
@click.option("--minutes", default=5.0, show_default=True, help="Simulated minutes the hall is open.")
@common
def hall(quiet: bool, **kw: Any) -> None:
    """Run N virtual devices against the real broker, gateway and platform stand-in, then check."""
    sys.exit(run_hall(_options(**kw), quiet=quiet))


@main.command()
@click.option("--devices", default=12, show_default=True)
@click.option("--minutes", default=15.0, show_default=True)
@common
def demo(quiet: bool, fault: tuple[str, ...], **kw: Any) -> None:
    """The README's demo: a hall of 3 departments and 12 windows, one broker restart and one
    device power cut, the daily push, the 差评 work orders, the day's report and the reconciliation."""
    if not fault:
        fault = ("broker-restart@40s", "power-cut@70s+3s:4")
    opts = _options(fault=fault, **kw)
    opts.complaints = True      # and the 差评 work orders the day opened
    sys.exit(run_hall(opts, quiet=quiet))


try:
    from simulator.serial_device import serial_device as _serial_device
    main.add_command(_serial_device, "serial-device")
except ImportError as _e:  # the flash engineer's module is optional for the hall simulation
    _missing = str(_e)

    @main.command("serial-device")
    def _serial_device_missing() -> None:
        """(unavailable: simulator/serial_device.py could not be imported)"""
        raise click.ClickException("serial-device is unavailable: " + _missing)


if __name__ == "__main__":
    main()
