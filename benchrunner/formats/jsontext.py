"""JSON of the whole result (the document's payload), indented, keys sorted."""

from __future__ import annotations

import json
import math

from . import Document


def render(doc: Document, *, color: bool = False) -> str:
    return json.dumps(_clean(doc.payload), indent=2, sort_keys=True, allow_nan=False)


def _clean(value):
    """NaN and infinities are not JSON: NaN becomes null, infinities the strings "inf"/"-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
