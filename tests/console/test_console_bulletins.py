"""The console's bulletins and supervision findings over HTTP, on both backends: the period
picker (quarter, month, week, range), group by, the table and the charts from the same
bulletin the CLI, the API and the XLSX use, the CSV/XLSX downloads read back, and the
refusals (roles, scopes, bad periods)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from html import unescape
from zoneinfo import ZoneInfo

import openpyxl
from console_support import App, add_record, bad_rating

from gateway.bulletin import make_bulletin
from gateway.clock import now_ms
from gateway.export import csv_bytes
from gateway.periods import parse_period


def _month() -> str:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")


async def _ratings(app: App) -> None:
    for dev, grade in (("dev-1", "vd"), ("dev-1", "vs"), ("dev-2", "s"), ("dev-3", "vs")):
        await bad_rating(app.store, app.cfg, dev, grade)


def _totals(html: str) -> list[str]:
    row = re.search(r'<tr id="b-totals">(.*?)</tr>', html, re.S)
    assert row
    return [unescape(x) for x in re.findall(r"<th>(.*?)</th>", row.group(1))]


def _headers(html: str) -> list[str]:
    head = re.search(r'<table id="bulletin">\s*<thead><tr>(.*?)</tr>', html, re.S)
    assert head
    return re.findall(r"<th>(.*?)</th>", head.group(1))


async def test_bulletin_table_charts_and_downloads(app: App) -> None:
    await _ratings(app)
    sup = await app.client("super")
    q = "kind=month&month=%s&by=department" % _month()
    status, text, _ = await sup.get("/bulletins?" + q)
    assert status == 200 and "各部门“好差评”评估通报表" in text and "测试区政务服务管理办公室" in text
    b = await make_bulletin(app.store, app.cfg, parse_period(_month()), "department")
    t = b.table()
    assert t.totals is not None
    totals = _totals(text)
    assert totals == [c.display(t.totals.get(c.key)) for c in t.columns]
    col = {h: i for i, h in enumerate(_headers(text))}
    assert totals[col["评价量"]] == "4" and totals[col["差评"]] == "1" and totals[col["非常满意"]] == "2"
    # The charts: the bulletin's own data (what the XLSX's charts are made of), for ECharts.
    charts = [json.loads(unescape(x)) for x in re.findall(r"data-chart-data='([^']*)'", text)]
    assert charts == [c.to_json() for c in b.charts]
    assert [c["title"] for c in charts] == ["满意率走势", "差评数（按部门）", "评价率（按大厅）"]
    assert len(re.findall(r"data-chart-option='", text)) == 3
    # The downloads: the same bytes the API and the CLI make.
    async with sup.http.get(app.base + "/bulletins/download.csv?" + q) as r:
        body = await r.read()
        name = "bulletin-%s-department.csv" % _month()
        assert r.headers["Content-Disposition"] == 'attachment; filename="%s"' % name
    assert body == csv_bytes(t)
    async with sup.http.get(app.base + "/bulletins/download.xlsx?" + q) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/vnd.openxmlformats")
        data = await r.read()
    ws = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    cells = [[c.value for c in row] for row in ws.iter_rows()]
    head = next(r for r in cells if "评价量" in r)
    xt = next(r for r in cells if r and r[0] == "合计")
    assert xt[head.index("评价量")] == 4 and xt[head.index("差评")] == 1
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert len([n for n in z.namelist() if n.startswith("xl/charts/chart")]) == 3


async def test_periods_and_groups(app: App) -> None:
    await _ratings(app)
    sup = await app.client("super")
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    quarter = "%d-Q%d" % (now.year, (now.month - 1) // 3 + 1)
    week = "%d-W%02d" % now.isocalendar()[:2]
    for q, label in (("kind=quarter&quarter=" + quarter, "季度"), ("kind=week&week=" + week, "周"),
                     ("kind=range&from=%s&to=%s" % (now.replace(day=1), now), "至"),
                     ("period=" + _month(), "月")):
        status, text, _ = await sup.get("/bulletins?" + q)
        assert status == 200 and label in text, q
        assert _totals(text)[_headers(text).index("评价量")] == "4", q
    for by, title in (("hall", "各大厅"), ("town", "各镇（街道）"), ("window", "各窗口"),
                      ("clerk", "各工作人员"), ("item", "各事项")):
        status, text, _ = await sup.get("/bulletins?kind=month&month=%s&by=%s" % (_month(), by))
        assert status == 200 and title in text, by
    _, text, _ = await sup.get("/bulletins?kind=month&month=%s&by=window" % _month())
    assert "A01 综合窗口" in text and "B01 税务窗口" in text
    # Bad input: a clear error, in Chinese.
    for q in ("kind=decade", "kind=quarter&quarter=2026-Q9", "kind=range&from=2020-01-01&to=2026-01-01",
              "kind=range&from=2026-06-30&to=2026-06-01", "kind=month&month=2026-13", "by=planet",
              "period=" + "9" * 40, "hall=nope"):
        status, text, _ = await sup.get("/bulletins?" + q)
        assert status == 400 and ("统计周期" in text or "分组" in text or "大厅" in text), q
        assert (await sup.get("/bulletins/download.xlsx?" + q))[0] == 400, q


async def test_bulletin_roles_and_scopes(app: App) -> None:
    await _ratings(app)
    q = "/bulletins?kind=month&month=" + _month()
    for name, status in (("admin", 200), ("super", 200), ("viewer", 200), ("liaison", 403), ("admin_b", 403)):
        c = await app.client(name)
        assert (await c.get(q))[0] == status, name
        assert (await c.get(q.replace("/bulletins?", "/bulletins/download.csv?")))[0] == status, name
    h2 = await app.client("admin_h2")      # scoped to hall-2: hall-1's bulletin is not theirs
    status, text, _ = await h2.get(q + "&hall=hall-1")
    assert status == 403 and "不在您的管理范围内" in text
    # The menu shows the pages a role has.
    _, text, _ = await (await app.client("liaison")).get("/")
    assert 'href="/complaints"' in text and 'href="/bulletins"' not in text
    assert 'href="/supervision"' not in text
    _, text, _ = await (await app.client("super")).get("/")
    assert 'href="/bulletins"' in text and 'href="/supervision"' in text


async def test_supervision_findings(app: App) -> None:
    # Three walk-up presses of one clerk (no invitation): a finding with its evidence rows.
    t = now_ms()
    for i in range(3):
        await add_record(app.store, app.cfg, "dev-2", t - 60_000 * (i + 1), "vs", "walkup")
    sup = await app.client("super")
    status, text, _ = await sup.get("/supervision?kind=month&month=" + _month())
    assert status == 200 and "数据质量监督发现" in text
    assert 'data-kind="walkup"' in text and "无邀请评价" in text and "dev-2" in text
    assert len(re.findall(r'data-kind="walkup"', text)) == 1
    _, text, _ = await sup.get("/supervision?kind=month&month=%s&finding=burst" % _month())
    assert 'data-kind="walkup"' not in text
    for name, status in (("admin", 200), ("viewer", 403), ("liaison", 403), ("admin_b", 403)):
        assert (await (await app.client(name)).get("/supervision"))[0] == status, name
    for q in ("kind=range&from=2026-01-01&to=2026-06-30", "finding=nope", "kind=month&month=bad"):
        status, text, _ = await sup.get("/supervision?" + q)
        assert status == 400, q
