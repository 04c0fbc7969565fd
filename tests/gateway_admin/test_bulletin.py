"""Bulletins against hand-counted figures (district_support.py tells every case): every column,
exclusions, default ratings, a retired clerk, several halls in two time zones, a period across
a month boundary; the formulas from [bulletin]; CSV and XLSX read back and compared with the
JSON; the CLI and the API; on the store_url backend."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adm_support import ADMIN_TOKEN, WINDOW_TOKEN, Recorder
from aiohttp import web
from district_support import D1, D2, HALL, District, build, t
from district_support import run_cli as run
from openpyxl import load_workbook

from gateway import bulletin
from gateway.api import make_app
from gateway.bulletin import BulletinSettings, make_bulletin
from gateway.complaint_figures import RatingOutcome
from gateway.config import ConfigError, parse_config
from gateway.errors import BadInput
from gateway.export import csv_bytes, xlsx_bytes
from gateway.periods import parse_period

GRADE_KEYS = ("vs", "s", "bs", "d", "vd")


@pytest.fixture
async def district(tmp_path: Path, store_url: str) -> AsyncIterator[District]:
    d = await build(tmp_path, store_url)
    try:
        yield d
    finally:
        await d.s.db.close()


async def make(d: District, period: str, by: str, hall: str | None = None,
               settings: BulletinSettings | None = None) -> bulletin.Bulletin:
    return await make_bulletin(d.s.db, d.s.cfg, parse_period(period), by, hall, d.outcomes, settings)


def figures(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["cases"], r["ratings"], r["rating_rate"], tuple(r[g] for g in GRADE_KEYS), r["bad"],
            r["valid_bad"],
            r["rectified"], r["rectification_rate"], r["callback_rate"], r["satisfaction"], r["score"],
            r["rank"],
            r["defaults"], r["excluded"])


def by_name(b: bulletin.Bulletin) -> dict[str, dict[str, Any]]:
    return {r.name: {**r.cells(), **r.extra()} for r in b.rows}


async def test_june_by_department_every_column(district: District) -> None:
    b = await make(district, "2026-06", "department")
    assert b.title == "2026年6月各部门“好差评”评估通报表"
    assert b.period.span_label == "2026年6月1日至2026年6月30日"
    rows = by_name(b)
    assert [r.name for r in b.rows] == ["区行政审批服务局", "区人力资源和社会保障局"]   # ranked by score
    d1, d2 = rows["区行政审批服务局"], rows["区人力资源和社会保障局"]
    assert d1["detail"] == D1 and d2["detail"] == D2
    # D1: feed C1-C5, C8, C9, C10 (C7 withdrawn, C11 July) + C6 invited but never reported = 9 cases;
    # ratings uploaded: C1 vs, C2 s, C3 d, C6 bs, C10 s; C8 excluded; C9 not uploaded; C4 a default.
    assert figures(d1) == (9, 5, round(5 / 9, 6), (1, 2, 1, 1, 0), 1, 0, 0, None, 0.0, 0.8, 65.0, 1, 1, 1)
    assert (d1["offered"], d1["not_uploaded"], d1["called_back"]) == (8, 1, 0)
    # D2 (west and its village, Urumqi dates): C20 vs (30 June 23:40 there), C21 d (valid, rectified,
    # called back), C22 vd (valid, called back), C30 s; C31 never invited.
    assert figures(d2) == (5, 4, 0.8, (1, 1, 0, 1, 1), 2, 2, 1, 0.5, 1.0, 0.5, 50.0, 2, 0, 0)
    tot = {**b.totals.cells(), **b.totals.extra()}
    assert figures(tot) == (14, 9, round(9 / 14, 6), (2, 3, 1, 2, 1), 3, 2, 1, 0.5, round(2 / 3, 6),
                            round(6 / 9, 6), round(525 / 9, 2), None, 1, 1)
    assert tot["offered"] == 12
    assert b.timezones == ["Asia/Shanghai", "Asia/Urumqi"]
    notes = "\n".join(b.notes)
    assert "综合得分 = （非常满意×100＋满意×75＋基本满意×50＋不满意×25＋非常不满意×0）÷ 评价量" in notes
    assert "满意率 = （非常满意＋满意＋基本满意）÷ 评价量" in notes and "评价率 = 评价量 ÷ 办件量" in notes
    assert "Asia/Shanghai、Asia/Urumqi" in notes
    # Charts: the satisfaction trend by ISO week... June is 30 days: by day.
    trend, bad, rate = b.charts
    assert trend.categories[0] == "2026-06-01" and len(trend.categories) == 30
    june = dict(zip(trend.categories, trend.series[0].values, strict=True))
    assert june["2026-06-03"] == 1.0 and june["2026-06-05"] == 0.0 and june["2026-06-01"] is None
    assert dict(zip(bad.categories, bad.series[0].values, strict=True)) == {
        "区人力资源和社会保障局": 2.0, "区行政审批服务局": 1.0}
    assert dict(zip(rate.categories, rate.series[0].values, strict=True)) == {   # villages with their town
        "区政务服务中心": round(5 / 9, 6), "西城镇便民服务中心": 0.8}


async def test_groupings_clerk_window_hall_town_item(district: District) -> None:
    clerks = by_name(await make(district, "2026-06", "clerk"))
    assert figures(clerks["张三"])[:4] == (6, 4, round(4 / 6, 6), (1, 1, 1, 1, 0))
    assert clerks["张三"]["defaults"] == 1 and clerks["张三"]["score"] == 62.5
    li = clerks["李四"]   # retired after the period: still there, by name, marked
    assert (li["retired"], li["cases"], li["ratings"], li["excluded"], li["not_uploaded"]) == \
        (True, 3, 1, 1, 1)
    ranks = [clerks[n]["rank"] for n in ("李四", "赵六", "张三", "王五")]
    assert ranks == [1, 1, 3, 4]
    windows = by_name(await make(district, "2026-06", "window"))
    assert windows["W01 西城综合窗口"]["detail"] == "西城镇便民服务中心"
    assert windows["V01 西城村代办窗口"]["cases"] == 2
    halls = by_name(await make(district, "2026-06", "hall"))
    assert {k: (v["cases"], v["ratings"]) for k, v in halls.items()} == {
        "区政务服务中心": (9, 5), "西城镇便民服务中心": (3, 3), "西城村便民服务站": (2, 1)}
    towns = await make(district, "2026-06", "town")
    assert towns.title == "2026年6月各镇（街道）“好差评”评估通报表"
    assert {r.name: (r.counts.cases, r.counts.ratings) for r in towns.rows} == {
        "区政务服务中心": (9, 5), "西城镇便民服务中心": (5, 4)}          # the village rolled up
    items = by_name(await make(district, "2026-06", "item"))
    assert {k: (v["detail"], v["cases"], v["ratings"]) for k, v in items.items()} == {
        "事项T1": ("T1", 6, 4), "事项T2": ("T2", 3, 1), "事项T3": ("T3", 5, 4)}
    # --hall west: the town and the village point under it.
    west = await make(district, "2026-06", "hall", hall="west")
    assert {r.name for r in west.rows} == {"西城镇便民服务中心", "西城村便民服务站"}
    assert west.totals.counts.cases == 5 and west.timezones == ["Asia/Urumqi"]
    with pytest.raises(BadInput) as e:
        await make(district, "2026-06", "hall", hall="east")
    assert e.value.code == "unknown_hall"


async def test_month_boundary_and_hall_time_zones(district: District) -> None:
    """C10 (30 June 23:30 Shanghai) is June's; C11 (1 July 00:40 Shanghai = 30 June UTC) July's;
    C20 (30 June 23:40 Urumqi = 1 July 01:40 Shanghai) is June's for its hall."""
    span = by_name(await make(district, "2026-06-30..2026-07-01", "clerk"))
    assert {k: (v["cases"], v["ratings"]) for k, v in span.items()} == {"李四": (2, 2), "王五": (1, 1)}
    july = await make(district, "2026-07", "clerk")
    assert {r.name: (r.counts.cases, r.counts.grades["vs"]) for r in july.rows} == {"李四": (1, 1)}
    week = await make(district, "2026-W27", "department")   # 29 June .. 5 July
    assert week.period.label == "2026年第27周（6月29日至7月5日）"
    assert (week.totals.counts.cases, week.totals.counts.ratings) == (3, 3)
    q2 = await make(district, "2026-Q2", "department")      # the quarter: June is all there is
    assert q2.totals.counts.ratings == 9 and q2.title.startswith("2026年第二季度")
    assert q2.charts[0].categories[0] == "2026-W14"           # a quarter's trend is weekly


async def test_formulas_are_configuration(district: District, tmp_path: Path) -> None:
    raw = {"store": {"path": str(tmp_path / "x.db")}, "hall": dict(HALL),
           "bulletin": {"weights": {"vs": 10, "s": 8, "bs": 6, "d": 3, "vd": 0}, "satisfied": ["vs", "s"],
                        "rate_denominator": "invited", "rank_by": "satisfaction", "rate_without_base": "full",
                        "issuer": "淄博市张店区政务服务管理办公室"}}
    s = parse_config(raw, tmp_path).sections["bulletin"]
    b = await make(district, "2026-06", "department", settings=s)
    d1 = by_name(b)["区行政审批服务局"]
    assert d1["score"] == round((10 + 8 * 2 + 6 + 3) / 5, 2) and d1["satisfaction"] == 0.6
    assert d1["rating_rate"] == round(5 / 8, 6)            # ÷ cases offered a rating
    assert d1["rectification_rate"] == 1.0                 # no valid 差评: shown as 100% (as the seed does)
    assert b.issuer == "淄博市张店区政务服务管理办公室"
    notes = "\n".join(b.notes)
    assert "（非常满意×10＋满意×8＋基本满意×6＋不满意×3＋非常不满意×0）" in notes
    assert "满意率 = （非常满意＋满意）÷ 评价量" in notes and "排名按满意率" in notes
    assert "评价率 = 评价量 ÷ 邀评量" in notes
    # "stored": the invitations' one ratings in the store, uploaded or not; defaults from invitations.
    b = await make(district, "2026-06", "department", settings=BulletinSettings(ratings="stored"))
    d1 = by_name(b)["区行政审批服务局"]
    assert (d1["ratings"], d1["vs"], d1["excluded"], d1["defaults"]) == (6, 2, 1, 1)
    for bad in ({"weights": {"vs": 1}}, {"satisfied": ["great"]}, {"rank_by": "luck"}):
        with pytest.raises(ConfigError):
            parse_config({**raw, "bulletin": bad}, tmp_path)


async def test_csv_and_xlsx_read_back_match_the_json(district: District) -> None:
    b = await make(district, "2026-06", "clerk")
    data = b.to_json()
    cols = b.columns()
    rows = [*data["rows"], {**data["totals"], "name": "合计", "detail": "", "rank": None}]
    text = csv_bytes(b.table()).decode("utf-8-sig")
    got = list(csv.reader(io.StringIO(text)))
    assert got[0] == [c.header.replace("\n", "") for c in cols]
    assert got[1:] == [[c.display(r[c.key]) for c in cols] for r in rows]
    ws = load_workbook(io.BytesIO(xlsx_bytes(b.table())))["通报表"]
    assert ws["A1"].value == b.title and "统计周期：2026年6月1日至2026年6月30日" in ws["A2"].value
    assert [ws.cell(3, j + 1).value for j in range(len(cols))] == [c.header for c in cols]
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            v = ws.cell(4 + i, j + 1).value
            want = r[c.key]
            if isinstance(want, float):
                assert v == pytest.approx(want), (r["name"], c.key)
            else:
                assert v == (want if want != "" else None), (r["name"], c.key)
    charts = load_workbook(io.BytesIO(xlsx_bytes(b.table())))["图表"]._charts
    assert len(charts) == 3
    assert data["charts"][1]["title"] == "差评数（按部门）"


def write_config(tmp: Path, store_url: str, port: int = 0) -> Path:
    pg = store_url.startswith("postgresql://")
    lines = ["[store]", ('url = "%s"' % store_url) if pg else ('path = "%s"' % store_url), "", "[hall]"]
    lines += ["%s = %s" % (k, json.dumps(v, ensure_ascii=False)) for k, v in HALL.items()]
    lines += ["", "[bulletin]", 'issuer = "淄博市张店区政务服务管理办公室"']
    p = tmp / "gateway.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_cli_bulletin(tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def setup() -> None:
        d = await build(tmp_path, store_url)
        await d.s.db.close()

    # The CLI opens the store itself and reads the real 差评 work orders (complaint_figures): there
    # are none here (the stand-in outcomes are this module's; test_bulletin_complaints.py works them).
    asyncio.run(setup())
    cfg = write_config(tmp_path, store_url)
    code, out, _ = run(capsys, cfg, "bulletin", "--period", "2026-06", "--by", "town")
    assert code == 0 and "2026年6月各镇（街道）“好差评”评估通报表" in out and "淄博市张店区" in out
    assert "西城镇便民服务中心" in out and "合计" in out and "说明：" in out and "尚未接入差评工单" not in out
    code, out, _ = run(capsys, cfg, "--json", "bulletin", "--period", "2026-06")
    data = json.loads(out)
    assert code == 0 and data["totals"]["cases"] == 14 and data["complaints_wired"] is True
    assert data["totals"]["ratings"] == 10      # C8 not excluded: no work order excluded it
    x = tmp_path / "out" / "b.xlsx"
    code, _, err = run(capsys, cfg, "bulletin", "--period", "2026-06", "--by", "clerk", "--format", "xlsx",
                       "--out", str(x))
    assert code == 0 and x.exists() and "written to" in err
    assert load_workbook(x)["通报表"]["A1"].value == "2026年6月各工作人员“好差评”评估通报表"
    c = tmp_path / "b.csv"
    code, _, _ = run(capsys, cfg, "bulletin", "--period", "2026-06", "--format", "csv", "--out", str(c))
    assert code == 0 and c.read_bytes().startswith(b"\xef\xbb\xbf")
    for args, want, text in ((("bulletin", "--period", "2026-13"), 2, "period '2026-13'"),
                             (("bulletin", "--period", "Q2"), 2, "not understood"),
                             (("bulletin", "--period", "2026-06", "--by", "city"), 2, "city"),
                             (("bulletin", "--period", "2026-06", "--format", "xlsx"), 2, "needs --out"),
                             (("bulletin", "--period", "2026-06", "--hall", "nope"), 1, "unknown hall nope")):
        code, out, err = run(capsys, cfg, *args)
        assert code == want and text in err and "Traceback" not in err, (args, err)


@pytest.fixture
async def api(district: District) -> AsyncIterator[tuple[aiohttp.ClientSession, str, District]]:
    app = make_app(district.s.db, district.s.cfg, Recorder())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + ADMIN_TOKEN}) as http:
        yield http, "http://127.0.0.1:%d/api/v1" % runner.addresses[0][1], district
    await runner.cleanup()


async def test_api_bulletin(api: tuple[aiohttp.ClientSession, str, District]) -> None:
    http, base, d = api
    async with http.get(base + "/bulletins", params={"period": "2026-06", "by": "hall"}) as r:
        assert r.status == 200
        data = await r.json()
    assert data["title"] == "2026年6月各大厅“好差评”评估通报表" and data["totals"]["cases"] == 14
    assert {c["title"] for c in data["charts"]} == {"满意率走势", "差评数（按部门）", "评价率（按大厅）"}
    async with http.get(base + "/bulletins", params={"period": "2026-06", "format": "xlsx"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/vnd.openxmlformats")
        ws = load_workbook(io.BytesIO(await r.read()))["通报表"]
    assert ws["A1"].value == "2026年6月各部门“好差评”评估通报表"
    async with http.get(base + "/bulletins", params={"period": "2026-06", "format": "csv"}) as r:
        assert r.status == 200 and (await r.read()).startswith(b"\xef\xbb\xbf")
    for params, code in (({"period": "June"}, "bad_period"), ({}, "missing_field"),
                         ({"period": "2026-06", "by": "x"}, "bad_group"),
                         ({"period": "2026-06", "format": "pdf"}, "bad_format")):
        async with http.get(base + "/bulletins", params=params) as r:
            assert r.status == 400 and (await r.json())["error"] == code
    async with http.get(base + "/bulletins", params={"period": "2026-06"},
                        headers={"Authorization": "Bearer " + WINDOW_TOKEN}) as r:
        assert r.status == 401


async def test_an_excluded_rating_leaves_the_trend_too(district: District) -> None:
    def on_25th(b: bulletin.Bulletin) -> float | None:
        trend = b.charts[0]
        return dict(zip(trend.categories, trend.series[0].values, strict=True))["2026-06-25"]

    assert on_25th(await make(district, "2026-06", "department")) is None
    rid = await district.rate("dev-1", "A01", "C40", "vs", t(2026, 6, 25, 10))
    assert on_25th(await make(district, "2026-06", "department")) == 1.0
    district.outcomes.by_record[rid] = RatingOutcome(rid, excluded=True)
    after = await make(district, "2026-06", "department")
    assert on_25th(after) is None
    d1 = by_name(after)["区行政审批服务局"]
    assert (d1["ratings"], d1["excluded"], d1["vs"]) == (5, 2, 1)
