"""`hcp-sim history` at a small scale: a Zhangdian-like quarter made through the gateway's real
API and ingest entry point (signed device messages), uploaded to the platform stand-in; the
bulletin then agrees with what the generator did, and both attachment tables are printed.
(The full scale, about 90,000 ratings, is run once for docs/bulletin.md.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from simulator.history import TOWNS, History, HistoryOptions, print_tables, summary_lines


async def test_a_small_quarter_matches_its_bulletin(tmp_path: Path) -> None:
    opts = HistoryOptions(quarter="2026-Q2", scale=0.002, seed=3, push_minutes=240, workdir=tmp_path / "w")
    res = await History(opts, say=lambda _t: None).run()
    assert res.ok, res.problems
    led = res.ledger
    real = sum(led.ratings.values())
    assert real > 100 and led.bad >= 2 and led.defaults > 0
    # Every uploaded rating and default rating is at the platform exactly once.
    assert res.platform["accepted"] == real + led.defaults
    # The seed's two tables: the centre's departments, and the district by town (8 towns + the centre).
    assert res.department.title == "2026年第二季度各部门“好差评”评估通报表"
    assert 15 <= len(res.department.rows) <= 20    # at this scale a small department may have no case
    assert res.town.title == "2026年第二季度各镇（街道）“好差评”评估通报表"
    names = {r.name for r in res.town.rows}
    assert "张店区政务服务中心" in names
    assert names <= {t + "便民服务中心" for t in TOWNS} | {"张店区政务服务中心"}
    assert len(names) >= 6        # at this scale a town may have had no case at all
    assert res.town.totals.counts.ratings == real and res.town.totals.counts.bad == led.bad
    assert res.department.issuer == "淄博市张店区政务服务管理办公室"
    # The towns invite much less than the centre (the seed's complaint), visible in the 评价率.
    centre = next(r for r in res.town.rows if r.key == ("zd-centre",))
    towns = [r for r in res.town.rows if r.key != ("zd-centre",)]
    assert centre.rating_rate is not None and centre.rating_rate > 0.85
    assert sum(r.counts.ratings for r in towns) / sum(r.counts.cases for r in towns) < 0.7
    # Supervision saw the planted burst and the unplugged evaluator.
    assert res.supervision["burst"] >= 1 and res.supervision["silent_device"] >= 1
    # The work directory's gateway.toml holds the tokens and the platform secret: owner only.
    assert (tmp_path / "w" / "gateway.toml").stat().st_mode & 0o777 == 0o600
    ws = load_workbook(tmp_path / "w" / "bulletin-town.xlsx")["通报表"]
    assert ws["A1"].value == res.town.title
    lines: list[str] = []
    print_tables(res, lines.append)
    text = "\n".join(lines)
    assert "各部门“好差评”评估通报表" in text and "马尚街道便民服务中心" in text and "合计" in text
    assert any("platform stand-in" in line for line in summary_lines(res))


async def test_a_small_quarter_on_postgresql(tmp_path: Path, pg_server: Any) -> None:
    """The same generator on the PostgreSQL store (the district's store with several gateway
    instances): the bulletin still agrees with the ledger and the platform."""
    url = await asyncio.to_thread(pg_server.fresh_database)
    opts = HistoryOptions(quarter="2026-Q2", scale=0.002, seed=5, push_minutes=240, store_url=url,
                          workdir=tmp_path / "w")
    res = await History(opts, say=lambda _t: None).run()
    assert res.ok, res.problems
    led = res.ledger
    real = sum(led.ratings.values())
    assert real > 100 and res.platform["accepted"] == real + led.defaults
    assert res.town.totals.counts.ratings == real and res.town.totals.counts.bad == led.bad
    assert res.town.totals.counts.defaults == led.defaults


def test_cli_refuses_a_quarter_not_over() -> None:
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "history", "--quarter", "2099-Q1", "--quiet"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "has not ended yet" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "history", "--quarter", "2026-06", "--quiet"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "must be a quarter" in p.stderr
