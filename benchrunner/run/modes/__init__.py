"""Execution modes: single, chunked and hybrid@threshold, behind one entry point."""

from __future__ import annotations

from ...modespec import ModeSpec, parse_mode
from ...pipeline import Pipeline
from .base import ChunkFailed, ChunkRecord, ModeResult, StageFailed, StageTimer
from .chunked import ChunkedMode
from .hybrid import run_hybrid
from .single import run_single

__all__ = ["ChunkFailed", "StageFailed", "ChunkRecord", "ChunkedMode", "ModeResult", "ModeSpec", "parse_mode", "execute_mode"]


def execute_mode(spec: ModeSpec, pipeline: Pipeline, clip: dict, clip_s: float, timer: StageTimer,
                 chunked: ChunkedMode) -> ModeResult:
    if spec.kind == "single":
        return run_single(pipeline, clip, clip_s, timer)
    if spec.kind == "chunked":
        return chunked.run(pipeline, clip, clip_s, timer)
    return run_hybrid(pipeline, clip, clip_s, timer, threshold_s=spec.threshold_s, chunked=chunked)
