"""How many evaluators do the simulator and the gateway sustain on this machine?

Steps N up (100, 250, 500, 1000, 1500, 2000, ...) and runs a short hall at each step: N
virtual devices on the real firmware, the real mosquitto and gateway process, citizens at
--speed (default 10 simulated seconds per second, one case per window every 90 simulated
seconds: ~N/9 presses a second, about 30x a real hall's rate). A step passes when every press
was acked, the end-to-end check is clean and the p99 press-to-ack latency (press handled by
the firmware -> the gateway's ack applied to the device's journal) is <= --p99-ms. The total
time is bounded by --budget-s: a step that would not fit is not started.

    .venv/bin/python bench/scale.py [--budget-s 300] [--step-s 20] [--max-n 4000]
    .venv/bin/python bench/scale.py --runtime micropython [--steps 50,100,200,300]

--runtime micropython: each device a real process of the 32-bit unix MicroPython (the firmware
frozen in; --build mpy for the .mpy set), each running the firmware's own 10 ms loop.

Prints one line per step and the largest N that passed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time

from simulator.citizens import CitizenProfile
from simulator.hall import Hall, HallOptions, percentile
from simulator.report import Console

STEPS = (100, 250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000)


async def one_step(n: int, step_s: float, speed: float, seed: int, runtime: str = "python",
                   build: str = "frozen") -> dict[str, object]:
    out = io.StringIO()
    opts = HallOptions(devices=n, minutes=step_s * speed / 60.0, speed=speed, seed=seed,
                       profile=CitizenProfile(), push=False, boot_spread_s=min(10.0, n / 200.0),
                       drain_timeout_s=30.0, gateway_log_level="WARNING", runtime=runtime, mp_build=build)
    hall = Hall(opts, Console(out=out, live=False))
    t0 = time.monotonic()
    cpu0 = os.times()
    try:
        res = await hall.run()
    except Exception as e:  # noqa: BLE001 - a step that cannot run is a failed step, not a crash
        return {"n": n, "ok": False, "error": "%s: %s" % (type(e).__name__, e),
                "wall_s": time.monotonic() - t0}
    cpu1 = os.times()
    lat = res.latencies
    unacked = len(res.ledger.presses) - len(lat)
    return {
        "n": n, "presses": len(res.ledger.presses), "acked": len(lat), "unacked": unacked,
        "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99),
        "max_ms": percentile(lat, 1.0), "check_ok": res.ok, "wall_s": time.monotonic() - t0,
        "sim_cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "ok": res.ok and unacked == 0, "error": "" if res.ok else "end-to-end check failed",
    }


def fmt(r: dict[str, object]) -> str:
    if "presses" not in r:
        return "N=%5d  FAILED to run: %s (%.0f s)" % (r["n"], r["error"], r["wall_s"])
    return ("N=%(n)5d  presses %(presses)6d  acked %(acked)6d  p50 %(p50_ms)6.0f ms  p99 %(p99_ms)6.0f ms  "
            "max %(max_ms)6.0f ms  simulator CPU %(sim_cpu_s)5.1f s  wall %(wall_s)4.0f s  check %(check_ok)s"
            % r)


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-s", type=float, default=300.0, help="total time bound")
    ap.add_argument("--step-s", type=float, default=20.0, help="real seconds of citizens per step")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--p99-ms", type=float, default=1000.0)
    ap.add_argument("--max-n", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runtime", choices=["python", "micropython"], default="python")
    ap.add_argument("--build", choices=["frozen", "mpy"], default="frozen")
    ap.add_argument("--steps", help="comma-separated device counts (default: %s)" % ",".join(map(str, STEPS)))
    args = ap.parse_args(argv)
    steps = tuple(int(x) for x in args.steps.split(",")) if args.steps else STEPS
    t0 = time.monotonic()
    best = 0
    last_wall = 0.0
    print("bench/scale.py: runtime %s, %d CPUs, steps %s, p99 press-to-ack target %.0f ms, budget %.0f s"
          % (args.runtime, os.cpu_count() or 0, ",".join(str(s) for s in steps if s <= args.max_n),
             args.p99_ms,
             args.budget_s), flush=True)
    prev_n = 0
    for n in steps:
        if n > args.max_n:
            break
        spent = time.monotonic() - t0
        # Setup, boot and drain grow with N: estimate from the previous step, scaled.
        estimate = last_wall * n / prev_n if prev_n else args.step_s + 15
        if spent + estimate > args.budget_s:
            print("N=%5d  not started: would exceed the %.0f s budget (estimate %.0f s)"
                  % (n, args.budget_s, estimate), flush=True)
            break
        r = await one_step(n, args.step_s, args.speed, args.seed, args.runtime, args.build)
        print(fmt(r), flush=True)
        passed = bool(r["ok"]) and r.get("p99_ms") is not None and float(r["p99_ms"]) <= args.p99_ms  # type: ignore[arg-type]
        if not passed:
            break
        best = n
        prev_n = n
        last_wall = float(r["wall_s"])  # type: ignore[arg-type]
    print("largest device count sustained with p99 press-to-ack <= %.0f ms: %s (total %.0f s)"
          % (args.p99_ms, best if best else "none", time.monotonic() - t0), flush=True)
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
