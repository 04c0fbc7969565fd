"""10,000 presses under the real MicroPython 1.27 on the .mpy set (bench/firmware_memory.py
prints the figures and the per-module breakdown).

Issue 3's bound is on the WHOLE image the device runs: app, journal, link (connected, every
record sent and acked over MQTT), MQTT client, protocol and a HAL: live heap <= 48 KB and no
growth with presses. The image meets neither yet (docs/firmware.md, "Memory": ~68 KB after
boot, and over its first windows of presses it still grows): that assertion is an
xfail(strict=True), so the day it holds the suite says so, and a ceiling keeps it from getting
worse meanwhile. The firmware core alone keeps its 48 KB and no-growth bounds.

The growth was traced (docs/firmware.md, "The growth with presses"): an idle control (link
running, no press) is flat; replacing the wasm port's JS timer per asyncio push changes
nothing; qstrs do not grow; a heap walk finds the new blocks unreachable from the firmware's
objects (old payloads, packets, invitation ids, finished coroutines) and kept only by stale
words under MicroPython's conservative GC. It decays window by window (6.7, 3.8, 2.5, 1.1 KB
over four windows of 9,900 presses). It is not netted out here: the bound stays as issue 3
states it, and the xfail says why it is not met.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from simulator.micropython import RunMicroPython

BENCH = Path(__file__).resolve().parents[2] / "bench" / "firmware_memory.py"
# Whole image with the host HAL as measured on 2026-11-23: +66.8 KB after boot, +75.6 KB after
# 10,000 presses. This ceiling only catches regressions; the target is HEAP_BOUND (48 KB).
IMAGE_CEILING = 80 * 1024


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


@pytest.mark.xfail(strict=True, reason="whole image +66.8 KB after boot, over issue 3's 48 KB; its "
                                      "growth (conservative-GC retention of garbage, decaying) is "
                                      "still over 2 KB in the second window (docs/firmware.md, Memory)")
def test_fw_image_within_48_kb(image: tuple[ModuleType, dict[str, Any]]) -> None:
    bench, m = image
    _, _, ok = bench.verdict(m)
    assert ok, m
