"""Cases: the sweep a suite asks for (variant x clip length x mode), in run order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..modespec import ModeSpec
from ..suite import ChunkConfig, Suite
from .inputs import InputRef, bucket_inputs_noted


@dataclass(frozen=True)
class Case:
    """Everything a worker needs to measure one case, and the columns that identify it."""

    case_id: str
    run_id: str
    suite: str
    pipeline: str
    variant: str
    pipeline_args: dict[str, Any]
    mode: ModeSpec
    clip_s: float
    repeats: int
    warmup: int
    inputs: tuple[InputRef, ...]
    chunk: ChunkConfig
    device: str
    memory_limit_bytes: int | None
    want_quality: bool
    timeout_s: float

    def input_for(self, index: int) -> InputRef:
        """The input of the index-th call (warm-ups first), cycling through the bucket."""
        return self.inputs[index % len(self.inputs)]

    def schedule(self) -> list[InputRef]:
        return [self.input_for(i) for i in range(self.warmup + self.repeats)]

    def key(self) -> tuple:
        return (self.pipeline, self.variant, self.mode.kind, self.mode.threshold_s, self.clip_s)


def case_id(variant: str, mode: ModeSpec, clip_s: float) -> str:
    return f"{variant}/{mode.label}/{clip_s:g}s"


def build_cases(suite: Suite, *, run_id: str, device: str) -> tuple[list[Case], list[str]]:
    """All cases in run order (variant, then clip length, then mode as listed: single first
    when listed, so its output can serve as the quality reference), and notes on cases
    left out (a clip-length bucket with no input files)."""
    buckets, notes = bucket_inputs_noted(suite.inputs, suite.clip_lengths_s) if suite.inputs else (None, [])
    has_chunking = any(m.kind != "single" for m in suite.modes)
    limit = int(suite.memory_limit_gb * 2**30) if suite.memory_limit_gb else None
    cases = []
    for variant in suite.variants:
        for clip_s in suite.clip_lengths_s:
            refs = tuple(buckets[clip_s]) if buckets is not None else (InputRef(clip_s=clip_s, seed=suite.seed),)
            if not refs:
                notes.append(f"no input file of about {clip_s:g} s in {suite.inputs}: clip length {clip_s:g} s left out")
                continue
            for mode in suite.modes:
                cases.append(Case(
                    case_id=case_id(variant, mode, clip_s), run_id=run_id, suite=suite.name,
                    pipeline=suite.pipeline, variant=variant, pipeline_args=suite.variant_args(variant), mode=mode,
                    clip_s=clip_s, repeats=suite.repeats, warmup=suite.warmup, inputs=refs, chunk=suite.chunk,
                    device=device, memory_limit_bytes=limit, want_quality=has_chunking,
                    timeout_s=suite.timeout_s,
                ))
    if not cases:
        raise UserError(f"{suite.path}: inputs: no input file fits any clip length in clip_lengths_s")
    return cases, notes
