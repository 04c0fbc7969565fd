"""The case feed: POST /api/v1/cases (window token), idempotent by case number, all-or-none
batches, times in the hall's zone, clear errors; GET /api/v1/cases/{case_no}; the CLI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN, Recorder, Store, open_store
from aiohttp import web
from district_support import run_cli as run
from test_bulletin import write_config

from gateway import bindings, casefeed, org, uscc
from gateway.api import make_app
from gateway.errors import BadInput
from gateway.invitations import InvitationRequest, InvitationRules, create

D1 = uscc.complete("11370303004253591")
HALL = {"id": "centre", "timezone": "Asia/Shanghai", "opening_hours": ["08:30-17:30"]}


@pytest.fixture
async def api(tmp_path: Path, store_url: str) -> AsyncIterator[tuple[aiohttp.ClientSession, str, Store]]:
    s = await open_store(tmp_path, store_url, hall=dict(HALL))
    await org.add_hall(s.db, s.cfg.hall, "west", org.HallSpec(name="西城镇", kind="town",
                                                              timezone="Asia/Urumqi"), "t")
    await org.move_window(s.db, s.cfg.hall, "A02", "t", hall_id="west", dept_code=D1)
    runner = web.AppRunner(make_app(s.db, s.cfg, Recorder()))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + WINDOW_TOKEN}) as http:
        yield http, "http://127.0.0.1:%d/api/v1/cases" % runner.addresses[0][1], s
    await runner.cleanup()
    await s.db.close()


async def post(http: aiohttp.ClientSession, url: str, body: Any, status: int) -> Any:
    async with http.post(url, data=json.dumps(body, ensure_ascii=False).encode()) as r:
        data = await r.json()
        assert r.status == status, data
        return data


async def test_report_idempotent_update_and_times(api: tuple[aiohttp.ClientSession, str, Store]) -> None:
    http, url, s = api
    case = {"case_no": "370303-2026-0001", "accepted_at": "2026-06-01 09:15:00", "window": "A01",
            "staff_account": "zhang", "task_code": "T1", "task_name": "居民身份证换领"}
    assert (await post(http, url, case, 201))["created"] == 1
    assert (await post(http, url, case, 200))["unchanged"] == 1           # the same report again
    done = {**case, "finished_at": "2026-06-01T09:40:00+08:00"}
    out = await post(http, url, done, 200)
    assert out["updated"] == 1 and out["updated_cases"] == ["370303-2026-0001"]
    # A02 is in the western town: its local times are Urumqi's (UTC+6), its department the window's.
    await post(http, url, {"case_no": "W-1", "accepted_at": "2026-06-01 09:15:00", "window": "A02"}, 201)
    async with http.get(url + "/W-1") as r:
        w1 = await r.json()
    assert (w1["hall_id"], w1["dept_code"]) == ("west", D1)
    assert w1["accepted_ms"] == 1780283700000                              # 2026-06-01 03:15 UTC
    async with http.get(url + "/370303-2026-0001") as r:
        c = await r.json()
    assert c["accepted_ms"] == 1780276500000 and c["finished_ms"] == 1780278000000 and c["invitations"] == []
    assert c["status"] == "finished" and c["reported_by"] == "api:window"
    # An invitation of the case shows beside it.
    await bindings.pair(s.db, "dev-1", "A01", "zhang", "t")
    await create(s.db, InvitationRequest(case_no="370303-2026-0001", window_id="A01"), "t", InvitationRules())
    async with http.get(url + "/370303-2026-0001") as r:
        assert [i["status"] for i in (await r.json())["invitations"]] == ["pending"]
    audit = await s.fetchall("SELECT action, actor FROM audit_log WHERE action = 'case.report'")
    assert len(audit) == 3 and audit[0][1] == "api:window"      # unchanged reports write nothing


async def test_batches_all_or_none_and_errors(api: tuple[aiohttp.ClientSession, str, Store]) -> None:
    http, url, s = api
    cases = [{"case_no": "B-%d" % i, "accepted_at": 1780276500000 + i,
              "status": "accepted"} for i in range(500)]
    out = await post(http, url, {"cases": cases}, 201)
    assert out["created"] == 500
    bad_batch = [{"case_no": "N-1", "accepted_at": "2026-06-01 09:00"}, {"case_no": "N-2",
                                                                         "accepted_at": "soon"}]
    e = await post(http, url, {"cases": bad_batch}, 400)
    assert e["error"] == "bad_time" and e["message"].startswith("cases[1]: accepted_at must be a time")
    n = await s.fetchone("SELECT count(*) FROM cases WHERE case_no LIKE 'N-%'")
    assert n == (0,)                                   # all or none
    for body, code in (
            ({"case_no": "X"}, "missing_field"),
            ({"case_no": "X", "accepted_at": "2026-06-01 09:00", "colour": "red"}, "unknown_field"),
            ({"case_no": "X", "accepted_at": "2026-06-01 09:00", "status": "lost"}, "bad_status"),
            ({"case_no": "X", "accepted_at": "2026-06-01 09:00", "dept_code": D1[:17] + "0"},
             "bad_dept_code"),
            ({"case_no": "X", "accepted_at": "2026-06-01 09:00", "hall": "nowhere"}, "unknown_hall"),
            ({"case_no": "X", "accepted_at": "2026-06-01", "finished_at": None}, "bad_time"),
            ({"case_no": "X", "accepted_at": "2026-06-01 10:00", "finished_at": "2026-06-01 09:00"},
             "bad_time"),
            ({"case_no": "X", "accepted_at": "1999-06-01 10:00"}, "bad_time"),
            ({"cases": []}, "bad_batch"),
            ({"cases": [{"case_no": "D", "accepted_at": 1780276500000}] * 2}, "duplicate_case"),
            ({"cases": [1]}, "bad_case")):
        e = await post(http, url, body, 400)
        assert e["error"] == code, (body, e)
    async with http.post(url, data=b"{not json") as r:
        assert r.status == 400 and (await r.json())["error"] == "bad_json"
    async with http.post(url, data=b"[" + b" " * (2 * 1024 * 1024) + b"]") as r:
        assert r.status == 413
    async with http.post(url, json={"case_no": "X", "accepted_at": 1780276500000},
                         headers={"Authorization": "Bearer nope-nope-nope-nope"}) as r:
        assert r.status == 401
    async with http.get(url + "/nothing") as r:
        assert r.status == 404 and (await r.json())["error"] == "unknown_case"
    # The admin token may report too.
    async with http.post(url, json={"case_no": "ADM", "accepted_at": 1780276500000},
                         headers={"Authorization": "Bearer " + ADMIN_TOKEN}) as r:
        assert r.status == 201


def test_parse_time_forms() -> None:
    from zoneinfo import ZoneInfo
    tz = ZoneInfo("Asia/Shanghai")
    assert casefeed.parse_time("2026-06-01 09:15:00", tz, "x") == 1780276500000
    assert casefeed.parse_time("2026-06-01T09:15", tz, "x") == 1780276500000
    assert casefeed.parse_time("2026-06-01T01:15:00Z", tz, "x") == 1780276500000
    assert casefeed.parse_time(1780276500000, tz, "x") == 1780276500000
    for bad in ("2026-06-01", "yesterday", 1.5, True, None, "2026-02-30 10:00"):
        with pytest.raises(BadInput):
            casefeed.parse_time(bad, tz, "x")


def test_cli_cases(tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, store_url)
    f = tmp_path / "cases.json"
    f.write_text(json.dumps({"cases": [{"case_no": "K-%d" % i,
                                        "accepted_at": "2026-06-0%d 10:00:00" % (i + 1),
                                        "staff_account": "zhang", "task_name": "事项"} for i in range(3)]},
                            ensure_ascii=False))
    code, out, _ = run(capsys, cfg, "cases", "report", str(f))
    assert code == 0 and out.strip() == "cases: 3 created, 0 updated, 0 unchanged"
    code, out, _ = run(capsys, cfg, "cases", "report", str(f))
    assert code == 0 and "3 unchanged" in out
    code, out, _ = run(capsys, cfg, "cases", "list", "--period", "2026-06", "--limit", "2")
    assert code == 0 and "K-0" in out and "K-1" in out and "K-2" not in out and "1 more" in out
    code, out, _ = run(capsys, cfg, "cases", "show", "K-1")
    assert code == 0 and json.loads(out)["accepted_ms"] == 1780365600000
    f.write_text("{")
    code, _, err = run(capsys, cfg, "cases", "report", str(f))
    assert code == 1 and "is not JSON" in err
    code, _, err = run(capsys, cfg, "cases", "show", "nope")
    assert code == 1 and "unknown case nope" in err
