"""Mode names as suites and commands write them (``single``, ``chunked``, ``hybrid@32``).

Kept free of torch so that commands reading results (compare, check) start fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODE_KINDS = ("single", "chunked", "hybrid")
MODE_TEXT = rf"(?P<kind>{'|'.join(MODE_KINDS)})(?:@(?P<threshold>\d+(?:\.\d+)?))?"  # for larger patterns
_MODE_PATTERN = re.compile(f"^{MODE_TEXT}$")


@dataclass(frozen=True)
class ModeSpec:
    """A mode as a suite names it: ``single``, ``chunked`` or ``hybrid@32``."""

    kind: str
    threshold_s: float | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.threshold_s:g}" if self.threshold_s is not None else self.kind


def parse_mode(text: str) -> ModeSpec:
    match = _MODE_PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a mode (expected single, chunked, hybrid or hybrid@SECONDS)")
    kind, threshold = match.group("kind"), match.group("threshold")
    if threshold is not None and kind != "hybrid":
        raise ValueError(f"{text!r}: only hybrid takes a threshold (expected e.g. hybrid@32)")
    return ModeSpec(kind, float(threshold) if threshold is not None else None)
