"""Bulletin export: the XLSX read back with openpyxl cell by cell, the CSV read back with csv."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest
from openpyxl import load_workbook

from gateway.export import (
    ChartSpec,
    Column,
    ColumnKind,
    ExportSettings,
    ExportSettingsError,
    Series,
    Table,
    competition_ranks,
    csv_bytes,
    display_width,
    write_table,
    xlsx_bytes,
)

K = ColumnKind
COLUMNS = (
    Column("dept", "单位名称", K.TEXT),
    Column("cases", "办件量", K.INTEGER),
    Column("ratings", "评价量", K.INTEGER),
    Column("rating_rate", "评价率", K.PERCENT),
    Column("vs", "非常满意", K.INTEGER),
    Column("s", "满意", K.INTEGER),
    Column("bs", "基本满意", K.INTEGER),
    Column("d", "不满意", K.INTEGER),
    Column("vd", "非常不满意", K.INTEGER),
    Column("bad", "差评", K.INTEGER),
    Column("valid_bad", "有效差评", K.INTEGER),
    Column("rectified", "已整改", K.INTEGER),
    Column("rect_rate", "整改率", K.PERCENT),
    Column("sat_rate", "满意率", K.PERCENT),
    Column("score", "综合得分", K.DECIMAL, decimals=2),
    Column("rank", "排名", K.INTEGER),
)

_DEPTS = [  # name, cases, vs, s, bs, d, vd, valid, rectified
    ("区行政审批服务局", 21034, 20101, 650, 120, 2, 1, 0, 0),
    ("区人力资源和社会保障局", 18850, 18002, 700, 140, 1, 0, 0, 0),
    ("区医疗保障局", 15012, 14500, 400, 95, 0, 0, 0, 0),
    ("区不动产登记中心", 12990, 12400, 480, 100, 1, 1, 1, 1),
    ("区市场监督管理局", 9800, 9400, 300, 90, 0, 0, 0, 0),
]
WEIGHTS = {"vs": 100, "s": 75, "bs": 50, "d": 25, "vd": 0}


def _row(name: str, cases: int, vs: int, s: int, bs: int, d: int, vd: int, valid: int,
         rect: int) -> dict[str, str | int | float | None]:
    ratings = vs + s + bs + d + vd
    score = (vs * 100 + s * 75 + bs * 50 + d * 25) / ratings
    return {"dept": name, "cases": cases, "ratings": ratings, "rating_rate": ratings / cases,
            "vs": vs, "s": s, "bs": bs, "d": d, "vd": vd, "bad": d + vd, "valid_bad": valid,
            "rectified": rect, "rect_rate": (rect / valid) if valid else None,
            "sat_rate": (vs + s + bs) / ratings, "score": round(score, 2)}


def bulletin() -> Table:
    rows = [_row(*d) for d in _DEPTS]
    for r, rank in zip(rows, competition_ranks([r["score"] for r in rows]), strict=True):  # type: ignore[misc]
        r["rank"] = rank
    tot: dict[str, str | int | float | None] = {
        k: sum(int(r[k]) for r in rows)  # type: ignore[arg-type]
        for k in ("cases", "ratings", "vs", "s", "bs", "d", "vd", "bad", "valid_bad", "rectified")}
    tot["rating_rate"] = int(tot["ratings"]) / int(tot["cases"])  # type: ignore[arg-type]
    tot["sat_rate"] = (int(tot["vs"]) + int(tot["s"]) + int(tot["bs"])) / int(tot["ratings"])  # type: ignore[arg-type]
    tot["rect_rate"] = 1.0
    trend = ChartSpec("line", "满意率走势", ("2026-04", "2026-05", "2026-06"),
                      (Series("满意率", (0.9991, 0.9995, 0.9998)),), y_title="满意率", percent=True)
    by_dept = ChartSpec("bar", "差评数（按部门）", tuple(d[0] for d in _DEPTS),
                        (Series("差评", tuple(float(r["bad"]) for r in rows)),  # type: ignore[arg-type]
                         Series("有效差评", tuple(float(r["valid_bad"]) for r in rows))))  # type: ignore[arg-type]
    by_hall = ChartSpec("bar", "评价率（按大厅）", ("区政务服务中心", "马尚街道", "中埠镇"),
                        (Series("评价率", (0.97, 0.81, None)),), percent=True)
    return Table(
        title="2026年第二季度各部门“好差评”评估通报表",
        issuer="淄博市张店区政务服务管理办公室",
        period_label="2026年4月1日至2026年6月30日（Asia/Shanghai）",
        columns=COLUMNS, rows=tuple(rows), totals=tot,
        notes=("评价率 = 评价量 ÷ 办件量（已撤件不计入办件量）。",
               "满意率 = （非常满意 + 满意 + 基本满意）÷ 评价量。",
               "综合得分 = Σ 各等级评价数 × 权重 ÷ 评价量，权重 非常满意 100、满意 75、基本满意 50、"
               "不满意 25、非常不满意 0；系统默认评价与经复核剔除的评价另行统计，不计入本表。"),
        charts=(trend, by_dept, by_hall),
    )


def test_ranks_share_places() -> None:
    assert competition_ranks([90.0, 95.0, 90.0, None, 80.0]) == [2, 1, 2, None, 4]
    assert competition_ranks([3.0, 1.0, 2.0], descending=False) == [3, 1, 2]


def test_xlsx_reads_back_cell_by_cell(tmp_path: Path) -> None:
    t = bulletin()
    wb = load_workbook(io.BytesIO(xlsx_bytes(t)))
    ws = wb["通报表"]
    last = "P"
    assert ws["A1"].value == t.title
    assert ws["A2"].value == f"统计周期：{t.period_label}　　发布单位：{t.issuer}"
    merged = {str(r) for r in ws.merged_cells.ranges}
    assert {f"A1:{last}1", f"A2:{last}2"} <= merged
    assert [ws.cell(3, j).value for j in range(1, 17)] == [c.header for c in COLUMNS]
    for i, row in enumerate(t.rows):
        for j, col in enumerate(COLUMNS, start=1):
            cell = ws.cell(4 + i, j)
            assert cell.value == row.get(col.key), (i, col.key)
            if col.kind is not K.TEXT:
                assert cell.number_format == col.number_format
    assert ws.cell(4, 4).number_format == "0.00%" and ws.cell(4, 15).number_format == "0.00"
    tot_row = 4 + len(t.rows)
    assert t.totals is not None
    assert ws.cell(tot_row, 1).value == "合计"
    for j, col in enumerate(COLUMNS[1:], start=2):
        assert ws.cell(tot_row, j).value == t.totals.get(col.key), col.key
    assert ws.cell(tot_row, 1).font.b
    # The notes, below a blank row, each merged across the table.
    assert ws.cell(tot_row + 1, 1).value is None
    assert [ws.cell(tot_row + 2 + k, 1).value for k in range(4)] == ["说明：", *t.notes]
    assert f"A{tot_row + 2}:{last}{tot_row + 2}" in merged
    assert ws.max_row == tot_row + 5
    # Frozen below the header and right of the names; header repeated on printed pages.
    assert ws.freeze_panes == "B4"
    assert ws.print_title_rows == "$3:$3"
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.paperSize == 9  # A4
    # Widths fit the longest Chinese name (two units per character).
    assert ws.column_dimensions["A"].width >= display_width("区人力资源和社会保障局")
    assert ws["A1"].font.name == "黑体" and ws["A4"].font.name == "宋体"


def test_xlsx_matches_the_json() -> None:
    t = bulletin()
    doc = json.loads(json.dumps(t.to_json(), ensure_ascii=False))
    ws = load_workbook(io.BytesIO(xlsx_bytes(t)))["通报表"]
    keys = [c["key"] for c in doc["columns"]]
    for i, row in enumerate(doc["rows"]):
        assert [ws.cell(4 + i, j + 1).value for j in range(len(keys))] == [row.get(k) for k in keys]


def test_native_charts_with_their_data() -> None:
    t = bulletin()
    data = xlsx_bytes(t)
    ws = load_workbook(io.BytesIO(data))["图表"]
    # Printed on one landscape page (fit to width and height): no chart's foot on a page of its own.
    assert ws.page_setup.orientation == "landscape"
    assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 1)
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    # Each chart's data block: title, header, one row per category.
    col_a = [c.value for c in ws["A"]]
    for spec in t.charts:
        top = col_a.index(spec.title) + 1
        names = [ws.cell(top + 1, 2 + k).value for k in range(len(spec.series))]
        assert names == [s.name for s in spec.series]
        for i, cat in enumerate(spec.categories):
            assert ws.cell(top + 2 + i, 1).value == cat
            for k, s in enumerate(spec.series):
                assert ws.cell(top + 2 + i, 2 + k).value == s.values[i]
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = sorted(n for n in z.namelist() if n.startswith("xl/charts/chart"))
        roots = [ElementTree.fromstring(z.read(n)) for n in names]
    assert len(roots) == 3
    C = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
    A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
    kinds = [("line" if r.find(f".//{C}lineChart") is not None else
              "bar" if r.find(f".//{C}barChart") is not None else "?") for r in roots]
    assert kinds == [c.kind for c in t.charts]
    for r, spec in zip(roots, t.charts, strict=True):
        title = "".join(x.text or "" for x in r.findall(f"./{C}chart/{C}title//{A}t"))
        assert title == spec.title
        deletes = [d.get("val") for d in r.findall(f".//{C}delete")]
        assert deletes and set(deletes) == {"0"}  # axes shown (openpyxl's default hides them in Excel)
        if spec.kind == "bar":  # bars start at zero (and a rate's bars end at 100%)
            assert r.find(f".//{C}valAx/{C}scaling/{C}min").get("val") == "0"  # type: ignore[union-attr]
            if spec.percent:
                assert r.find(f".//{C}valAx/{C}scaling/{C}max").get("val") == "1"  # type: ignore[union-attr]
        else:  # measured points joined by straight lines, not a fitted curve
            assert {x.get("val") for x in r.findall(f".//{C}ser/{C}smooth")} == {"0"}
        refs = [f.text or "" for f in r.findall(f".//{C}val//{C}f")]
        assert len(refs) == len(spec.series) and all(x.startswith("'图表'!$B$") or
                                                     x.startswith("'图表'!$C$") for x in refs), refs


def test_csv_has_bom_and_reads_back() -> None:
    t = bulletin()
    raw = csv_bytes(t)
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == [c.header for c in COLUMNS]
    assert len(rows) == 1 + len(t.rows) + 1
    for model, got in zip(t.rows, rows[1:], strict=False):
        for col, text in zip(COLUMNS, got, strict=True):
            v = model.get(col.key)
            if v is None:
                assert text == ""
            elif col.kind is K.TEXT:
                assert text == v
            elif col.kind is K.INTEGER:
                assert int(text) == v
            elif col.kind is K.PERCENT:
                assert text.endswith("%") and abs(float(text[:-1]) / 100 - float(v)) <= 0.00005
            else:
                assert abs(float(text) - float(v)) <= 0.005
    assert rows[-1][0] == "合计" and rows[-1][1] == str(sum(d[1] for d in _DEPTS))
    assert raw.count(b"\r\n") == len(rows)
    assert csv_bytes(t, ExportSettings(csv_bom=False))[:3] != b"\xef\xbb\xbf"


def test_text_that_looks_like_a_formula_stays_text() -> None:
    t = Table("t", "", "p", (Column("name", "名称"), Column("n", "数", K.INTEGER)),
              ({"name": "=HYPERLINK(\"http://x\",\"点我\")", "n": -3}, {"name": "+86 热线", "n": 1}))
    ws = load_workbook(io.BytesIO(xlsx_bytes(t)))["通报表"]
    assert ws["A4"].value == "=HYPERLINK(\"http://x\",\"点我\")" and ws["A4"].data_type == "s"
    rows = list(csv.reader(io.StringIO(csv_bytes(t).decode("utf-8-sig"))))
    assert rows[1] == ["'=HYPERLINK(\"http://x\",\"点我\")", "-3"]
    assert rows[2] == ["'+86 热线", "1"]


def test_bad_tables_are_refused() -> None:
    cols = (Column("name", "名称"), Column("n", "数", K.INTEGER))
    with pytest.raises(ValueError, match=r"row 1: unknown column\(s\) \['x'\]"):
        Table("t", "", "p", cols, ({"name": "a", "x": 1},))
    with pytest.raises(ValueError, match="row 2: column 'n' takes integers"):
        Table("t", "", "p", cols, ({"n": 1}, {"n": 1.5}))
    with pytest.raises(ValueError, match="finite"):
        Table("t", "", "p", (Column("r", "率", K.PERCENT),), ({"r": float("nan")},))
    with pytest.raises(ValueError, match="has 1 values for 2 categories"):
        ChartSpec("bar", "c", ("a", "b"), (Series("s", (1.0,)),))
    with pytest.raises(ValueError, match="sheet name"):
        Table("t", "", "p", cols, (), sheet_name="a/b")


async def test_write_table_files(tmp_path: Path) -> None:
    t = bulletin()
    x = await write_table(t, tmp_path / "out" / "bulletin.xlsx", "xlsx")
    c = await write_table(t, tmp_path / "out" / "bulletin.csv", "csv")
    assert load_workbook(x)["通报表"]["A1"].value == t.title
    assert c.read_bytes() == csv_bytes(t)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bulletin.csv", "bulletin.xlsx"]
    with pytest.raises(ValueError, match="csv or xlsx"):
        await write_table(t, tmp_path / "b.pdf", "pdf")


def test_settings() -> None:
    s = ExportSettings.from_mapping({"font": "仿宋", "paper": "A3", "landscape": False})
    assert (s.font, s.paper, s.landscape) == ("仿宋", "A3", False)
    ws = load_workbook(io.BytesIO(xlsx_bytes(bulletin(), s)))["通报表"]
    assert ws.page_setup.paperSize == 8  # A3 and ws.page_setup.orientation == "portrait"
    with pytest.raises(ExportSettingsError) as e:
        ExportSettings.from_mapping({"paper": "B5", "csv_bom": 1, "fnt": "x"})
    msg = str(e.value)
    # Checked by the gateway's one config schema (gateway/config.py: SCHEMA["export"]).
    assert "paper must be one of A4, A3" in msg and "csv_bom must be true or false, got 1" in msg
    assert "unknown key fnt (did you mean font?)" in msg and "\n" not in msg
