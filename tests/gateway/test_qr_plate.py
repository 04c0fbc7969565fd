"""QR plates: each format is decoded or read back by real tools.

PNG: decoded with zxing-cpp. SVG: rasterised by cairosvg (libcairo), then decoded. PDF: text
extracted with pypdf, rasterised by poppler's pdftoppm, then decoded.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import cairosvg
import pytest
import zxingcpp
from PIL import Image
from pypdf import PdfReader

from gateway.qr.plate import (
    PaperSize,
    PlateError,
    PlateInfo,
    PlateSettings,
    PlateSettingsError,
    layout_plate,
    render_pdf,
    render_plate,
    render_png,
    render_svg,
)

URL = "https://hcp.example.gov.cn/r/p/eyJ3IjoiVzEyIiwiYyI6IjEwMjQifQ.c2lnbmF0dXJlLWJ5dGVz"
SVG = "{http://www.w3.org/2000/svg}"


def _info(size: PaperSize = PaperSize.A4, **kw: str) -> PlateInfo:
    base = {"hall_name": "淄博市张店区政务服务中心", "window_number": "12", "window_name": "综合受理",
            "clerk_name": "欧阳珺玥", "clerk_number": "1024", "url": URL}
    base.update(kw)
    return PlateInfo(size=size, **base)


def _decode(img: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(img.convert("L"))]


@pytest.mark.parametrize("size", [PaperSize.A4, PaperSize.A5])
def test_png_decodes_to_the_url(size: PaperSize) -> None:
    img = Image.open(io.BytesIO(render_png(_info(size))))
    w_mm, h_mm = size.mm
    assert img.size == (round(w_mm / 25.4 * 300), round(h_mm / 25.4 * 300))
    assert img.info["dpi"] == pytest.approx((300, 300), abs=0.01)  # prints at its true size
    assert _decode(img) == [URL]


def test_png_draws_every_text_line() -> None:
    lay = layout_plate(_info())
    img = Image.open(io.BytesIO(render_png(_info()))).convert("L")
    ppm = 300 / 25.4
    for t in lay.texts:
        # The band from the cap height to the baseline holds dark pixels where the text is.
        box = (0, round((t.baseline_mm - t.size_mm * 0.8) * ppm), img.width, round(t.baseline_mm * ppm))
        dark = sum(img.crop(box).histogram()[:128])
        assert dark > 50 * len(t.text), t.role


def test_svg_has_outlines_labels_and_decodes() -> None:
    data = render_svg(_info())
    root = ElementTree.fromstring(data)
    assert root.get("width") == "210mm" and root.get("viewBox") == "0 0 210 297"
    assert root.find(f".//{SVG}text") is None  # no font needed to view or print it
    labels = {g.get("class"): g.get("aria-label") for g in root.iter(f"{SVG}g") if g.get("aria-label")}
    assert labels["clerk"] == "工作人员：欧阳珺玥　工号：1024"
    assert labels["instruction"] == "请扫码对本次服务进行评价"
    assert labels["hall"] == "淄博市张店区政务服务中心"
    png = cairosvg.svg2png(bytestring=data, output_width=1240)
    assert _decode(Image.open(io.BytesIO(png))) == [URL]


@pytest.mark.parametrize("size", [PaperSize.A4, PaperSize.A5])
def test_pdf_text_font_and_code(size: PaperSize, tmp_path: Path) -> None:
    data = render_pdf(_info(size))
    reader = PdfReader(io.BytesIO(data))
    [page] = reader.pages
    w_pt, h_pt = (v / 25.4 * 72 for v in size.mm)
    assert float(page.mediabox.width) == pytest.approx(w_pt, abs=0.01)
    assert float(page.mediabox.height) == pytest.approx(h_pt, abs=0.01)
    text = page.extract_text()
    for s in ("欧阳珺玥", "1024", "请扫码对本次服务进行评价", "淄博市张店区政务服务中心", "12号窗口"):
        assert s in text, (s, text)
    fonts = [f.get_object() for f in page["/Resources"]["/Font"].values()]  # type: ignore[index]
    cjk = [f for f in fonts if f["/Subtype"] in ("/TrueType", "/Type0")]
    assert cjk, fonts
    for f in cjk:  # embedded (a subset of the TrueType font): prints the same anywhere
        desc = f["/FontDescriptor"] if "/FontDescriptor" in f else \
            f["/DescendantFonts"][0].get_object()["/FontDescriptor"]
        assert "/FontFile2" in desc.get_object()
    assert reader.metadata is not None and reader.metadata.title and "欧阳珺玥" in reader.metadata.title
    pdftoppm = shutil.which("pdftoppm")
    assert pdftoppm, "pdftoppm (Debian poppler-utils) is installed by scripts/setup.sh"
    subprocess.run([pdftoppm, "-r", "150", "-png", "-singlefile", "-", str(tmp_path / "page")],
                   input=data, check=True, timeout=60)
    assert _decode(Image.open(tmp_path / "page.png")) == [URL]


def test_long_hall_name_shrinks_to_fit() -> None:
    long = "西藏自治区拉萨市城关区八廓街道政务服务中心（便民服务中心）不动产登记与税务联办专区"
    lay = layout_plate(_info(PaperSize.A5, hall_name=long))
    [hall] = [t for t in lay.texts if t.role == "hall"]
    assert hall.size_mm < 8 * 148 / 210
    from gateway.qr.plate import _font
    s = PlateSettings()
    width = _font(str(s.font_path), s.font_index).advance_em(long) * hall.size_mm
    assert width <= 148 - 2 * 16 * 148 / 210 + 1e-6
    assert _decode(Image.open(io.BytesIO(render_png(_info(PaperSize.A5, hall_name=long))))) == [URL]


def test_a_character_the_font_lacks_is_a_clear_error() -> None:
    with pytest.raises(PlateError) as e:
        render_png(_info(clerk_name="刘䶮"))
    msg = str(e.value)
    assert "'䶮' (U+4DAE)" in msg and "clerk line" in msg and "font_path" in msg and "\n" not in msg


def test_bad_inputs() -> None:
    with pytest.raises(PlateError, match="http"):
        _info(url="javascript:alert(1)")
    with pytest.raises(PlateError, match="clerk_name is required"):
        _info(clerk_name=" ")
    with pytest.raises(PlateError, match="too long for a QR code"):
        render_svg(_info(url="https://x.example/" + "a" * 5000))


async def test_render_plate_async() -> None:
    png = await render_plate(_info(), "png")
    assert png.startswith(b"\x89PNG")
    # Concurrent renders in worker threads (fonts shared between them) all come out right.
    names = ["张三", "李四", "王五", "赵六"]
    outs = await asyncio.gather(*(render_plate(_info(clerk_name=n), f)
                                  for n in names for f in ("pdf", "svg")))
    for n, pdf in zip(names, outs[0::2], strict=True):
        assert n in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    for n, svg in zip(names, outs[1::2], strict=True):
        assert f"工作人员：{n}" in svg.decode("utf-8")
    with pytest.raises(PlateError, match="svg, png or pdf"):
        await render_plate(_info(), "gif")


def test_settings(tmp_path: Path) -> None:
    s = PlateSettings.from_mapping({"footer": "监督电话：12345", "error_correction": "Q"})
    lay = layout_plate(_info(), s)
    assert [t.text for t in lay.texts if t.role == "footer"] == ["监督电话：12345"]
    (tmp_path / "bad.ttf").write_bytes(b"not a font")
    with pytest.raises(PlateSettingsError) as e:
        PlateSettings.from_mapping({"font_path": "bad.ttf", "error_correction": "X", "dpi": 300},
                                   base_dir=tmp_path)
    msg = str(e.value)
    assert msg.startswith("[qr.plate]: ") and "\n" not in msg
    assert "font_path" in msg and "is not a usable TrueType font" in msg
    assert "error_correction must be one of L, M, Q, H, not 'X'" in msg
    assert "unknown key 'dpi' (did you mean 'png_dpi'?)" in msg
    with pytest.raises(PlateSettingsError, match="apt-get install fonts-wqy-microhei"):
        PlateSettings.from_mapping({"font_path": str(tmp_path / "missing.ttc")})
