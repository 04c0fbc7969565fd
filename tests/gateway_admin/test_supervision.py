"""Supervision findings (数据质量) on the small district of district_support.py plus a few
planted faults: each finding, its figures and its evidence rows, per month; the CLI and API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, Recorder
from aiohttp import web
from district_support import UR, District, build, t
from district_support import run_cli as run
from test_bulletin import write_config

from gateway.api import make_app
from gateway.periods import parse_period
from gateway.store.api import Tx
from gateway.supervision import SupervisionSettings, opening_slots, supervise

NOW = t(2026, 8, 1, 0)
HOUR = 3_600_000


async def plant(d: District) -> None:
    """On top of the district: a clerk who never invites, a fast rating, a late entry, a burst,
    and presence marks for dev-1 (silent on 3 June from 13:00)."""
    for i in range(3):
        await d.feed("S%d" % i, t(2026, 6, 22 + i, 10), "A09", "sun")   # a clerk the gateway never saw
    await d.feed("C23", t(2026, 6, 18, 10, tz=UR), "W01", "wang", task="T3")
    await d.rate("dev-3", "W01", "C23", "vs", t(2026, 6, 18, 10, 2, tz=UR), task="T3",
                 invited=t(2026, 6, 18, 10, 2, tz=UR) - 1000)
    await d.feed("C24", t(2026, 6, 17, 9, tz=UR), "W01", "wang", task="T3",
                 finished=t(2026, 6, 17, 9, 10, tz=UR))
    await d.rate("dev-3", "W01", "C24", "s", t(2026, 6, 17, 15, 0, 20, tz=UR), task="T3",
                 invited=t(2026, 6, 17, 15, tz=UR))
    for k in range(6):
        await d.s.rec("dev-4", "walkup", t(2026, 6, 20, 10, 0, k, tz=UR), "vs")
    marks = []
    h = t(2026, 6, 1, 0)
    while h < t(2026, 7, 1, 0):
        if not t(2026, 6, 3, 13) <= h < t(2026, 6, 3, 18):
            marks.append(("dev-1", h + 60_000))
        h += HOUR

    def unit(tx: Tx) -> None:
        tx.presence.note(marks)
    await d.s.db.write(unit)


@pytest.fixture
async def district(tmp_path: Path, store_url: str) -> AsyncIterator[District]:
    d = await build(tmp_path, store_url)
    await plant(d)
    try:
        yield d
    finally:
        await d.s.db.close()


SETTINGS = SupervisionSettings(min_cases=2, min_events=1, evidence_rows=50)


async def test_findings_with_evidence(district: District) -> None:
    sv = await supervise(district.s.db, district.s.cfg, parse_period("2026-06"), settings=SETTINGS, at_ms=NOW)
    assert sv.months == ["2026-06"]
    got = {(f.kind, f.subject_id): f for f in sv.findings}
    # zhao: C30 invited, C31 not: 1 of 2.
    f = got["invite_rate", "zhao"]
    assert f.figures == {"cases": 2, "invited": 1, "invite_rate": 0.5} and f.hall_id == "west-v1"
    assert [r["case_no"] for r in f.evidence] == ["C31"] and f.evidence_total == 1
    # zhang: C1-C5 (C7 withdrawn), C4 invited and never rated still counts as offered: 4 of 5.
    assert got["invite_rate", "zhang"].figures["invited"] == 4
    assert [r["case_no"] for r in got["invite_rate", "zhang"].evidence] == ["C5"]
    # sun, known only from the feed: three cases, no invitation.
    f = got["never_invites", "sun"]
    assert f.figures == {"cases": 3, "invited": 0, "invite_rate": 0.0} and f.evidence_total == 3
    assert f.summary.startswith("sun 本月办件3件")
    assert ("invite_rate", "li") not in got and ("invite_rate", "wang") not in got
    # Walk-ups: the one at A01, six at V01 (also a burst).
    assert got["walkup", "A01"].figures["presses"] == 1
    assert got["walkup", "V01"].figures == {"presses": 6, "devices": ["dev-4"]}
    assert got["burst", "V01"].evidence_total == 6
    # After hours (A02's hall opens 08:30-17:30 Mon-Fri): C10 at 23:30 on 30 June.
    f = got["after_hours", "A02"]
    assert [r["record_id"] for r in f.evidence] == [district.records["C10"]]
    assert f.evidence[0]["pressed_at"] == "2026-06-30T23:30:00+08:00"
    # Fast: C23 pressed 1 s after its invitation.
    f = got["fast_press", "wang"]
    assert [(r["case_no"], r["after_s"]) for r in f.evidence] == [("C23", 1.0)]
    # Late entry: C24 finished 09:10, invited 15:00 (350 minutes).
    f = got["late_entry", "wang"]
    assert [(r["case_no"], r["delay_minutes"]) for r in f.evidence] == [("C24", 350.0)]
    # Linkage: every rating was acknowledged on 10 July; C9 never was (counted up to now).
    f = got["linkage", "A02"]
    assert f.figures["ratings"] == 3 and f.figures["over_limit"] == 3
    assert district.records["C9"] in [r["record_id"] for r in f.evidence]
    # dev-1 silent on Wednesday 3 June from 13:00 to the close (17:30): 13, 14, 15, 16, 17 o'clock.
    f = got["silent_device", "dev-1"]
    assert f.evidence == [{"date": "2026-06-03", "silent_hours": 5,
                           "from": ["13:00", "14:00", "15:00", "16:00", "17:00"]}]
    # dev-3 was never heard: every opening hour of June in its hall (open around the clock).
    assert got["silent_device", "dev-3"].figures == {"days": 30, "silent_hours": 720}
    # Per hall.
    west = await supervise(district.s.db, district.s.cfg, parse_period("2026-06"), hall="west",
                           settings=SETTINGS,
                           at_ms=NOW)
    assert {f.hall_id for f in west.findings} <= {"west", "west-v1"}


async def test_monthly_list_and_thresholds(district: District) -> None:
    sv = await supervise(district.s.db, district.s.cfg, parse_period("2026-Q2"), settings=SETTINGS, at_ms=NOW)
    assert sv.months == ["2026-04", "2026-05", "2026-06"]
    assert {f.month for f in sv.findings if f.kind != "silent_device"} == {"2026-06"}
    strict = SupervisionSettings(min_cases=10, min_events=3, fast_press_s=0.5, late_entry_minutes=400,
                                 linkage_limit_s=86400 * 40)
    sv = await supervise(district.s.db, district.s.cfg, parse_period("2026-06"), settings=strict, at_ms=NOW)
    kinds = {(f.kind, f.subject_id) for f in sv.findings}
    assert not any(k in ("invite_rate", "never_invites", "fast_press", "late_entry") for k, _ in kinds)
    assert ("walkup", "V01") in kinds and ("walkup", "A01") not in kinds      # 6 >= 3, 1 < 3
    assert ("linkage", "A02") in kinds and ("linkage", "A01") not in kinds    # only C9 is over 40 days


def test_opening_slots() -> None:
    from gateway import org
    from gateway.config import HallConfig, parse_opening_hours
    h = org.default_hall(HallConfig(opening_hours=parse_opening_hours(["08:30-12:00", "13:30-17:30"])))
    import datetime as dt
    slots = opening_slots(h, dt.date(2026, 6, 3))
    assert [(b - a) // 60_000 for a, b in slots] == [30, 60, 60, 60, 30, 60, 60, 60, 30]
    assert opening_slots(h, dt.date(2026, 6, 6)) == []   # Saturday


def test_cli_supervision(tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup() -> None:
        d = await build(tmp_path, store_url)
        await plant(d)
        await d.s.db.close()
    asyncio.run(setup())
    cfg = write_config(tmp_path, store_url)
    with open(cfg, "a") as f:
        f.write("\n[supervision]\nmin_cases = 2\nmin_events = 1\n")
    code, out, _ = run(capsys, cfg, "supervision", "--period", "2026-06", "--evidence", "2")
    assert code == 0 and "数据质量监督发现（2026年6月）" in out and "[从未邀请评价]" in out
    assert "== 2026-06" in out
    assert "more (see --json)" in out
    code, out, _ = run(capsys, cfg, "--json", "supervision", "--period", "2026-06")
    data = json.loads(out)
    assert code == 0 and data["counts"]["never_invites"] == 1 and data["settings"]["min_cases"] == 2
    code, _, err = run(capsys, cfg, "supervision", "--period", "2026-6")
    assert code == 2 and "not understood" in err


@pytest.fixture
async def api(district: District) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    runner = web.AppRunner(make_app(district.s.db, district.s.cfg, Recorder()))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + ADMIN_TOKEN}) as http:
        yield http, "http://127.0.0.1:%d/api/v1/supervision" % runner.addresses[0][1]
    await runner.cleanup()


async def test_api_supervision(api: tuple[aiohttp.ClientSession, str]) -> None:
    http, url = api
    async with http.get(url, params={"period": "2026-06"}) as r:
        assert r.status == 200
        data = await r.json()
    assert data["months"] == ["2026-06"] and "silent_device" in data["counts"]
    assert all({"kind", "kind_zh", "summary", "evidence",
                "evidence_total"} <= set(f) for f in data["findings"])
    async with http.get(url, params={"period": "soon"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "bad_period"
