"""single: one pass of the whole clip through every stage."""

from __future__ import annotations

from ...pipeline import Pipeline
from .base import ModeResult, StageTimer, run_stages


def run_single(pipeline: Pipeline, clip: dict, clip_s: float, timer: StageTimer, *, label: str = "single") -> ModeResult:
    return ModeResult(output=run_stages(pipeline, clip, timer, label), executed_as="single")
