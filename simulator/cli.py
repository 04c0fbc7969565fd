"""`hcp-sim`: simulate a whole hall on this machine (see docs/cli-hcp-sim.md).

    hcp-sim hall --devices 50 --minutes 10 --speed 10 --fault broker-restart@20s
    hcp-sim hall --runtime micropython --devices 200     each device a real MicroPython process
    hcp-sim demo                 the README's demo: 12 windows, 3 departments, two faults
    hcp-sim device --dir DIR     one evaluator from a provisioned flash directory, driven on stdin
    hcp-sim platform             the provincial platform stand-in (simulator/platform.py)
    hcp-sim serial-device        a virtual ESP32 on a pty (simulator/serial_device.py)
    hcp-sim history --scale 0.01 a district's quarter through the real ingest path, then its bulletin

Conventions (the same for hcp-gateway and flash.py): --json on every command; exit 0 fine,
1 a finding or a failure (lost / doubled / wrong ratings, a part that could not start), 2 usage;
-h and --version everywhere; every time printed carries its zone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import sys
from pathlib import Path
from typing import Any

import click

from simulator.citizens import CitizenConfigError, CitizenProfile, parse_grade_weights
from simulator.faults import Fault, FaultSpecError, load_scenario, parse_spec, random_faults
from simulator.hall import Hall, HallError, HallOptions, RunResult
from simulator.report import Console, day_report_lines, reconciliation_lines


def _version() -> str:
    from flashtool import fwid
    try:
        from importlib.metadata import version
        pkg = version("haochaping")
    except Exception:  # noqa: BLE001 - run from a checkout without the package installed
        pkg = "checkout"
    return "%s (firmware %s)" % (pkg, fwid.release(Path(__file__).resolve().parent.parent))


def now_text() -> str:
    """The local time with its zone, as every time this tool prints."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


def fail(message: str, as_json: bool, code: str = "failed", exit_code: int = 1) -> None:
    """One line on stderr (and a JSON error object on stdout with --json), then exit."""
    if as_json:
        emit_json({"error": code, "message": message})
    click.echo("hcp-sim: " + message, err=True)
    sys.exit(exit_code)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Machine-readable output: one JSON object (JSON lines for streams).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="hcp-sim", message="%(prog)s %(version)s")
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


def result_json(res: RunResult) -> dict[str, Any]:
    rec = res.reconciliation
    p50 = _pct(res.latencies, 0.50)
    p99 = _pct(res.latencies, 0.99)
    return {
        "ok": res.ok, "finished_at": now_text(), "lost": rec.lost, "doubled": rec.doubled,
        "wrong": sum(r.wrong for r in rec.rows), "presses": len(res.ledger.presses),
        "acked": len(res.latencies), "p50_press_to_ack": p50, "p99_press_to_ack": p99,
        "wall_s": round(res.wall_s, 1), "counters": res.counters,
        "checks": [{"check": r.name, "expected": r.expected, "found": r.found, "lost": r.lost,
                    "doubled": r.doubled, "wrong": r.wrong, "ok": r.ok} for r in rec.rows],
        "problems": rec.problems, "problems_hidden": rec.problems_hidden, "notes": rec.notes,
        "workdir": str(res.workdir), "report": res.report_rows,
    }


def run_hall(opts: HallOptions, quiet: bool = False, as_json: bool = False) -> int:
    # With --json the story of the run goes to stderr and stdout holds the one JSON result.
    console = Console(out=sys.stderr, quiet=quiet) if as_json else Console(quiet=quiet)
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
        fail(str(e), as_json)
    except Exception as e:  # a part that could not start (broker, gateway): one clear line
        fail("%s: %s" % (type(e).__name__, e), as_json)
    print_result(console, res)
    if opts.keep or opts.workdir:
        console.note("work directory kept: %s" % res.workdir)
    if as_json:
        emit_json(result_json(res))
    return 0 if res.ok else 1


def _options(devices: int, departments: int, minutes: float, speed: float, seed: int, fault: tuple[str, ...],
             scenario: str | None, random_faults_n: int, grades_text: str | None, p_no_press: float,
             p_double: float, p_walkup: float, service_s: float, countdown: int, workdir: str | None,
             keep: bool, no_push: bool, fsync: bool, runtime: str, build: str,
             console: bool = False) -> HallOptions:
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
                       keep=keep, countdown_s=countdown, push=not no_push, durable=fsync, runtime=runtime,
                       mp_build=build, console=console)


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
    click.option("--runtime", type=click.Choice(["python", "micropython"]), default="python",
                 show_default=True,
                 help="python: the firmware in this process (1,000 devices fit); micropython: each device "
                      "a real process of the 32-bit unix MicroPython with an ESP32's heap."),
    click.option("--build", type=click.Choice(["frozen", "mpy"]), default="frozen", show_default=True,
                 help="With --runtime micropython: the firmware frozen into the interpreter, or the .mpy "
                      "set flash.py uploads, on each device's flash."),
    click.option("--console", is_flag=True,
                 help="Serve the web console and keep the hall running after the run, with a printed "
                      "address and one-time login, until Ctrl-C."),
    json_option,
]


def common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return f


@main.command()
@click.option("--devices", default=12, show_default=True, help="Evaluators (one per window).")
@click.option("--minutes", default=5.0, show_default=True, help="Simulated minutes the hall is open.")
@common
def hall(quiet: bool, as_json: bool, **kw: Any) -> None:
    """Run N virtual devices against the real broker, gateway and platform stand-in, then check."""
    sys.exit(run_hall(_options(**kw), quiet=quiet, as_json=as_json))


@main.command()
@click.option("--devices", default=12, show_default=True)
@click.option("--minutes", default=15.0, show_default=True)
@common
def demo(quiet: bool, as_json: bool, fault: tuple[str, ...], **kw: Any) -> None:
    """The README's demo: a hall of 3 departments and 12 windows, one broker restart and one
    device power cut, the daily push, the 差评 work orders, the day's report and the reconciliation."""
    if not fault:
        fault = ("broker-restart@40s", "power-cut@70s+3s:4")
    opts = _options(fault=fault, **kw)
    opts.complaints = True      # and the 差评 work orders the day opened
    sys.exit(run_hall(opts, quiet=quiet, as_json=as_json))


@main.command()
@click.option("--dir", "flash_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="The device's flash directory: config.json as flash.py provisions it, data/ is made.")
@click.option("--runtime", type=click.Choice(["python", "micropython"]), default="micropython",
              show_default=True,
              help="A real MicroPython process (unix port), or the firmware in this process.")
@click.option("--build", type=click.Choice(["frozen", "mpy"]), default="frozen", show_default=True,
              help="micropython runtime: firmware frozen in, or the .mpy set copied onto the flash "
                   "directory.")
@json_option
def device(flash_dir: str, runtime: str, build: str, as_json: bool) -> None:
    """One evaluator against the broker its config.json names, driven on standard input.

    Commands, one a line: `press N` (button 0-4, left to right), `wifi down`, `wifi up`,
    `heap` (micropython: live heap after a collection), `quit`. Every change of the device's
    state is printed with the local time and its zone (JSON lines with --json)."""
    from simulator.device_cli import run_device
    try:
        code = asyncio.run(run_device(Path(flash_dir), runtime, build, as_json, now_text, emit_json))
    except KeyboardInterrupt:
        code = 130
    except click.ClickException as e:
        fail(e.format_message(), as_json)
    except Exception as e:  # noqa: BLE001 - a device that cannot start: one clear line
        fail("%s: %s" % (type(e).__name__, e), as_json)
    sys.exit(code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8480, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--adapter", type=click.Choice(["default", "gbt39046"]), default="default", show_default=True,
              help="The province's field mapping the platform checks records against.")
@click.option("--config", type=click.Path(dir_okay=False, exists=True),
              help="gateway.toml whose [uplink] section defines the schema (instead of --adapter).")
@click.option("--db", default=":memory:", show_default=True,
              help="SQLite file for what the platform accepted.")
@click.option("--app-key", default="hall-1", show_default=True,
              help="The appKey the gateway authenticates with.")
@click.option("--app-secret-file", type=click.Path(dir_okay=False, exists=True),
              help="File holding the appSecret (or env HCP_PLATFORM_APP_SECRET; default: change-me).")
@json_option
def platform(host: str, port: int, adapter: str, config: str | None, db: str, app_key: str,
             app_secret_file: str | None, as_json: bool) -> None:
    """The provincial 好差评 platform stand-in, until Ctrl-C.

    Issues tokens for the appKey/appSecret, checks each uplink batch and record against the
    adapter's schema, keeps every accepted record once, answers per record; an admin API reads what
    it holds and injects faults (docs/platform-standin.md)."""
    import os

    from simulator.platform import serve
    secret = os.environ.get("HCP_PLATFORM_APP_SECRET", "change-me")
    if app_secret_file:
        secret = Path(app_secret_file).read_text(encoding="utf-8").strip()

    def ready(url: str, adapter_name: str) -> None:
        if as_json:
            emit_json({"ready": True, "url": url, "adapter": adapter_name, "db": db, "at": now_text()})
        else:
            click.echo("platform stand-in ready on %s adapter=%s db=%s (%s)"
                       % (url, adapter_name, db, now_text()))

    try:
        code = asyncio.run(serve(host, port, adapter, config, db, app_key, secret, ready))
    except KeyboardInterrupt:
        code = 0
    except Exception as e:  # noqa: BLE001 - cannot listen, bad config: one clear line
        fail("platform stand-in: %s" % e, as_json)
    sys.exit(code)



@main.command()
@click.option("--quarter", default="2026-Q2", show_default=True,
              help="The quarter to make (it must have ended).")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0.0001, 10.0),
              help="Volume as a share of the seed's (1.0: about 90,000 ratings, 3,300 from the towns).")
@click.option("--seed", default=1, show_default=True)
@click.option("--push-minutes", default=3, show_default=True, type=click.IntRange(1, 1440),
              help="Realtime push period during opening hours (simulated minutes).")
@click.option("--hb-minutes", default=60, show_default=True, type=click.IntRange(1, 600),
              help="Evaluator heartbeat period (simulated minutes).")
@click.option("--no-outage", is_flag=True, help="No platform outage day.")
@click.option("--store-url", help="postgresql://... (default: SQLite in the work directory)")
@click.option("--workdir", type=click.Path(file_okay=False), help="Work directory (kept).")
@click.option("--keep", is_flag=True, help="Keep the temporary work directory.")
@click.option("--quiet", is_flag=True, help="Tables and results only.")
def history(quarter: str, scale: float, seed: int, push_minutes: int, hb_minutes: int, no_outage: bool,
            store_url: str | None, workdir: str | None, keep: bool, quiet: bool) -> None:
    """A quarter of a Zhangdian-like district through the gateway's real ingest path, uplink and
    API, then the seed's two attachment tables (by department, by town) and the checks."""
    from simulator.history import History, HistoryError, HistoryOptions, print_tables, summary_lines
    opts = HistoryOptions(quarter=quarter, scale=scale, seed=seed, push_minutes=push_minutes,
                          hb_minutes=hb_minutes, outage=not no_outage, store_url=store_url,
                          workdir=Path(workdir) if workdir else None, keep=keep)
    say = (lambda _t: None) if quiet else (lambda t: click.echo(t, err=True))
    try:
        res = asyncio.run(History(opts, say).run())
    except HistoryError as e:
        click.echo("hcp-sim: error: %s" % e, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("hcp-sim: interrupted", err=True)
        sys.exit(130)
    print_tables(res, click.echo)
    for line in summary_lines(res):
        click.echo(line)
    for p in res.problems:
        click.echo("MISMATCH: " + p)
    click.echo("Result: %s" % ("the bulletin matches what the district did" if res.ok else "MISMATCH"))
    sys.exit(0 if res.ok else 1)


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
