"""The jinja2 environment of the report templates (templates/ at the repository root).

Autoescape is on for every HTML template; Markdown templates escape through the ``md``
filter instead (HTML entities would show as text in a Markdown source).
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .model import Chart, Table

def _templates_dir() -> Path:
    """templates/ of the source tree (a checkout or an editable install), else the copy a
    regular install puts under ``<prefix>/share/benchrunner/templates`` (pyproject data-files)."""
    source = Path(__file__).resolve().parents[2] / "templates"
    installed = Path(sys.prefix) / "share" / "benchrunner" / "templates"
    return source if source.is_dir() or not installed.is_dir() else installed


TEMPLATES = _templates_dir()
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|<>#])")


def md(text: object) -> str:
    """Markdown-safe inline text: special characters backslash-escaped, newlines as spaces."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\r", " ").replace("\n", " ")


def md_cells(table: Table, r: int) -> list[str]:
    """Row r of a table as Markdown cells; bad news in bold."""
    return [f"**{md(cell)}**" if table.tone(r, c) == "bad" else md(cell) for c, cell in enumerate(table.rows[r])]


def block_kind(block: object) -> str:
    if isinstance(block, Table):
        return "table"
    return "chart" if isinstance(block, Chart) else "text"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html.j2", "html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["md"] = md
    env.globals.update(block_kind=block_kind, md_cells=md_cells)
    return env


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)
