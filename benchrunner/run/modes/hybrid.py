"""hybrid@T: single when the clip is at most T seconds long, chunked above."""

from __future__ import annotations

from ...pipeline import Pipeline
from .base import ModeResult, StageTimer
from .chunked import ChunkedMode
from .single import run_single


def run_hybrid(pipeline: Pipeline, clip: dict, clip_s: float, timer: StageTimer, *,
               threshold_s: float, chunked: ChunkedMode) -> ModeResult:
    label = f"hybrid@{threshold_s:g}"
    if clip_s <= threshold_s:
        return run_single(pipeline, clip, clip_s, timer, label=label)
    return chunked.run(pipeline, clip, clip_s, timer, label=label)
