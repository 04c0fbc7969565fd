"""One short hall run for the end-to-end tests: every run must end with zero lost and zero doubled."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from simulator.citizens import CitizenProfile
from simulator.faults import parse_spec
from simulator.hall import Hall, HallOptions, RunResult
from simulator.report import Console, reconciliation_lines


async def run_hall(tmp_path: Path, *faults: str, devices: int = 4, minutes: float = 2.0, seed: int = 7,
                   **options: Any) -> tuple[Hall, RunResult]:
    out = io.StringIO()
    opts = HallOptions(devices=devices, minutes=minutes, speed=12.0, seed=seed, workdir=tmp_path,
                       profile=CitizenProfile(service_s=15.0, p_no_press=0.1, p_double=0.1, p_walkup=0.1),
                       faults=[parse_spec(f) for f in faults], boot_spread_s=0.2,
                       **{"drain_timeout_s": 40, "countdown_s": 8, "cooldown_s": 3, **options})
    hall = Hall(opts, Console(out=out, live=False))
    res = await hall.run()
    text = "\n".join(reconciliation_lines(res.reconciliation))
    assert res.ok, out.getvalue() + "\n" + text
    assert res.reconciliation.lost == 0 and res.reconciliation.doubled == 0
    assert len(res.ledger.presses) >= devices, out.getvalue()
    for ev in hall.fault_events:
        assert ev.error is None, ev
    assert len(hall.fault_events) == len(faults)
    return hall, res
