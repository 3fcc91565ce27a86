"""GitHub-flavoured Markdown: a heading, notes as paragraphs, one pipe table."""

from __future__ import annotations

import html

from . import Document


def render(doc: Document, *, color: bool = False) -> str:
    columns = doc.table_columns()
    lines = [f"### {_escape(doc.title)}", ""]
    lines.extend(f"{_escape(line)}  " for line in doc.before)
    if doc.before:
        lines.append("")
    if columns:
        lines.append("| " + " | ".join(_escape(c.title) for c in columns) + " |")
        lines.append("|" + "|".join("---:" if c.align == "right" else ":---" for c in columns) + "|")
        for record in doc.records:
            lines.append("| " + " | ".join(_escape(c.text(record)) for c in columns) + " |")
    if doc.after:
        lines.append("")
        lines.extend(f"- {_escape(line)}" for line in doc.after)
    return "\n".join(lines)


def _escape(text: str) -> str:
    """Text for a Markdown cell or line: HTML escaped (code hosts and wikis render HTML in
    Markdown, so a variant named ``<img onerror=...>`` must stay text) and ``|`` escaped so
    it cannot split a table cell."""
    return html.escape(text, quote=False).replace("|", "\\|")
