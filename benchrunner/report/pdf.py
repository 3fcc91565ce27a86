"""The PDF report (reportlab platypus): A4 landscape, page numbers, repeating table headers,
Korean text in the embedded font the package ships (see fonts.py), vector charts.

Page 1 answers the team's questions (model.verdicts), then says how the run was configured;
the charts and short tables follow; the detail tables are in the appendix. Headings keep
with what follows them, and a table never leaves fewer than MIN_ROWS rows at a page foot.

Byte-identical for the same run: reportlab's invariant mode (fixed dates and ids) and
charts rendered deterministically (charts.py).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas as pdfcanvas
from reportlab.platypus import (CondPageBreak, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate,
                                Spacer, Table as RLTable, TableStyle, XPreformatted)

from . import charts
from .fonts import PdfFonts, pdf_fonts
from .model import Chart, ReportModel, Section, Table

PAGE = landscape(A4)
MARGIN = 14 * mm
FRAME_W = PAGE[0] - 2 * MARGIN
FRAME_H = PAGE[1] - 2 * MARGIN - 8 * mm
TONE_BG = {"good": colors.HexColor("#e8f5e9"), "bad": colors.HexColor("#ffebee"),
           "warn": colors.HexColor("#fff8e1"), "muted": None}
TONE_FG = {"good": "#1b5e20", "bad": "#b71c1c", "warn": "#8d6e00", "muted": "#757575"}
HEADER_BG = colors.HexColor("#37474f")
GRID = colors.HexColor("#cfd8dc")
MIN_ROWS = 4          # rows a table keeps together at a page foot (with its header)
KEEP_WHOLE_ROWS = 30  # tables up to this many rows never split
WIDE_CHARTS = ("stages", "util_clip", "trend", "profile")  # panels side by side: the full width
APPENDIX = ("cases", "stage_table", "compare_detail", "appendix")
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]+")


def markup(text: str, fonts: PdfFonts) -> str:
    """Paragraph markup for plain text: XML-escaped, Hangul runs set in the Korean font."""
    escaped = escape(str(text))
    if fonts.korean == fonts.regular:
        return escaped
    return HANGUL.sub(lambda m: f'<font face="{fonts.korean}">{m.group(0)}</font>', escaped)


class _Styles:
    def __init__(self, fonts: PdfFonts):
        base = dict(fontName=fonts.regular, leading=12, fontSize=9.5)
        self.body = ParagraphStyle("body", **base, spaceAfter=4)
        self.lead = ParagraphStyle("lead", parent=self.body, keepWithNext=1)
        self.answer_topic = ParagraphStyle("topic", parent=self.body, fontName=fonts.bold)
        self.small = ParagraphStyle("small", fontName=fonts.regular, fontSize=7.5, leading=9.2)
        self.small_right = ParagraphStyle("small_r", parent=self.small, alignment=TA_RIGHT)
        self.head_cell = ParagraphStyle("head", parent=self.small, fontName=fonts.bold, textColor=colors.white)
        self.caption = ParagraphStyle("caption", **{**base, "fontSize": 8.5}, textColor=colors.HexColor("#546e7a"),
                                      spaceBefore=2, spaceAfter=8)
        self.h1 = ParagraphStyle("h1", fontName=fonts.bold, fontSize=20, leading=26, spaceAfter=2)
        self.h2 = ParagraphStyle("h2", fontName=fonts.bold, fontSize=14, leading=18, spaceBefore=8, spaceAfter=6,
                                 textColor=colors.HexColor("#263238"))
        self.subtitle = ParagraphStyle("sub", **{**base, "fontSize": 11}, textColor=colors.HexColor("#546e7a"),
                                       spaceAfter=8)
        self.mono = ParagraphStyle("mono", fontName=fonts.mono, fontSize=6.8, leading=8.2)
        self.fonts = fonts

    def p(self, text: str, style: ParagraphStyle | None = None) -> Paragraph:
        return Paragraph(markup(text, self.fonts), style or self.body)


def _cell(styles: _Styles, text: str, tone: str, right: bool) -> Paragraph:
    body = markup(text, styles.fonts)
    if tone in TONE_FG:
        body = f'<font color="{TONE_FG[tone]}">{body}</font>'
        if tone == "bad":
            body = f'<font name="{styles.fonts.bold}">{body}</font>'
    return Paragraph(body, styles.small_right if right else styles.small)


def _text_width(text: str, font: str, size: float) -> float:
    return stringWidth(text, font, size) + 14  # cell padding 6 + 6, and a little air


def _col_widths(styles: _Styles, table: Table) -> list[float]:
    """Natural widths (no number wraps, headers wrap at spaces only); when the table is wider
    than the frame, the columns wider than a fair share shrink to fit (their text wraps)."""
    regular, bold = styles.fonts.regular, styles.fonts.bold
    widths = []
    for c, header in enumerate(table.columns):
        head = max(_text_width(word, bold, 7.5) for word in header.split() or [""])
        cells = max((_text_width(row[c], regular, 7.5) for row in table.rows), default=0.0)
        widths.append(max(head, min(cells, FRAME_W * 0.45)))
    for _ in range(8):
        excess = sum(widths) - FRAME_W
        wide = [i for i, w in enumerate(widths) if w > FRAME_W / len(widths)]
        if excess <= 0 or not wide:
            break
        shrink = excess / sum(widths[i] for i in wide)
        for i in wide:
            widths[i] *= max(1 - shrink, 0.3)
    grow = min(FRAME_W / sum(widths), 1.5)
    return [w * grow for w in widths] if grow > 1 else widths


def table_flowables(styles: _Styles, table: Table, keep: bool = True) -> list:
    """The table and its caption; a short table as one KeepTogether (``keep``), unless the
    caller already keeps it with its heading (nested KeepTogethers push whole sections to a
    new page)."""
    if not table.rows:
        return [styles.p(table.empty)]
    right = table.numeric()
    data = [[Paragraph(markup(c, styles.fonts), styles.head_cell) for c in table.columns]]
    data += [[_cell(styles, text, table.tone(r, c), right[c]) for c, text in enumerate(row)]
             for r, row in enumerate(table.rows)]
    rl = RLTable(data, colWidths=_col_widths(styles, table), repeatRows=1, hAlign="LEFT", splitInRow=0)
    commands = [("BACKGROUND", (0, 0), (-1, 0), HEADER_BG), ("GRID", (0, 0), (-1, -1), 0.4, GRID),
                ("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2), ("ROWBACKGROUNDS", (0, 1), (-1, -1),
                                                          [colors.white, colors.HexColor("#f7f9fa")])]
    for r, row in enumerate(table.rows):
        for c in range(len(row)):
            bg = TONE_BG.get(table.tone(r, c))
            if bg is not None:
                commands.append(("BACKGROUND", (c, r + 1), (c, r + 1), bg))
    rl.setStyle(TableStyle(commands))
    tail = styles.p(table.caption, styles.caption) if table.caption else Spacer(1, 6)
    if len(table.rows) <= KEEP_WHOLE_ROWS:
        return [KeepTogether([rl, tail])] if keep else [rl, tail]
    # a long table: start it only where its header and MIN_ROWS rows fit, so no row is orphaned
    return [CondPageBreak(12 * mm + MIN_ROWS * 5 * mm), rl, tail]


def chart_flowables(styles: _Styles, chart: Chart) -> list:
    width_in, height_in = charts.size_in(chart)
    width = FRAME_W * (0.86 if chart.key in WIDE_CHARTS else 0.5)
    if width * height_in / width_in > FRAME_H - 30 * mm:
        width = (FRAME_H - 30 * mm) * width_in / height_in
    drawing = charts.drawing(chart, width)
    drawing.hAlign = "CENTER"
    return [drawing, styles.p(chart.caption, styles.caption)]


def heading(styles: _Styles, section: Section) -> Paragraph:
    text = markup(section.title, styles.fonts) + " &#183; " + markup(section.title_ko, styles.fonts)
    para = Paragraph(text, styles.h2)
    para._bookmark = (section.key, f"{section.title} / {section.title_ko}")
    return para


def _preformatted(styles: _Styles, text: str) -> XPreformatted:
    lines = []
    for line in text.splitlines():
        while len(line) > 190:
            lines.append(line[:190])
            line = "    " + line[190:]
        lines.append(line)
    return XPreformatted(escape("\n".join(lines)), styles.mono)


def section_flowables(styles: _Styles, section: Section) -> list:
    out: list = [CondPageBreak(40 * mm)]
    first: list = [heading(styles, section), *[styles.p(t) for t in section.paragraphs]]
    blocks = list(section.blocks)
    if blocks and isinstance(blocks[0], Chart):  # a heading keeps with its first chart or table
        first += chart_flowables(styles, blocks.pop(0))
    elif blocks and isinstance(blocks[0], Table) and len(blocks[0].rows) <= KEEP_WHOLE_ROWS:
        first += table_flowables(styles, blocks.pop(0), keep=False)
    out.append(KeepTogether(first))
    for i, block in enumerate(blocks):
        if block is None:  # already placed with the line that introduces it
            continue
        if isinstance(block, Chart):
            out.append(KeepTogether(chart_flowables(styles, block)))
        elif isinstance(block, Table):
            out += table_flowables(styles, block)
        else:  # a line that introduces the table or chart after it stays on its page
            leads = i + 1 < len(blocks) and isinstance(blocks[i + 1], (Table, Chart))
            if leads and isinstance(blocks[i + 1], Table) and len(blocks[i + 1].rows) <= KEEP_WHOLE_ROWS:
                out.append(KeepTogether([styles.p(str(block), styles.body),
                                         *table_flowables(styles, blocks[i + 1], keep=False)]))
                blocks[i + 1] = None
            else:
                out.append(styles.p(str(block), styles.lead if leads else styles.body))
    if section.preformatted:
        out += [Spacer(1, 6), _preformatted(styles, section.preformatted)]
    return out


def _facts_table(styles: _Styles, model: ReportModel) -> RLTable:
    pairs = model.facts
    half = (len(pairs) + 1) // 2
    rows = []
    for i in range(half):
        row = []
        for key, value in (pairs[i], pairs[i + half] if i + half < len(pairs) else ("", "")):
            row += [styles.p(key, styles.small), styles.p(value, styles.small)]
        rows.append(row)
    table = RLTable(rows, colWidths=[FRAME_W * w for w in (0.1, 0.38, 0.1, 0.42)], hAlign="LEFT")
    table.setStyle(TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.3, GRID), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                               ("TEXTCOLOR", (0, 0), (0, -1), colors.grey)]))
    return table


def _verdict_table(styles: _Styles, model: ReportModel) -> RLTable:
    rows, commands = [], [("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("GRID", (0, 0), (-1, -1), 0.4, GRID)]
    for i, v in enumerate(model.verdicts):
        topic = styles.p(f"{v.topic} · {v.topic_ko}", styles.answer_topic)
        rows.append([topic, Paragraph(f'<font color="{TONE_FG.get(v.tone, "#263238")}">'
                                      f'{markup(v.text, styles.fonts)}</font>', styles.body)])
        if TONE_BG.get(v.tone) is not None:
            commands.append(("BACKGROUND", (0, i), (-1, i), TONE_BG[v.tone]))
    table = RLTable(rows, colWidths=[FRAME_W * 0.16, FRAME_W * 0.84], hAlign="LEFT")
    table.setStyle(TableStyle(commands))
    return table


def first_page(styles: _Styles, model: ReportModel) -> list:
    against = f" — against {model.against}" if model.against else ""
    return [
        styles.p("Benchmark report · 벤치마크 결과 보고서", styles.h1),
        styles.p(f"{model.suite} — run {model.run_id} — {model.date}{against}", styles.subtitle),
        styles.p("Answers · 답변", styles.h2), _verdict_table(styles, model), Spacer(1, 6),
        styles.p("Configuration · 실행 설정", styles.h2), _facts_table(styles, model),
    ]


class _NumberedCanvas(pdfcanvas.Canvas):
    """Draws "page i of n" and the run in the footer once the page count is known."""

    footer = ""
    footer_font = "Helvetica"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pages: list[dict] = []

    def showPage(self):
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self):
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self.setFont(self.footer_font, 7.5)
            self.setFillColor(colors.grey)
            self.drawString(MARGIN, MARGIN / 2, self.footer)
            self.drawRightString(PAGE[0] - MARGIN, MARGIN / 2, f"page {self._pageNumber} of {total}")
            super().showPage()
        super().save()


class _Doc(SimpleDocTemplate):
    def afterFlowable(self, flowable):
        mark = getattr(flowable, "_bookmark", None)
        if mark:
            self.canv.bookmarkPage(mark[0])
            self.canv.addOutlineEntry(mark[1], mark[0], level=0)


def render_pdf(model: ReportModel, path: Path) -> Path:
    fonts = pdf_fonts()
    styles = _Styles(fonts)
    story = [*first_page(styles, model), PageBreak()]
    in_appendix = False
    for section in model.sections:
        if section.key in APPENDIX and not in_appendix:
            in_appendix = True
            story += [PageBreak(), styles.p("Appendix · 부록", styles.h1)]
        story += section_flowables(styles, section)
    story.append(styles.p(fonts.note, styles.caption))
    buffer = io.BytesIO()
    doc = _Doc(buffer, pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
               bottomMargin=MARGIN + 4 * mm, title=model.title, author="benchrunner", subject=model.run_id,
               creator="benchrunner", invariant=1)
    footer = f"{model.suite} · {model.run_id}"
    font = fonts.korean if HANGUL.search(footer) else fonts.regular
    canvas_class = type("Canvas", (_NumberedCanvas,), {"footer": footer, "footer_font": font})
    doc.build(story, canvasmaker=canvas_class)
    path.write_bytes(buffer.getvalue())
    return path
