"""Applying a variant to a loaded pipeline: every stage built by the variant's backend, a
stage the backend cannot take handled as the variant's ``on_unsupported`` says, then one
untimed call on an example clip (where lazy backends compile). What it cost and how large
the result is go into a build report, kept apart from the measured repeats."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..pipeline import Pipeline, Stage
from .base import BuildContext, StageBuild, UnsupportedStage, saved_bytes, weight_bytes
from .registry import BACKENDS
from ..suite import VariantSpec

EXAMPLE_CLIP_S = 1.7  # the example clip exporters trace and the set-up call runs (an odd length: no axis
                      # of it is likely to equal another, which an exporter could take for one symbol)


class UnsupportedStageError(RuntimeError):
    """Raised by a stage the variant's backend could not take, with ``on_unsupported = "fail"``:
    every repeat of its cases fails with this one line."""


def apply_variant(pipeline: Pipeline, spec: VariantSpec, *, build_dir: Path, seed: int = 0,
                  example_clip_s: float = EXAMPLE_CLIP_S) -> tuple[Pipeline, dict[str, Any]]:
    """The pipeline as the variant runs it, and the build report (see README: Backends and
    precisions). For a plain variant (fp32, eager, no quantisation) see :func:`plain_report`."""
    backend = BACKENDS[spec.backend]
    missing = backend.unavailable()
    if missing:
        raise UnsupportedStageError(missing)
    ctx = BuildContext(device=pipeline.device, build_dir=Path(build_dir))
    started = time.perf_counter()
    examples = _stage_inputs(pipeline, _example_clip(pipeline, seed, example_clip_s))
    stages, reports = [], []
    for stage in pipeline.stages:
        built, problem = _build(stage, spec, backend, ctx, examples)
        if problem is None:
            stages.append(replace(stage, fn=built.fn))
            reports.append(_stage_report(stage.name, built))
        elif spec.on_unsupported == "fail":
            stages.append(Stage(stage.name, _failing(f"stage {stage.name}: {spec.label()}: {problem}")))
            reports.append({"stage": stage.name, "runs_as": "unsupported (fails)", "problem": problem})
        else:
            stages.append(stage)
            reports.append({"stage": stage.name, "runs_as": "eager (as written)", "problem": problem,
                            **_eager_sizes(stage)})
    build_ms = (time.perf_counter() - started) * 1000.0
    applied = replace(pipeline, stages=stages)
    first_call_ms, first_call_error = _first_call(applied, seed, example_clip_s)
    return applied, _report(spec, reports, build_ms, first_call_ms, first_call_error, example_clip_s)


def plain_report(pipeline: Pipeline, spec: VariantSpec, *, first_call: bool, seed: int = 0,
                 example_clip_s: float = EXAMPLE_CLIP_S) -> dict[str, Any]:
    """The build report of a variant that runs the pipeline as written: its sizes, and (when
    the suite compares variants) the same untimed first call the other variants make."""
    stages = [{"stage": s.name, "runs_as": "eager", **_eager_sizes(s)} for s in pipeline.stages]
    first_ms, error = _first_call(pipeline, seed, example_clip_s) if first_call else (None, None)
    return _report(spec, stages, 0.0, first_ms, error, example_clip_s)


def _build(stage: Stage, spec: VariantSpec, backend, ctx: BuildContext,
           examples: dict[str, dict]) -> tuple[StageBuild | None, str | None]:
    if stage.module is None or stage.call is None:
        return None, "no module: the stage gives only fn (name it: Stage(name, module=..., call=ModuleCall(...)))"
    if stage.name not in examples:
        return None, "the example call did not reach this stage"
    example = tuple(examples[stage.name][name] for name in stage.call.args)
    try:
        return backend.build_stage(stage, example, spec, replace(ctx, build_dir=ctx.build_dir)), None
    except UnsupportedStage as exc:
        return None, str(exc)
    except Exception as exc:  # a backend's own failure is this stage's problem, in one line
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


def _eager_sizes(stage: Stage) -> dict[str, Any]:
    if stage.module is None:
        return {"param_bytes": None, "file_bytes": None}
    return {"param_bytes": weight_bytes(stage.module), "file_bytes": saved_bytes(stage.module)}


def _stage_report(name: str, built: StageBuild) -> dict[str, Any]:
    return {"stage": name, "runs_as": built.runs_as, "build_ms": {k: round(v, 3) for k, v in built.build_ms.items()},
            "param_bytes": built.param_bytes, "file_bytes": built.file_bytes, "files": built.files,
            "notes": built.notes}


def _failing(message: str):
    def fail(value):
        raise UnsupportedStageError(message)
    return fail


def _example_clip(pipeline: Pipeline, seed: int, clip_s: float) -> dict:
    """The example clip on the pipeline's device; a batch of two for a batchable pipeline, so
    an exported graph keeps its batch axis free for batched chunks."""
    clip = pipeline.make_clip(clip_s, seed)
    if pipeline.batchable:
        clip = {k: torch.cat([v, v]) if torch.is_tensor(v) else v for k, v in clip.items()}
    return {k: v.to(pipeline.device) if torch.is_tensor(v) else v for k, v in clip.items()}


def _stage_inputs(pipeline: Pipeline, clip: dict) -> dict[str, dict]:
    """Each stage's input on the example clip, from the pipeline as written (fp32 eager)."""
    inputs, value = {}, clip
    with torch.inference_mode():
        for stage in pipeline.stages:
            inputs[stage.name] = value
            value = stage.fn(value)
    return {name: {k: v.clone() if torch.is_tensor(v) else v for k, v in entries.items()}
            for name, entries in inputs.items()}


def _first_call(pipeline: Pipeline, seed: int, clip_s: float) -> tuple[float | None, str | None]:
    """The first call of the variant on the example clip (lazy compilation happens here)."""
    value = _example_clip(pipeline, seed, clip_s)
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            for stage in pipeline.stages:
                value = stage.fn(value)
        if pipeline.device.startswith("cuda"):
            torch.cuda.synchronize()
    except Exception as exc:  # e.g. a stage that fails by on_unsupported: the cases will say it
        return None, f"{type(exc).__name__}: {exc}"[:300]
    return (time.perf_counter() - started) * 1000.0, None


def _report(spec: VariantSpec, stages: list[dict], build_ms: float, first_call_ms: float | None,
            first_call_error: str | None, example_clip_s: float) -> dict[str, Any]:
    def total(key: str) -> int | None:
        """Over the stages that name a module (a plain function's weights cannot be seen)."""
        values = [s[key] for s in stages if s.get(key) is not None]
        return int(sum(values)) if values else None

    setup_ms = build_ms + (first_call_ms or 0.0)
    return {
        "spec": spec.as_dict(), "label": spec.label(), "stages": stages,
        "param_bytes": total("param_bytes"), "file_bytes": total("file_bytes"),
        "build_ms": round(build_ms, 3), "first_call_ms": None if first_call_ms is None else round(first_call_ms, 3),
        "setup_ms": round(setup_ms, 3), "first_call_error": first_call_error, "example_clip_s": example_clip_s,
        "unsupported": [f"{s['stage']}: {s['problem']}" for s in stages if s.get("problem")],
    }
