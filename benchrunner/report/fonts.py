"""Fonts that render Korean: an embedded TrueType font, shipped with the package, so the PDF
carries its Korean glyphs on any machine without a system font package.

Search order: the BENCH_REPORT_FONT environment variable (a .ttf path; BENCH_REPORT_FONT_BOLD
for its bold face), then the package's own subset of NanumGothic (fonts_data/, renamed
"BenchReport Gothic" as the SIL OFL asks of a subset; licence in fonts_data/OFL.txt), then
Debian's fonts-nanum. BENCH_REPORT_FONT=cid uses reportlab's CID font instead (smaller
files, not embedded: the reader's viewer needs a Korean font pack).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

NANUM_DIRS = (Path("/usr/share/fonts/truetype/nanum"), Path("/usr/share/fonts/nanum"),
              Path.home() / ".local/share/fonts", Path("/Library/Fonts"), Path("C:/Windows/Fonts"))
CID_FONT = "HYSMyeongJo-Medium"
SHIPPED = Path(__file__).resolve().parent / "fonts_data"
SHIPPED_FACES = (SHIPPED / "BenchReportGothic-Regular.ttf", SHIPPED / "BenchReportGothic-Bold.ttf")


@dataclass(frozen=True)
class PdfFonts:
    regular: str
    bold: str
    mono: str
    korean: str  # the font any Hangul run is set in
    embedded: bool
    note: str  # what a reader needs, for the appendix and the README


def _ttf_paths() -> tuple[Path, Path] | None:
    configured = os.environ.get("BENCH_REPORT_FONT")
    if configured == "cid":
        return None
    if configured and Path(configured).is_file():
        bold = os.environ.get("BENCH_REPORT_FONT_BOLD") or configured
        return Path(configured), Path(bold) if Path(bold).is_file() else Path(configured)
    if all(face.is_file() for face in SHIPPED_FACES):
        return SHIPPED_FACES
    for folder in NANUM_DIRS:
        regular = folder / "NanumGothic.ttf"
        if regular.is_file():
            bold = folder / "NanumGothicBold.ttf"
            return regular, bold if bold.is_file() else regular
    return None


@lru_cache(maxsize=1)
def pdf_fonts() -> PdfFonts:
    """Register the fonts with reportlab once per process and say which were used."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    paths = _ttf_paths()
    if paths is not None:
        pdfmetrics.registerFont(TTFont("Report-Regular", str(paths[0])))
        pdfmetrics.registerFont(TTFont("Report-Bold", str(paths[1])))
        name = "BenchReport Gothic (a subset of NanumGothic, SIL OFL 1.1)" if paths == SHIPPED_FACES else paths[0].stem
        note = f"Korean text is set in {name} (embedded); no font is needed to read it."
        return PdfFonts("Report-Regular", "Report-Bold", "Courier", "Report-Regular", True, note)
    pdfmetrics.registerFont(UnicodeCIDFont(CID_FONT))
    note = (f"Korean text uses the CID font {CID_FONT}, which is not embedded: readers need a viewer "
            "with Adobe's Korean font pack (Acrobat Reader's 'Asian and extended language' pack, or "
            "poppler-data on Linux). Install fonts-nanum before rendering to embed NanumGothic instead.")
    return PdfFonts("Helvetica", "Helvetica-Bold", "Courier", CID_FONT, False, note)


def matplotlib_families() -> list[str]:
    """DejaVu Sans first, with a Korean fallback when one is installed (for user labels)."""
    paths = _ttf_paths()
    if paths is None:
        return ["DejaVu Sans"]
    from matplotlib import font_manager

    _add_font(font_manager, str(paths[0]))
    return ["DejaVu Sans", font_manager.FontProperties(fname=str(paths[0])).get_name()]


@lru_cache(maxsize=4)
def _add_font(font_manager, path: str) -> None:
    font_manager.fontManager.addfont(path)
