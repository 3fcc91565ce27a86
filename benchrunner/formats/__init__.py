"""Output formats for compare, tune-threshold and check: one small module per format
behind one interface, ``render(doc, color=False) -> str``.

Commands build a :class:`Document` (title, lines before and after, columns, raw records,
JSON payload); each format decides how to show it. table and md show the formatted
columns; csv writes the raw values of the csv columns (full precision); json dumps the
payload. So every format carries the same numbers, rounded only for the eye.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

FORMATS = {"table": "table", "md": "markdown", "csv": "csvtext", "json": "jsontext"}


@dataclass(frozen=True)
class Column:
    """One column: ``key`` of the raw record (csv header), ``title`` and ``show`` for
    table/md; ``table``/``csv`` say where the column appears."""

    key: str
    title: str
    show: Callable[[dict], str] | None = None
    table: bool = True
    csv: bool = True
    align: str = "right"

    def text(self, record: dict) -> str:
        if self.show is not None:
            return self.show(record)
        value = record.get(self.key)
        return "" if value is None else str(value)


@dataclass(frozen=True)
class Document:
    title: str
    columns: list[Column]
    records: list[dict]                       # raw values; "_tone" colours the tone column
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)
    extra_csv_records: list[dict] = field(default_factory=list)  # e.g. the geometric mean
    tone_key: str | None = None               # the column coloured by "_tone" on a TTY

    def table_columns(self) -> list[Column]:
        return [c for c in self.columns if c.table]

    def csv_columns(self) -> list[Column]:
        return [c for c in self.columns if c.csv]


def render(doc: Document, fmt: str = "table", *, color: bool = False) -> str:
    """The document in format ``fmt`` (table, md, csv or json)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    module = importlib.import_module(f".{FORMATS[fmt]}", __name__)
    return module.render(doc, color=color)
