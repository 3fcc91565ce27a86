"""The HTML report: one self-contained page (inline CSS and SVG charts, no script, no
external resource), rendered from templates/report.html.j2 with autoescape on."""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup

from . import charts
from .model import Chart, ReportModel
from .templating import render


def chart_svgs(model: ReportModel) -> dict[str, Markup]:
    """Inline SVG per chart key; charts.py's output is trusted markup (escaped text only)."""
    found = [b for s in model.sections for b in s.blocks if isinstance(b, Chart)]
    return {chart.key: Markup(charts.inline_svg(chart, i)) for i, chart in enumerate(found)}


def render_html(model: ReportModel) -> str:
    return render("report.html.j2", model=model, svgs=chart_svgs(model))


def write_html(model: ReportModel, path: Path) -> Path:
    path.write_text(render_html(model), encoding="utf-8")
    return path
