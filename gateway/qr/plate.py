"""Printable QR plates for a window and its clerk (评价二维码, 一码一账号): SVG, PNG and PDF.

Rendering only: the URL (with whatever token it carries) comes from the caller. One layout, in
millimetres, is computed once from :class:`PlateInfo` and drawn by three renderers, so the three
files match:

* the QR code's modules come from segno (``matrix_iter``), drawn as filled squares;
* text uses one CJK TrueType font (Debian's WenQuanYi Micro Hei by default) for metrics and
  drawing: PNG through Pillow, PDF through reportlab (the font embedded as a subset, so the PDF
  prints the same anywhere and its text can be searched and extracted), SVG as the glyphs'
  outlines (paths via fontTools) so the plate looks the same on a machine without Chinese
  fonts; each SVG text group keeps its words in ``aria-label`` and ``<title>``.

A character the font does not have (a rare name character such as 䶮) is an error naming it,
never a blank box on a printed plate.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import html
import io
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

import segno
from fontTools.pens.svgPathPen import SVGPathPen
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont as ReportlabTTFont
from reportlab.pdfgen.canvas import Canvas

from gateway.sectioncheck import Section, SettingsError

__all__ = [
    "PaperSize", "PlateInfo", "PlateSettings", "PlateSettingsError", "PlateError", "Layout",
    "layout_plate", "render_svg", "render_png", "render_pdf", "render_plate", "DEFAULT_FONT",
]

DEFAULT_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # Debian fonts-wqy-microhei

P = ParamSpec("P")
R = TypeVar("R")
# fontTools loads tables lazily and reportlab registers fonts in a global registry: neither is
# safe to use from two threads at once, so renders (run in worker threads) take turns.
_LOCK = threading.RLock()


def _serialised(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _LOCK:
            return fn(*args, **kwargs)
    return wrapper


class PaperSize(enum.StrEnum):
    A4 = "A4"
    A5 = "A5"

    @property
    def mm(self) -> tuple[float, float]:
        return {"A4": (210.0, 297.0), "A5": (148.0, 210.0)}[self.value]


class PlateError(ValueError):
    """The plate cannot be drawn as asked (a character the font lacks, a URL too long, ...)."""


@dataclass(frozen=True)
class PlateInfo:
    hall_name: str       # e.g. 张店区政务服务中心
    window_number: str   # e.g. 12
    window_name: str     # e.g. 综合受理
    clerk_name: str
    clerk_number: str    # 工号
    url: str             # what the code carries (the caller's signed link)
    size: PaperSize = PaperSize.A4

    def __post_init__(self) -> None:
        for f in ("hall_name", "window_number", "clerk_name", "url"):
            v = getattr(self, f)
            if not isinstance(v, str) or not v.strip():
                raise PlateError(f"{f} is required")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PlateError(f"url must be an http(s) URL a phone can open, not {self.url!r}")
        object.__setattr__(self, "size", PaperSize(self.size))


class PlateSettingsError(SettingsError):
    """The [qr] plate settings are wrong; the message (one line) names every problem."""


@dataclass(frozen=True)
class PlateSettings:
    """The ``[qr.plate]`` section."""

    font_path: Path = DEFAULT_FONT
    font_index: int = 0                 # which face of a .ttc collection
    title: str = "政务服务“好差评”"
    instruction: str = "请扫码对本次服务进行评价"
    grades: str = "非常满意 · 满意 · 基本满意 · 不满意 · 非常不满意"
    note: str = "一码一账号：此码仅用于评价本窗口工作人员"
    footer: str = ""                    # e.g. 监督电话：12345
    error_correction: str = "M"         # L M Q H; segno raises it further when it costs no size
    png_dpi: int = 300

    @classmethod
    def from_mapping(cls, data: object, *, base_dir: Path | None = None) -> PlateSettings:
        sec = Section("qr.plate", data, base_dir=base_dir)
        d = cls()
        font_path = sec.get_path("font_path", d.font_path) or d.font_path
        s = cls(
            font_path=font_path,
            font_index=sec.get_int("font_index", 0, 0, 64),
            title=sec.get_str("title", d.title, nonempty=True),
            instruction=sec.get_str("instruction", d.instruction, nonempty=True),
            grades=sec.get_str("grades", d.grades),
            note=sec.get_str("note", d.note),
            footer=sec.get_str("footer", ""),
            error_correction=sec.get_str("error_correction", "M", choices=["L", "M", "Q", "H"]),
            png_dpi=sec.get_int("png_dpi", 300, 72, 1200),
        )
        if not font_path.is_file():
            sec.problem("font_path",
                        f"{font_path} is not a file (Debian: apt-get install fonts-wqy-microhei)")
        else:
            try:
                _font(str(font_path), s.font_index)
            except Exception as e:  # fontTools raises several types for a bad file
                sec.problem("font_path", f"{font_path} (face {s.font_index}) is not a usable "
                                         f"TrueType font: {str(e).splitlines()[0] if str(e) else e}")
        try:
            sec.finish()
        except SettingsError as e:
            raise PlateSettingsError(e.section, e.problems) from None
        return s


# --- layout --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextItem:
    role: str          # title | hall | window | instruction | grades | clerk | note | footer
    text: str
    x_mm: float        # centre
    baseline_mm: float  # from the top
    size_mm: float     # em size


@dataclass(frozen=True)
class QrItem:
    x_mm: float        # top-left of the first module (quiet zone outside it)
    y_mm: float
    module_mm: float
    matrix: tuple[tuple[bool, ...], ...]

    @property
    def side_mm(self) -> float:
        return self.module_mm * len(self.matrix)


@dataclass(frozen=True)
class Layout:
    width_mm: float
    height_mm: float
    frame_inset_mm: float
    texts: tuple[TextItem, ...]
    qr: QrItem
    title: str         # document title for PDF/SVG metadata


class _Font:
    """A TrueType face through fontTools: coverage, advances, outlines (shared by renderers)."""

    def __init__(self, path: str, index: int) -> None:
        self.path, self.index = path, index
        self.tt = TTFont(path, fontNumber=index, lazy=True)
        if "glyf" not in self.tt:
            raise PlateError(f"{path} has no TrueType outlines (CFF fonts cannot be embedded by reportlab)")
        self.cmap: dict[int, str] = self.tt.getBestCmap()
        self.upm = float(self.tt["head"].unitsPerEm)
        self.hmtx = self.tt["hmtx"]
        self.name = str(self.tt["name"].getDebugName(1) or Path(path).stem)
        self.glyphs = self.tt.getGlyphSet()

    def missing(self, text: str) -> list[str]:
        return [ch for ch in dict.fromkeys(text) if not ch.isspace() and ord(ch) not in self.cmap]

    def advance_em(self, text: str) -> float:
        total = 0.0
        for ch in text:
            g = self.cmap.get(ord(ch)) or self.cmap.get(0x20)
            total += self.hmtx[g][0] if g else self.upm / 2
        return total / self.upm

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one font object per (path, index), cached itself
    def outline(self, ch: str) -> str:
        g = self.cmap.get(ord(ch))
        if g is None:
            return ""
        pen = SVGPathPen(self.glyphs)
        self.glyphs[g].draw(pen)
        return str(pen.getCommands())


@functools.cache
def _font(path: str, index: int) -> _Font:
    return _Font(path, index)


def _matrix(url: str, ec: str) -> tuple[tuple[bool, ...], ...]:
    try:
        qr = segno.make_qr(url, error=ec.lower(), boost_error=True)
    except segno.DataOverflowError:
        raise PlateError(f"the URL is too long for a QR code ({len(url)} characters)") from None
    return tuple(tuple(bool(m) for m in row) for row in qr.matrix_iter(scale=1, border=0))


@_serialised
def layout_plate(info: PlateInfo, settings: PlateSettings | None = None) -> Layout:
    """Where everything goes, in millimetres from the top-left, for a portrait A4 or A5 page."""
    s = settings or PlateSettings()
    font = _font(str(s.font_path), s.font_index)
    w, h = info.size.mm
    k = w / 210.0  # everything is designed on A4 and scaled
    margin = 16.0 * k
    usable = w - 2 * margin
    window = f"{info.window_number}号窗口" + (f" · {info.window_name}" if info.window_name.strip() else "")
    clerk = f"工作人员：{info.clerk_name}"
    if info.clerk_number.strip():
        clerk += f"　工号：{info.clerk_number}"
    lines: list[tuple[str, str, float, float]] = [  # role, text, baseline (A4 mm), size (A4 mm)
        ("title", s.title, 34, 13),
        ("hall", info.hall_name, 50, 8),
        ("window", window, 62, 7),
        ("instruction", s.instruction, 214, 9.5),
        ("grades", s.grades, 227, 5),
        ("clerk", clerk, 247, 8),
        ("note", s.note, 262, 4.6),
        ("footer", s.footer, 273, 4.6),
    ]
    texts: list[TextItem] = []
    for role, text, base, size in lines:
        if not text.strip():
            continue
        missing = font.missing(text)
        if missing:
            chars = ", ".join(f"'{c}' (U+{ord(c):04X})" for c in missing)
            raise PlateError(f"the font {font.name} ({s.font_path}) has no glyph for {chars} in the "
                             f"{role} line; set [qr.plate] font_path to a font that covers it")
        size_mm = size * k
        width_em = font.advance_em(text)
        if width_em * size_mm > usable:
            size_mm = usable / width_em  # shrink a long hall name to fit, never cut it
        texts.append(TextItem(role, text, w / 2, base * k, size_mm))
    matrix = _matrix(info.url, s.error_correction)
    n = len(matrix)
    box = 124.0 * k                  # QR with its quiet zone (4 modules each side)
    module = box / (n + 8)
    side = module * n
    qr = QrItem((w - side) / 2, 72.0 * k + (box - side) / 2, module, matrix)
    return Layout(w, h, 8.0 * k, tuple(texts), qr,
                  f"{info.hall_name} {info.window_number}号窗口 {info.clerk_name} 评价二维码")


def _runs(matrix: Sequence[Sequence[bool]]) -> Iterator[tuple[int, int, int]]:
    """Dark modules as horizontal runs (row, first column, length): fewer shapes to draw."""
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                yield r, start, c - start
            else:
                c += 1


# --- renderers -----------------------------------------------------------------------------

def _fmt(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".")


@_serialised
def render_svg(info: PlateInfo, settings: PlateSettings | None = None) -> bytes:
    s = settings or PlateSettings()
    lay = layout_plate(info, s)
    font = _font(str(s.font_path), s.font_index)
    defs: dict[str, str] = {}
    groups: list[str] = []
    for t in lay.texts:
        scale = t.size_mm / font.upm
        x = t.x_mm - font.advance_em(t.text) * t.size_mm / 2
        uses: list[str] = []
        for ch in t.text:
            d = font.outline(ch)
            if d:
                gid = f"g{ord(ch):x}"
                defs.setdefault(gid, d)
                uses.append(f'<use href="#{gid}" xlink:href="#{gid}" x="{_fmt(x / scale)}"/>')
            x += font.advance_em(ch) * t.size_mm
        label = html.escape(t.text, quote=True)
        groups.append(
            f'<g class="{t.role}" role="img" aria-label="{label}" '
            f'transform="translate(0 {_fmt(t.baseline_mm)}) scale({scale:.6g} {-scale:.6g})">'
            f"<title>{label}</title>{''.join(uses)}</g>")
    q = lay.qr
    dark = "".join(
        f"M{_fmt(q.x_mm + c * q.module_mm)} {_fmt(q.y_mm + r * q.module_mm)}"
        f"h{_fmt(n * q.module_mm)}v{_fmt(q.module_mm)}h{_fmt(-n * q.module_mm)}z"
        for r, c, n in _runs(q.matrix))
    inset = lay.frame_inset_mm
    defs_xml = "".join(f'<path id="{gid}" d="{d}"/>' for gid, d in defs.items())
    svg = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'version="1.1" width="{_fmt(lay.width_mm)}mm" height="{_fmt(lay.height_mm)}mm" '
        f'viewBox="0 0 {_fmt(lay.width_mm)} {_fmt(lay.height_mm)}" xml:lang="zh-CN">'
        f"<title>{html.escape(lay.title)}</title><defs>{defs_xml}</defs>"
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<rect x="{_fmt(inset)}" y="{_fmt(inset)}" width="{_fmt(lay.width_mm - 2 * inset)}" '
        f'height="{_fmt(lay.height_mm - 2 * inset)}" fill="none" stroke="#c00000" '
        f'stroke-width="{_fmt(0.8 * lay.width_mm / 210)}"/>'
        f'<g fill="#000">{"".join(groups)}</g>'
        f'<path class="qr" d="{dark}" fill="#000" shape-rendering="crispEdges"/>'
        "</svg>\n")
    return svg.encode("utf-8")


@_serialised
def render_png(info: PlateInfo, settings: PlateSettings | None = None) -> bytes:
    s = settings or PlateSettings()
    lay = layout_plate(info, s)
    ppm = s.png_dpi / 25.4
    img = Image.new("RGB", (round(lay.width_mm * ppm), round(lay.height_mm * ppm)), "white")
    draw = ImageDraw.Draw(img)
    inset = lay.frame_inset_mm * ppm
    draw.rectangle((inset, inset, img.width - inset, img.height - inset), outline=(0xC0, 0, 0),
                   width=max(1, round(0.8 * lay.width_mm / 210 * ppm)))
    for t in lay.texts:
        f = _pil_font(str(s.font_path), s.font_index, max(1, round(t.size_mm * ppm)))
        draw.text((t.x_mm * ppm, t.baseline_mm * ppm), t.text, font=f, fill="black", anchor="ms")
    q = lay.qr
    # Whole pixels per module, centred where the layout puts the code: crisp for scanners.
    px = max(1, int(q.module_mm * ppm))
    n = len(q.matrix)
    cx, cy = (q.x_mm + q.side_mm / 2) * ppm, (q.y_mm + q.side_mm / 2) * ppm
    x0, y0 = round(cx - n * px / 2), round(cy - n * px / 2)
    for r, c, k in _runs(q.matrix):
        draw.rectangle((x0 + c * px, y0 + r * px, x0 + (c + k) * px - 1, y0 + (r + 1) * px - 1), fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG", dpi=(s.png_dpi, s.png_dpi), optimize=True)
    return buf.getvalue()


@functools.lru_cache(maxsize=64)
def _pil_font(path: str, index: int, size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size=size_px, index=index)


def _reportlab_font(s: PlateSettings) -> str:
    name = f"HCPPlate-{abs(hash((str(s.font_path), s.font_index))):x}"
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(ReportlabTTFont(name, str(s.font_path), subfontIndex=s.font_index))
    return name


@_serialised
def render_pdf(info: PlateInfo, settings: PlateSettings | None = None) -> bytes:
    s = settings or PlateSettings()
    lay = layout_plate(info, s)
    fname = _reportlab_font(s)
    buf = io.BytesIO()
    page_h = lay.height_mm
    c = Canvas(buf, pagesize=(lay.width_mm * mm, page_h * mm), pageCompression=1,
               invariant=True)  # byte-identical output for identical input
    c.setTitle(lay.title)
    c.setSubject(info.url)
    c.setCreator("haochaping")
    inset = lay.frame_inset_mm
    c.setStrokeColorRGB(0.75, 0, 0)
    c.setLineWidth(0.8 * lay.width_mm / 210 * mm)
    c.rect(inset * mm, inset * mm, (lay.width_mm - 2 * inset) * mm, (page_h - 2 * inset) * mm,
           stroke=1, fill=0)
    c.setFillColorRGB(0, 0, 0)
    for t in lay.texts:
        c.setFont(fname, t.size_mm * mm)
        c.drawCentredString(t.x_mm * mm, (page_h - t.baseline_mm) * mm, t.text)
    q = lay.qr
    for r, col, n in _runs(q.matrix):
        x = (q.x_mm + col * q.module_mm) * mm
        y = (page_h - q.y_mm - (r + 1) * q.module_mm) * mm
        c.rect(x, y, n * q.module_mm * mm, q.module_mm * mm, stroke=0, fill=1)
    c.showPage()
    c.save()
    return buf.getvalue()


_RENDERERS: dict[str, Callable[[PlateInfo, PlateSettings | None], bytes]] = {
    "svg": render_svg, "png": render_png, "pdf": render_pdf}


async def render_plate(info: PlateInfo, fmt: str, settings: PlateSettings | None = None) -> bytes:
    """Render off the event loop (font parsing and rasterising take tens of milliseconds)."""
    try:
        fn = _RENDERERS[fmt]
    except KeyError:
        raise PlateError(f"format must be svg, png or pdf, not {fmt!r}") from None
    data: bytes = await asyncio.to_thread(fn, info, settings)
    return data
