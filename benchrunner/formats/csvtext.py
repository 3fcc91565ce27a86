"""CSV of the raw values (full precision, blank for none), one line per record."""

from __future__ import annotations

import csv
import io
import math

from . import Document


def render(doc: Document, *, color: bool = False) -> str:
    columns = doc.csv_columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for record in [*doc.records, *doc.extra_csv_records]:
        writer.writerow([_cell(record.get(c.key)) for c in columns])
    return buffer.getvalue().rstrip("\n")


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
