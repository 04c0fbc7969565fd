"""A hall of real MicroPython devices through the fault scenarios: each evaluator the unchanged
firmware as its own process of the 32-bit unix MicroPython 1.27 with an ESP32's heap
(simulator/mpdevice.py), against the real mosquitto, the real gateway process and the platform
stand-in. Every run must end with zero lost and zero doubled ratings. Small scale for CI; the
hall goes to 200 such devices (docs/simulator.md, "MicroPython devices")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_support import run_hall  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def _run(tmp_path: Path, build: str, *faults: str, devices: int = 4) -> tuple[Any, Any]:
    hall, res = await run_hall(tmp_path, *faults, devices=devices, minutes=2.5, seed=11, drain_timeout_s=60,
                               runtime="micropython", mp_build=build)
    for d in hall.devices:
        assert d.crashes == 0, (d.device_id, (d.root / "console.log").read_text()[-2000:])
        assert d.fw_version.startswith("0.2.0+"), d.fw_version
    return hall, res


async def test_mp_hall_frozen_through_every_fault(tmp_path: Path) -> None:
    """The frozen image: broker restart, gateway kill, a power cut (SIGKILL + torn record), the
    whole hall's Wi-Fi lost, a device's clock lost, a platform outage, in one day."""
    hall, res = await _run(tmp_path, "frozen", "broker-restart@2s", "power-cut@4s+1s:1",
                           "wifi-loss@6s+3s:all", "gateway-kill@10s+2s", "clock-unsynced@3s:2",
                           "platform-outage@5s+3s")
    cut = hall.devices[1]
    assert cut.power_cuts == 1 and cut.boots == 2
    boots = {r.record_id.split(":")[1] for r in res.ledger.presses if r.device_id == cut.device_id}
    assert boots <= {"1", "2"}
    assert len(res.latencies) >= len(res.ledger.presses)


async def test_mp_hall_mpy_set_power_cut_and_wifi(tmp_path: Path) -> None:
    """The .mpy set flash.py uploads, imported from each device's flash directory."""
    hall, _ = await _run(tmp_path, "mpy", "power-cut@3s+1s:0", "wifi-loss@5s+3s:1", devices=3)
    assert (hall.devices[0].root / "firmware" / "main.mpy").exists()
    assert hall.devices[0].boots == 2
