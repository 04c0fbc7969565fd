"""Bulletin tables as an office's attachment: XLSX (openpyxl, native charts) and CSV.

The caller (the bulletin service) builds a :class:`Table`: title, issuing office, period, typed
columns with Chinese headers, rows, a totals row, ranks, notes (the formulas used) and optional
:class:`ChartSpec` charts. This module only lays it out:

XLSX: one sheet in the shape of the seed's attachments (a merged title row, a merged line with
the period and the issuing office, the header, the rows, the totals row, then the notes), frozen
below the header, column widths measured for Chinese text, printed landscape on A4 with the
header repeated on every page; charts go to a second sheet ``图表`` as native Excel charts over
data written beside them (they stay editable in Excel and WPS).

CSV: the header, the rows and the totals row only (no title lines, so any tool reads it as a
table), values as displayed in the XLSX (``98.50%``), UTF-8 *with* a byte-order mark: Excel and
WPS on Chinese Windows open a CSV without one in the ANSI code page (GBK) and garble every
Chinese character; with the BOM they read UTF-8. Text that a spreadsheet would take for a
formula (starting with ``= + - @``) is prefixed with ``'`` (CSV injection).
"""

from __future__ import annotations

import asyncio
import csv
import enum
import io
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpyxl.worksheet.worksheet import Worksheet
# openpyxl (and the Pillow it pulls in) is imported where an XLSX is written, not with this
# module: the service and the CLI import the bulletin's tables without ever writing one.

from gateway.sectioncheck import SettingsError

__all__ = [
    "ColumnKind", "Column", "Series", "ChartSpec", "Table", "ExportSettings", "ExportSettingsError",
    "competition_ranks", "csv_bytes", "xlsx_bytes", "write_table", "TOTALS_LABEL",
]

Cell = str | int | float | None
TOTALS_LABEL = "合计"
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ColumnKind(enum.StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    PERCENT = "percent"  # a fraction: 0.985 is shown 98.50%


@dataclass(frozen=True)
class Column:
    key: str
    header: str  # Chinese, may contain "\n" for a two-line header
    kind: ColumnKind = ColumnKind.TEXT
    decimals: int = 2
    width: float | None = None  # in Excel character units; None = measured from the content

    @property
    def number_format(self) -> str:
        if self.kind is ColumnKind.TEXT:
            return "@"
        if self.kind is ColumnKind.INTEGER:
            return "0"
        frac = ("." + "0" * self.decimals) if self.decimals else ""
        return f"0{frac}%" if self.kind is ColumnKind.PERCENT else f"0{frac}"

    def display(self, v: Cell) -> str:
        """The value as the XLSX shows it (and as the CSV carries it)."""
        if v is None:
            return ""
        if self.kind is ColumnKind.TEXT:
            s = str(v)
            return "'" + s if s.startswith(_FORMULA_START) else s
        if self.kind is ColumnKind.INTEGER:
            return str(int(v))
        assert not isinstance(v, str)
        if self.kind is ColumnKind.PERCENT:
            return f"{v * 100:.{self.decimals}f}%"
        return f"{v:.{self.decimals}f}"

    def check(self, v: object, where: str) -> None:
        if v is None:
            return
        if self.kind is ColumnKind.TEXT:
            if not isinstance(v, str | int):
                raise ValueError(f"{where}: column '{self.key}' is text, not {type(v).__name__}")
        elif self.kind is ColumnKind.INTEGER:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{where}: column '{self.key}' takes integers, not {v!r}")
        elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{where}: column '{self.key}' takes finite numbers, not {v!r}")


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class ChartSpec:
    """A chart with its own data (so the web console can draw the same from :meth:`to_json`)."""

    kind: str  # "line" (a trend) or "bar"
    title: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    y_title: str = ""
    x_title: str = ""
    percent: bool = False  # values are fractions, shown as percentages

    def __post_init__(self) -> None:
        if self.kind not in ("line", "bar"):
            raise ValueError(f"chart '{self.title}': kind must be line or bar, not {self.kind!r}")
        if not self.series:
            raise ValueError(f"chart '{self.title}': no series")
        for s in self.series:
            if len(s.values) != len(self.categories):
                raise ValueError(f"chart '{self.title}': series '{s.name}' has {len(s.values)} values "
                                 f"for {len(self.categories)} categories")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "categories": list(self.categories),
                "series": [{"name": s.name, "values": list(s.values)} for s in self.series],
                "y_title": self.y_title, "x_title": self.x_title, "percent": self.percent}


@dataclass(frozen=True)
class Table:
    title: str          # e.g. 2026年第二季度各部门“好差评”评估通报表
    issuer: str         # the issuing office, e.g. 淄博市张店区政务服务管理办公室
    period_label: str   # e.g. 2026年4月1日至6月30日
    columns: tuple[Column, ...]
    rows: tuple[Mapping[str, Cell], ...]
    totals: Mapping[str, Cell] | None = None
    notes: tuple[str, ...] = ()     # e.g. the formulas: 评价率 = 评价量 ÷ 办件量
    charts: tuple[ChartSpec, ...] = ()
    sheet_name: str = "通报表"
    extra: Mapping[str, Any] = field(default_factory=dict)  # carried into to_json only

    def __post_init__(self) -> None:
        keys = [c.key for c in self.columns]
        if not keys:
            raise ValueError("a table needs at least one column")
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate column keys in {keys}")
        if not self.sheet_name or len(self.sheet_name) > 31 or _SHEET_BAD.search(self.sheet_name):
            raise ValueError(f"sheet name {self.sheet_name!r}: 1-31 characters, none of []:*?/\\")
        known = set(keys)
        cols = {c.key: c for c in self.columns}
        labelled = [("row", i + 1, r) for i, r in enumerate(self.rows)]
        if self.totals is not None:
            labelled.append(("totals", 0, self.totals))
        for what, i, row in labelled:
            where = f"{what} {i}" if i else what
            extra = set(row) - known
            if extra:
                raise ValueError(f"{where}: unknown column(s) {sorted(extra)}")
            for k, v in row.items():
                cols[k].check(v, where)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "issuer": self.issuer, "period": self.period_label,
            "columns": [{"key": c.key, "header": c.header, "kind": c.kind.value,
                         "decimals": c.decimals} for c in self.columns],
            "rows": [dict(r) for r in self.rows],
            "totals": dict(self.totals) if self.totals is not None else None,
            "notes": list(self.notes), "charts": [c.to_json() for c in self.charts],
            **dict(self.extra),
        }

    def totals_cells(self) -> list[Cell]:
        """The totals row as cells, with 合计 in the first column unless the caller set it."""
        assert self.totals is not None
        cells: list[Cell] = [self.totals.get(c.key) for c in self.columns]
        if cells[0] is None:
            cells[0] = TOTALS_LABEL
        return cells


def competition_ranks(values: Sequence[float | None], *, descending: bool = True) -> list[int | None]:
    """Ranks with ties sharing a place and the next place skipped (1, 2, 2, 4); None stays unranked."""
    present = [v for v in values if v is not None]
    out: list[int | None] = []
    for v in values:
        if v is None:
            out.append(None)
        else:
            better = sum(1 for w in present if (w > v if descending else w < v))
            out.append(better + 1)
    return out


# --- settings ------------------------------------------------------------------------------

class ExportSettingsError(SettingsError):
    """The [export] section is wrong; the message (one line) names every problem."""


@dataclass(frozen=True)
class ExportSettings:
    """The ``[export]`` section."""

    font: str = "宋体"          # body font (present in Windows, WPS and LibreOffice's CJK sets)
    title_font: str = "黑体"
    paper: str = "A4"           # A4 | A3
    landscape: bool = True
    csv_bom: bool = True        # see the module docstring before turning it off
    freeze_first_column: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> ExportSettings:
        """From the gateway's config: [export] was checked against config.SCHEMA (types,
        choices, unknown keys) with every other section; only what the schema cannot say is
        checked here."""
        from gateway.config import ConfigError
        sec = cfg.raw.get("export", {})
        for key in ("font", "title_font"):
            if key in sec and not sec[key].strip():
                raise ConfigError("[export] %s must not be empty" % key)
        return cls(**{k: sec[k] for k in cls.__dataclass_fields__ if k in sec})

    @classmethod
    def from_mapping(cls, data: object) -> ExportSettings:
        """A bare [export] table (outside a gateway config): checked by the same schema."""
        from gateway.config import SCHEMA, ConfigError, check_schema
        if not isinstance(data, Mapping):
            raise ExportSettingsError("export", ["must be a table"])
        problems = [p.removeprefix("[export] ") for p in check_schema({"export": dict(data)})]
        spec = SCHEMA["export"]
        problems += ["%s must not be empty" % k for k in ("font", "title_font")
                     if isinstance(data.get(k), str) and not data[k].strip() and k in spec]
        if problems:
            raise ExportSettingsError("export", problems)
        try:
            return cls.from_config(_Raw({"export": dict(data)}))
        except ConfigError as e:  # pragma: no cover - the checks above cover it
            raise ExportSettingsError("export", [str(e)]) from None


@dataclass(frozen=True)
class _Raw:
    raw: Mapping[str, Any]


# --- CSV -----------------------------------------------------------------------------------

def csv_bytes(table: Table, settings: ExportSettings | None = None) -> bytes:
    s = settings or ExportSettings()
    buf = io.StringIO(newline="")
    w = csv.writer(buf)  # RFC 4180 quoting, CRLF line ends (what Excel writes)
    w.writerow([c.header.replace("\n", "") for c in table.columns])
    for r in table.rows:
        w.writerow([c.display(r.get(c.key)) for c in table.columns])
    if table.totals is not None:
        w.writerow([c.display(v) for c, v in zip(table.columns, table.totals_cells(), strict=True)])
    return buf.getvalue().encode("utf-8-sig" if s.csv_bom else "utf-8")


# --- XLSX ----------------------------------------------------------------------------------

TITLE_ROW, PERIOD_ROW, HEADER_ROW, FIRST_DATA_ROW = 1, 2, 3, 4


def display_width(text: str) -> float:
    """Width in Excel character units: CJK and full-width characters take two."""
    longest = 0.0
    for line in text.split("\n"):
        w = sum(2.0 if unicodedata.east_asian_width(ch) in ("W", "F") else 1.0 for ch in line)
        longest = max(longest, w)
    return longest


def xlsx_bytes(table: Table, settings: ExportSettings | None = None) -> bytes:
    from openpyxl import Workbook
    s = settings or ExportSettings()
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = table.sheet_name
    _write_table(ws, table, s)
    if table.charts:
        _write_charts(wb.create_sheet("图表"), table, s)
    wb.properties.title = table.title
    wb.properties.creator = table.issuer or "haochaping"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _set(ws: Worksheet, row: int, col: int, v: Cell, column: Column | None = None) -> Any:
    cell = ws.cell(row=row, column=col)
    cell.value = v
    if isinstance(v, str):
        cell.data_type = "s"  # a name starting with "=" stays text, never becomes a formula
    if column is not None and column.kind is not ColumnKind.TEXT:
        cell.number_format = column.number_format
    return cell


def _write_table(ws: Worksheet, t: Table, s: ExportSettings) -> None:
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.properties import PageSetupProperties
    thin = Side(style="thin", color="000000")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    header_fill = PatternFill("solid", fgColor="D9E1F2")
    totals_fill = PatternFill("solid", fgColor="F2F2F2")
    ncol = len(t.columns)
    last = get_column_letter(ncol)
    body = Font(name=s.font, size=11)
    bold = Font(name=s.font, size=11, bold=True)

    title = _set(ws, TITLE_ROW, 1, t.title)
    title.font = Font(name=s.title_font, size=16, bold=True)
    title.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    ws.merge_cells(f"A{TITLE_ROW}:{last}{TITLE_ROW}")
    ws.row_dimensions[TITLE_ROW].height = 36

    parts = [f"统计周期：{t.period_label}"] + ([f"发布单位：{t.issuer}"] if t.issuer else [])
    period = _set(ws, PERIOD_ROW, 1, "　　".join(parts))
    period.font = body
    period.alignment = Alignment(horizontal="center", vertical="center")
    ws.merge_cells(f"A{PERIOD_ROW}:{last}{PERIOD_ROW}")
    ws.row_dimensions[PERIOD_ROW].height = 22

    widths = [display_width(c.header) for c in t.columns]
    for j, c in enumerate(t.columns, start=1):
        cell = _set(ws, HEADER_ROW, j, c.header)
        cell.font = bold
        cell.fill = header_fill
        cell.border = border
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    lines = max(c.header.count("\n") + 1 for c in t.columns)
    ws.row_dimensions[HEADER_ROW].height = max(30, 16 * lines + 8)

    rows: list[tuple[list[Cell], bool]] = [([r.get(c.key) for c in t.columns], False) for r in t.rows]
    if t.totals is not None:
        rows.append((t.totals_cells(), True))
    for i, (cells, is_total) in enumerate(rows):
        rownum = FIRST_DATA_ROW + i
        for j, (c, v) in enumerate(zip(t.columns, cells, strict=True), start=1):
            cell = _set(ws, rownum, j, v, c)
            cell.font = bold if is_total else body
            cell.border = border
            if is_total:
                cell.fill = totals_fill
            centred = c.kind is not ColumnKind.TEXT or j > 1 or is_total
            cell.alignment = Alignment(horizontal="center" if centred else "left",
                                       vertical="center", wrap_text=c.kind is ColumnKind.TEXT)
            widths[j - 1] = max(widths[j - 1], display_width(c.display(v)))
        ws.row_dimensions[rownum].height = 20

    for j, c in enumerate(t.columns, start=1):
        w = c.width if c.width is not None else min(max(widths[j - 1] + 2.5, 6.0), 40.0)
        ws.column_dimensions[get_column_letter(j)].width = w

    if t.notes:
        nrow = FIRST_DATA_ROW + len(rows) + 1
        total_width = sum(ws.column_dimensions[get_column_letter(j)].width or 8.43
                          for j in range(1, ncol + 1))
        for k, note in enumerate(("说明：", *t.notes)):
            cell = _set(ws, nrow + k, 1, note)
            cell.font = bold if k == 0 else body
            cell.alignment = Alignment(horizontal="left", vertical="top", wrap_text=True)
            ws.merge_cells(f"A{nrow + k}:{last}{nrow + k}")
            est_lines = max(1, math.ceil(display_width(note) / max(total_width - 2, 10)))
            ws.row_dimensions[nrow + k].height = 18 * est_lines + 2

    ws.freeze_panes = f"{'B' if s.freeze_first_column and ncol > 1 else 'A'}{FIRST_DATA_ROW}"
    ws.print_title_rows = f"{HEADER_ROW}:{HEADER_ROW}"
    ws.page_setup.orientation = "landscape" if s.landscape else "portrait"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4 if s.paper == "A4" else ws.PAPERSIZE_A3
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.print_options.horizontalCentered = True


def _write_charts(ws: Worksheet, t: Table, s: ExportSettings) -> None:
    """Each chart's data as a small table in columns A.., the native chart to its right."""
    from openpyxl.chart import BarChart, LineChart, Reference
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.properties import PageSetupProperties
    body = Font(name=s.font, size=11)
    bold = Font(name=s.font, size=11, bold=True)
    row = 1
    for spec in t.charts:
        _set(ws, row, 1, spec.title).font = bold
        header = row + 1
        _set(ws, header, 1, spec.x_title or "类别").font = bold
        for k, ser in enumerate(spec.series, start=2):
            _set(ws, header, k, ser.name).font = bold
        fmt = "0.00%" if spec.percent else "General"
        for i, cat in enumerate(spec.categories, start=1):
            _set(ws, header + i, 1, cat).font = body
            for k, ser in enumerate(spec.series, start=2):
                c = _set(ws, header + i, k, ser.values[i - 1])
                c.number_format = fmt
                c.font = body
        last_row = header + len(spec.categories)
        chart: LineChart | BarChart
        if spec.kind == "line":
            chart = LineChart()
        else:
            chart = BarChart()
            chart.type = "col"
            chart.gapWidth = 80
        chart.title = spec.title
        chart.y_axis.title = spec.y_title or None
        chart.x_axis.title = spec.x_title or None
        # openpyxl 3.1 writes <c:delete val="1"/> for axes unless told: Excel then hides them.
        chart.x_axis.delete = False
        chart.y_axis.delete = False
        if spec.percent:
            # Rates cluster near 100%: whole percents would label every tick "100%".
            chart.y_axis.number_format = "0.00%"
        if spec.kind == "bar":
            chart.y_axis.scaling.min = 0  # bars from zero: a cut axis exaggerates differences
        values = [v for ser in spec.series for v in ser.values if v is not None]
        if spec.kind == "bar" and spec.percent and values and max(values) <= 1:
            chart.y_axis.scaling.max = 1  # a rate's bar is read against 100%
        if not spec.percent and values and all(float(v).is_integer() for v in values):
            chart.y_axis.majorUnit = max(1, math.ceil(max(values) / 8))  # counts: no 0.5 ticks
        data = Reference(ws, min_col=2, max_col=1 + len(spec.series), min_row=header, max_row=last_row)
        cats = Reference(ws, min_col=1, min_row=header + 1, max_row=last_row)
        chart.add_data(data, titles_from_data=True)
        chart.set_categories(cats)
        if isinstance(chart, LineChart):
            for ser in chart.series:
                ser.smooth = False  # a trend of measured points, not a fitted curve
                ser.marker.symbol = "circle"
        chart.height = 9  # cm
        chart.width = max(16, math.ceil(1.3 * len(spec.categories)) + 6)
        if len(spec.series) == 1:
            chart.legend = None  # the title says what the one series is
        elif chart.legend is not None:
            chart.legend.position = "b"
        ws.add_chart(chart, f"{get_column_letter(len(spec.series) + 3)}{row}")
        ws.column_dimensions["A"].width = max(
            ws.column_dimensions["A"].width or 8.43,
            min(30.0, max(display_width(c) for c in spec.categories) + 2) if spec.categories else 10.0)
        row = max(last_row + 2, row + 18)  # the chart is ~17 rows tall: never overlap the next
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4 if s.paper == "A4" else ws.PAPERSIZE_A3
    # The charts on one page: fit to width alone let the last chart's foot spill onto a second
    # page (LibreOffice Calc, the seed run's three charts).
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 1
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)


# --- files ---------------------------------------------------------------------------------

async def write_table(table: Table, path: Path, fmt: str,
                      settings: ExportSettings | None = None) -> Path:
    """Write ``table`` as ``fmt`` (csv | xlsx) to ``path`` atomically, off the event loop."""
    if fmt not in ("csv", "xlsx"):
        raise ValueError(f"format must be csv or xlsx, not {fmt!r}")

    def work() -> Path:
        data = csv_bytes(table, settings) if fmt == "csv" else xlsx_bytes(table, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # a bulletin is for publication, unlike the gateway's secrets
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    return await asyncio.to_thread(work)
