"""10,000 presses under the real MicroPython 1.27 on the .mpy set (bench/firmware_memory.py
prints the figures and the per-module breakdown).

Issue 3's bound is on the WHOLE image the device runs: app, journal, link (connected, every
record sent and acked over MQTT), MQTT client, protocol and a HAL: live heap <= 48 KB and no
growth with presses. The bench presses in chunks of 50 with the collector running between
chunks, as a device's runs whenever its heap fills (the wasm port collects only when the program
yields to JS; inside a window it grows its heap instead, docs/firmware.md "The growth with
presses"). Measured that way the image does not grow: asserted here. It is still over 48 KB
(docs/firmware.md, "Memory"): that assertion is an xfail(strict=True), so the day it holds the
suite says so, and a ceiling keeps it from getting worse meanwhile. The firmware core alone
keeps its 48 KB and no-growth bounds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from simulator.micropython import RunMicroPython

BENCH = Path(__file__).resolve().parents[2] / "bench" / "firmware_memory.py"
# Whole image with the host HAL, collector running, as measured on 2026-11-22 (fourth round):
# about +54.8 KB. This ceiling only catches regressions (it also fires when ~100 more names push
# the qstrs into a new 4.5 KB pool); the target is HEAP_BOUND (48 KB).
IMAGE_CEILING = 58 * 1024


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
    """The whole image, link running: every record sent and acked once, no growth with presses
    beyond one-time warm-up (in both windows), under the regression ceiling."""
    bench, m = image
    app_100, app_end, _ = bench.verdict(m)
    booted = int(m["booted"]) - int(m["base"])
    print("image live heap: %d B after boot, %d B at 100 presses, %d B at 10,000; second window +%d B"
          % (booted, app_100, app_end, m["second_window"]))
    assert m["counts"]["rated"] == 11940 and m["journal"]["pending"] == 0
    assert m["sent"] == m["acked"] == m["records"]
    assert app_end - app_100 <= bench.GROWTH_BOUND, m
    assert int(m["second_window"]) <= bench.GROWTH_BOUND, m
    assert max(booted, app_100, app_end) <= IMAGE_CEILING, m


@pytest.mark.xfail(strict=True, reason="whole image about +54.8 KB (2026-11-22), over issue 3's 48 KB "
                                      "(docs/firmware.md, Memory)")
def test_fw_image_within_48_kb(image: tuple[ModuleType, dict[str, Any]]) -> None:
    bench, m = image
    _, _, ok = bench.verdict(m)
    assert ok, m
