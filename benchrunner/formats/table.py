"""Plain aligned text for a terminal; the tone column coloured only when asked (on a TTY)."""

from __future__ import annotations

from . import Document

_ANSI = {"good": "\033[32m", "bad": "\033[31m", "warn": "\033[33m", "muted": "\033[2m", "neutral": "\033[36m"}
_RESET = "\033[0m"


def render(doc: Document, *, color: bool = False) -> str:
    columns = doc.table_columns()
    cells = [[c.text(r) for c in columns] for r in doc.records]
    widths = [max([len(c.title)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = [doc.title, *doc.before]
    if columns:
        lines.append(_line([c.title for c in columns], columns, widths))
        lines.append("  ".join("-" * w for w in widths))
    for record, row in zip(doc.records, cells):
        padded = _line(row, columns, widths, split=True)
        lines.append("  ".join(_paint(text, record, c.key == doc.tone_key and color)
                               for text, c in zip(padded, columns)).rstrip())
    lines.extend(doc.after)
    return "\n".join(lines)


def _line(texts, columns, widths, split: bool = False):
    padded = [t.rjust(w) if c.align == "right" else t.ljust(w) for t, c, w in zip(texts, columns, widths)]
    return padded if split else "  ".join(padded).rstrip()


def _paint(text: str, record: dict, on: bool) -> str:
    code = _ANSI.get(record.get("_tone", "")) if on else None
    return f"{code}{text}{_RESET}" if code else text
