"""The demo's 差评 part, short: a hall run where citizens give 差评 shows each opening its work
order with its deadlines, the liaison working the first one, and the report counting 差评 and
valid 差评 (real mosquitto, gateway, stand-in, firmware). `pytest -m slow tests/simulator`."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from simulator.citizens import CitizenProfile
from simulator.hall import Hall, HallOptions
from simulator.report import Console, day_report_lines

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_sim_demo_shows_complaints_with_deadlines(tmp_path: Path) -> None:
    out = io.StringIO()
    opts = HallOptions(
        devices=2,
        minutes=1.5,
        speed=12.0,
        seed=3,
        workdir=tmp_path,
        boot_spread_s=0.2,
        profile=CitizenProfile(
            service_s=15.0,
            p_no_press=0.0,
            p_double=0.0,
            p_walkup=0.0,
            grade_weights={"vs": 1, "s": 1, "bs": 1, "d": 4, "vd": 4},
        ),
        drain_timeout_s=40,
        countdown_s=8,
        cooldown_s=3,
        complaints=True,
    )
    res = await Hall(opts, Console(out=out, live=False)).run()
    text = out.getvalue()
    assert res.ok, text
    opened = re.findall(r"  #(\d+) W00\d窗口 \S+ (?:不满意|非常不满意), case \S+: (.*)", text)
    bad = sum(r["d"] + r["vd"] for r in res.report_rows)
    assert bad >= 1 and len(opened) == bad, text
    for _, when in opened:
        assert re.match(
            r"contact by \d{4}-\d\d-\d\d 24:00\+08:00, rectify by .* appeal until ", when
        ) or when.startswith("deadlines unknown: no national holiday arrangement for "), when
    assert "hcp-gateway complaints verify 1: complaint #1 verified valid" in text
    assert sum(r["valid_bad"] for r in res.report_rows) == 1
    lines = day_report_lines(res.report_rows)
    assert lines[0].split()[-4:] == ["差评", "有效差评", "满意率", "得分"]
