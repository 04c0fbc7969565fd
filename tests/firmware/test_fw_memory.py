"""10,000 presses under the real MicroPython 1.27 on the .mpy set (bench/firmware_memory.py
prints the figures and the per-module breakdown).

Issue 3's bound is on the WHOLE image the device runs: app, journal, link (connected, every
record sent and acked over MQTT), MQTT client, protocol and a HAL: live heap <= 48 KB and no
growth with presses. The image meets neither yet (docs/firmware.md, "Memory", 2026-11-22: +60.8 KB
after boot, +69.6 KB at 10,000 presses, +3.9 KB over a second window): that assertion is an
xfail(strict=True), so the day it holds the suite says so, and a ceiling keeps it from getting
worse meanwhile. The firmware core alone keeps its 48 KB and no-growth bounds.

The growth was traced (docs/firmware.md, "The growth with presses"): the wasm port never
collects while a window of presses runs (gc.collect() there only marks a collection pending; the
heap grows instead, ~31 KB of allocation per press, ~300 MB per window), so at the window's end
every live word that looks like an address in that span (bytecode, qstr tables, raw integers in
buffers) keeps some garbage alive. The same image with the collector allowed to run every 50
presses, as a device's runs whenever its heap fills, does not grow: that control is asserted
here too. The bound itself is not netted out: it stays as issue 3 states it, inside the xfail.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from simulator.micropython import RunMicroPython

BENCH = Path(__file__).resolve().parents[2] / "bench" / "firmware_memory.py"
# Whole image with the host HAL as measured on 2026-11-22: +60.8 KB after boot, +69.6 KB after
# 10,000 presses (was +66.8 / +75.6 KB under the 80 KB ceiling before). This ceiling only catches
# regressions; the target is HEAP_BOUND (48 KB).
IMAGE_CEILING = 76 * 1024


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("firmware_memory_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def image(mpy_runtime: None) -> tuple[ModuleType, dict[str, Any]]:
    bench = _bench()
    return bench, bench.measure(10000, timeout=600)


def test_fw_heap_bounded_over_10000_presses(mpy: RunMicroPython) -> None:
    """The firmware core (no link): within 48 KB, no growth."""
    bench = _bench()
    m = bench.measure(10000, timeout=600, core=True)
    app_100, app_end, ok = bench.verdict(m)
    print("core live heap: %d B at 100 presses, %d B at 10,000; second window +%d B"
          % (app_100, app_end, m["second_window"]))
    assert app_end <= 48 * 1024, m
    assert app_end - app_100 <= bench.GROWTH_BOUND, m
    assert m["second_window"] <= bench.GROWTH_BOUND, m
    assert ok
    assert m["counts"]["rated"] == 11940 and m["journal"]["pending"] == 0


def test_fw_image_over_10000_presses(image: tuple[ModuleType, dict[str, Any]]) -> None:
    """The whole image, link running: every record sent and acked once, under the regression
    ceiling (growth is asserted in the xfail below)."""
    bench, m = image
    app_100, app_end, _ = bench.verdict(m)
    booted = int(m["booted"]) - int(m["base"])
    print("image live heap: %d B after boot, %d B at 100 presses, %d B at 10,000; second window +%d B"
          % (booted, app_100, app_end, m["second_window"]))
    assert m["counts"]["rated"] == 11940 and m["journal"]["pending"] == 0
    assert m["sent"] == m["acked"] == m["records"]
    assert max(booted, app_100, app_end) <= IMAGE_CEILING, m


def test_fw_image_no_growth_with_the_collector_running(mpy_runtime: None) -> None:
    """Control: the same image and presses, the collector running every 50 presses (as on a
    device): no growth beyond one-time warm-up, in both windows."""
    bench = _bench()
    m = bench.measure(10000, timeout=600, gc_control=True)
    base = int(m["base"])
    app_100 = int(m["at100"]) - base
    app_end = int(m["at_end"]) - base
    print("image with a running collector: %d B at 100 presses, %d B at 10,000; second window +%d B"
          % (app_100, app_end, m["second_window"]))
    assert app_end - app_100 <= bench.GROWTH_BOUND, m
    assert int(m["second_window"]) <= bench.GROWTH_BOUND, m


@pytest.mark.xfail(strict=True, reason="whole image +60.8 KB after boot (2026-11-22), over issue 3's "
                                      "48 KB; in the bench's windows the wasm port never collects, so "
                                      "it grows +8.1 KB to 10,000 presses and +3.9 KB over a second "
                                      "window (docs/firmware.md, Memory)")
def test_fw_image_within_48_kb(image: tuple[ModuleType, dict[str, Any]]) -> None:
    bench, m = image
    _, _, ok = bench.verdict(m)
    assert ok, m
