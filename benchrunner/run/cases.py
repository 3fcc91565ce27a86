"""Cases: the sweep a suite asks for (variant x clip length x mode), in run order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..modespec import ModeSpec
from ..suite import ChunkConfig, Suite, VariantSpec, missing_package
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
    backend: VariantSpec = field(default_factory=VariantSpec)
    reference_variant: str | None = None   # whose outputs this case's outputs are compared with
    accuracy_dir: str | None = None        # where the reference variant's outputs are kept
    build_dir: str | None = None           # where the variant's exported models are cached

    def input_for(self, index: int) -> InputRef:
        """The input of the index-th call (warm-ups first), cycling through the bucket."""
        return self.inputs[index % len(self.inputs)]

    def schedule(self) -> list[InputRef]:
        return [self.input_for(i) for i in range(self.warmup + self.repeats)]

    def key(self) -> tuple:
        return (self.pipeline, self.variant, self.mode.kind, self.mode.threshold_s, self.clip_s)


def case_id(variant: str, mode: ModeSpec, clip_s: float) -> str:
    return f"{variant}/{mode.label}/{clip_s:g}s"


def variant_order(suite: Suite) -> list[str]:
    """The suite's variants, the reference variant first: its outputs must exist before the
    other variants' outputs are compared with them."""
    names = list(suite.variants)
    if suite.reference_variant in names:
        names.remove(suite.reference_variant)
        names.insert(0, suite.reference_variant)
    return names


def build_cases(suite: Suite, *, run_id: str, device: str,
                run_dir: Path | None = None) -> tuple[list[Case], list[str]]:
    """All cases in run order (the reference variant first, then the others; per variant, clip
    length, then mode as listed: single first when listed, so its output can serve as the
    quality reference), and notes on cases left out (a clip-length bucket with no input
    files, a variant whose backend is not installed)."""
    buckets, notes = bucket_inputs_noted(suite.inputs, suite.clip_lengths_s) if suite.inputs else (None, [])
    has_chunking = any(m.kind != "single" for m in suite.modes)
    limit = int(suite.memory_limit_gb * 2**30) if suite.memory_limit_gb else None
    cases = []
    for variant in variant_order(suite):
        spec = suite.variant_spec(variant)
        missing = missing_package(spec.backend)
        if missing:
            notes.append(f"variant {variant}: {missing}; its cases are left out")
            continue
        accuracy_dir = str(run_dir / "accuracy_reference") if run_dir and suite.reference_variant else None
        build_dir = str(run_dir / "build" / variant) if run_dir and not spec.is_plain() else None
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
                    timeout_s=suite.timeout_s, backend=spec, reference_variant=suite.reference_variant,
                    accuracy_dir=accuracy_dir, build_dir=build_dir,
                ))
    if not cases and any(n.startswith("variant ") for n in notes):
        raise UserError(f"{suite.path}: variants: {notes[0]}")
    if not cases:
        raise UserError(f"{suite.path}: inputs: no input file fits any clip length in clip_lengths_s")
    return cases, notes
