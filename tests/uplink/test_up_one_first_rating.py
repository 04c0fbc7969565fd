"""One first rating per case at the platform, and one rule for late presses (issue 16, "Also fix").

Real store (all migrations), the gateway's own invitation functions and attribution, the real
platform stand-in over loopback HTTP; `push` as an admin runs it (a subprocess, exit code).
Each test here failed on the code before issue 16.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from up_support import CaseFlow, Database, Seeder, fast_settings, local_ms, open_db

from gateway import reports
from gateway.config import parse_config
from gateway.errors import Conflict
from gateway.uplink.push import push_once
from gateway.uplink.reconcile import reconcile
from simulator.netutil import free_port, wait_port
from simulator.platform import PlatformStandIn

DAY = "2025-03-03"
T0 = local_ms(DAY, 10)
ROOT = Path(__file__).resolve().parents[2]


def first_ratings(platform: PlatformStandIn, case_no: str) -> list[dict[str, object]]:
    return [r for r in platform.accepted_records() if r["projectNo"] == case_no and r["assessNumber"] == 1]


async def test_reinviting_a_case_after_its_default_went_up_never_sends_a_second_first_rating(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn
) -> None:
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0, case_no="X-1")
    assert await flow.expire(T0 + 100_000) == [a]
    assert (await push_once(gwdb, fast_settings(platform.url))).invitation_defaults == 1
    refused = False
    try:
        b = await flow.invite("W01", T0 + 200_000, case_no="X-1")
    except Conflict as e:
        refused = True
        assert e.code == "case_has_default" and "X-1" in str(e) and "follow_up" in str(e)
    else:  # the old behaviour: invited, rated and pushed as a second assessNumber 1
        await flow.device_record("hcp-dev1", "rated", b, T0 + 210_000, grade="vs")
        await push_once(gwdb, fast_settings(platform.url))
    assert len(first_ratings(platform, "X-1")) == 1
    assert refused


async def test_reinvited_before_the_push_the_real_rating_is_the_only_first_rating(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn
) -> None:
    """A expires (no record), B re-invites the same case and is rated, all before the push: the
    platform gets B's rating only, never A's default as well."""
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0, case_no="X-2")
    assert await flow.expire(T0 + 100_000) == [a]
    b = await flow.invite("W01", T0 + 200_000, case_no="X-2")
    rated = await flow.device_record("hcp-dev1", "rated", b, T0 + 210_000, grade="s")
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok
    assert platform.accepted_ids() == [rated]
    res = await reconcile(gwdb, fast_settings(platform.url), DAY, platform.accepted_ids())
    assert res.ok, res.mismatches


async def test_device_unrated_then_reinvited_and_rated_sends_the_rating_only(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn
) -> None:
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0, case_no="X-3")
    unrated = await flow.device_record("hcp-dev1", "unrated", a, T0 + 60_000)
    b = await flow.invite("W01", T0 + 120_000, case_no="X-3")
    rated = await flow.device_record("hcp-dev1", "rated", b, T0 + 130_000, grade="bs")
    assert unrated < rated  # the default's record id sorts first: order must not decide
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok and rep.covered == 1
    assert platform.accepted_ids() == [rated]
    res = await reconcile(gwdb, fast_settings(platform.url), DAY, platform.accepted_ids())
    assert res.ok, res.mismatches
    assert res.uplink["covered"] == 1


async def test_a_late_press_follows_one_rule_for_report_and_platform(
    gwdb: Database, seeder: Seeder, platform: PlatformStandIn, tmp_path: Path
) -> None:
    """The rule: a press after its invitation closed (flagged `late`) is not the case's rating,
    neither in the report nor at the platform; the case gets its default rating like any
    invitation that ended without one."""
    flow = CaseFlow(gwdb, seeder)
    a = await flow.invite("W01", T0, case_no="L-1")
    assert await flow.expire(T0 + 100_000) == [a]
    late = await flow.device_record("hcp-dev1", "rated", a, T0 + 150_000, grade="vd")
    flags = await gwdb.fetchone("SELECT flags FROM records WHERE record_id = ?", (late,))
    assert flags is not None and "late" in flags["flags"].split(",")
    rep = await push_once(gwdb, fast_settings(platform.url))
    assert rep.ok
    assert platform.accepted_ids() == ["inv:" + a]
    assert first_ratings(platform, "L-1")[0]["defaultFlag"] == 1
    res = await reconcile(gwdb, fast_settings(platform.url), DAY, platform.accepted_ids())
    assert res.ok, res.mismatches
    assert res.uplink["held"] == 1  # the late press: kept, counted apart, not uploaded
    cfg = parse_config({"store": {"path": str(tmp_path / "unused.db")}}, tmp_path)
    day = await reports.day_report(gwdb.store, cfg, DAY)
    assert (day.total.ratings, day.total.expired, day.total.late, day.total.bad) == (0, 1, 1, 0)


def test_push_exits_non_zero_when_records_could_not_be_mapped(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.platform",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "platform.sqlite"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port("127.0.0.1", port, time.monotonic() + 15, proc)
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(
            '[store]\npath = "gw.sqlite"\n[hall]\narea_code = "540102"\n'
            '[uplink]\nurl = "http://127.0.0.1:%d"\nbackoff_base_s = 0.01\n' % port,
            encoding="utf-8",
        )

        async def seed() -> None:
            db = await open_db(tmp_path / "gw.sqlite")
            s = Seeder(db)
            await s.device("hcp-dev1", "W01", "clerk01")
            await s.records("hcp-dev1", DAY, 3)
            await s.records("hcp-dev1", DAY, 1, applicant_type=None)  # the province needs it
            await db.close()

        asyncio.run(seed())
        r = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "--config", str(cfg), "push"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "3 accepted" in r.stdout and "1 not mappable" in r.stdout, r.stdout + r.stderr
        assert r.returncode == 1, r.stdout
    finally:
        proc.terminate()
        proc.wait(10)
