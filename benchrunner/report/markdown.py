"""The Markdown summary (for a pull request or a wiki), from templates/report.md.j2."""

from __future__ import annotations

from pathlib import Path

from .model import ReportModel
from .templating import render


def render_markdown(model: ReportModel) -> str:
    return render("report.md.j2", model=model)


def write_markdown(model: ReportModel, path: Path) -> Path:
    path.write_text(render_markdown(model), encoding="utf-8")
    return path
