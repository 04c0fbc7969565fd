"""10,000 presses under the real MicroPython 1.27 on the .mpy set: the firmware's live heap
stays within 48 KB and does not grow with presses (bench/firmware_memory.py prints it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from simulator.micropython import RunMicroPython

BENCH = Path(__file__).resolve().parents[2] / "bench" / "firmware_memory.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("firmware_memory_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fw_heap_bounded_over_10000_presses(mpy: RunMicroPython) -> None:
    bench = _bench()
    m = bench.measure(10000, timeout=600)
    app_100, app_end, ok = bench.verdict(m)
    print("app live heap: %d B at 100 presses, %d B at 10,000; second window +%d B"
          % (app_100, app_end, m["second_window"]))
    assert app_end <= 48 * 1024, m
    assert app_end - app_100 <= bench.GROWTH_BOUND, m
    assert m["second_window"] <= bench.GROWTH_BOUND, m
    assert ok
    assert m["counts"]["rated"] == 11940 and m["journal"]["pending"] == 0
