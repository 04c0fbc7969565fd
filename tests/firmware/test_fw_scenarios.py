"""The firmware's scenarios (tests/firmware/fw_scenarios.py) under CPython and under the real
MicroPython 1.27: same code, same assertions, host HAL on a directory per device."""

from __future__ import annotations

import json
from pathlib import Path

import fw_scenarios
import pytest

from simulator.micropython import RunMicroPython

SCENARIOS = Path(fw_scenarios.__file__).read_text()
ROOT = (Path(fw_scenarios.__file__).parent / "fw_root.py").read_text()
NAMES = ["scenario_lifecycle", "scenario_walkup_ignore_and_config", "scenario_safe_mode",
         "scenario_power_cut"]


@pytest.mark.parametrize("name", NAMES)
def test_fw_scenario_cpython(name: str, tmp_path: Path) -> None:
    getattr(fw_scenarios, name)(str(tmp_path / "dev"))


@pytest.mark.parametrize("name", NAMES)
def test_fw_scenario_micropython(name: str, mpy: RunMicroPython) -> None:
    code = "import json, fw_scenarios\nprint('RESULT ' + json.dumps(fw_scenarios.%s('/dev1')))\n" % name
    r = mpy(code, files={"/fw_scenarios.py": SCENARIOS, "/fw_root.py": ROOT}, timeout=120)
    lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    result = json.loads(lines[-1][7:])
    if name == "scenario_lifecycle":
        assert result["worst_latency_ms"] <= 50
    if name == "scenario_power_cut":
        assert result["cases"] == 2 * 64 + 12


def test_fw_memory_run_cpython(tmp_path: Path) -> None:
    """10,000 presses on CPython: every press makes exactly one record, none lost."""
    run = fw_scenarios.MemoryRun(str(tmp_path / "dev"))
    run.presses(10000)
    out = run.finish()
    assert out["records"] == 11000   # 10,000 presses + 1,000 countdowns that ran out
    assert out["counts"] == {"rated": 6000, "walkup": 3000, "extra": 1000, "unrated": 1000, "unpaired": 0}
