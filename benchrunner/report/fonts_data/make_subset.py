"""Rebuild the shipped Korean font subsets from NanumGothic (Debian's fonts-nanum, OFL 1.1).

    apt-get install fonts-nanum && python benchrunner/report/fonts_data/make_subset.py

Keeps ASCII, Latin-1, the punctuation and symbols the report prints (× · – — … ≤ ≥ ←→),
Hangul compatibility jamo and all 11,172 Hangul syllables; drops hinting. Under the OFL a
subset is a Modified Version and NanumGothic is a Reserved Font Name, so the subset is
renamed "BenchReport Gothic" (see OFL.txt beside this file).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

SOURCE = Path("/usr/share/fonts/truetype/nanum")
HERE = Path(__file__).resolve().parent
UNICODES = ("U+0020-007E,U+00A0-00FF,U+2010-2027,U+2030-203A,U+2190-2193,U+2212,U+2264,U+2265,"
            "U+3000-303F,U+3131-318E,U+AC00-D7A3,U+FF01-FF5E")
FAMILY = "BenchReport Gothic"
FACES = {"NanumGothic.ttf": ("Regular", "BenchReportGothic-Regular.ttf"),
         "NanumGothicBold.ttf": ("Bold", "BenchReportGothic-Bold.ttf")}


def _rename(font: TTFont, style: str) -> None:
    names = {1: FAMILY, 2: style, 3: f"{FAMILY} {style}; subset of NanumGothic", 4: f"{FAMILY} {style}",
             6: f"BenchReportGothic-{style}", 16: FAMILY, 17: style}
    table = font["name"]
    table.names = [n for n in table.names if n.nameID not in names]
    for name_id, text in names.items():
        table.setName(text, name_id, 3, 1, 0x409)
        table.setName(text, name_id, 1, 0, 0)


def main() -> int:
    for source, (style, target) in FACES.items():
        options = subset.Options()
        options.hinting = False
        options.desubroutinize = True
        options.layout_features = ["*"]
        options.drop_tables += ["TSI0", "TSI1", "TSI2", "TSI3", "TSI5"]
        font = subset.load_font(str(SOURCE / source), options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=subset.parse_unicodes(UNICODES))
        subsetter.subset(font)
        _rename(font, style)
        font.save(str(HERE / target))
        print(HERE / target, (HERE / target).stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
