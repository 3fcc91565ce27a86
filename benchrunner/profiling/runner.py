"""Profile one case (or two, to compare) in this process under torch.profiler.

In-process on purpose: ``bench profile`` is already its own short-lived process, nothing
here writes benchmark rows, and Nsight Systems wraps exactly that process (see
:mod:`.nsys`). The case is built exactly as ``bench run`` builds it (same suite, inputs,
chunk settings, prefetch thread); the stage calls are wrapped in ranges by
:class:`ProfilingStageTimer`, the input wait in an ``io_wait`` range.

Schedule: ``wait`` = the suite's warm-ups (at least 1, unprofiled), ``warmup`` = 1
(profiled, discarded), ``active`` = the case's repeats. Only the active steps are in the
trace and in every number derived from it.
"""

from __future__ import annotations

import gzip
import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from ..errors import BenchError, UserError
from ..measure.gpu import select_cuda_device
from ..measure.timing import synchronize
from ..pipeline import Pipeline, load_pipeline
from ..run.cases import Case, build_cases
from ..run.failures import describe_exception
from ..run.inputs import Prefetcher
from ..run.modes import ChunkedMode, ChunkFailed, execute_mode, parse_mode
from ..suite import load_suite
from .analysis import IO_WAIT, Analysis, TraceError, analyse
from .store import TRACE_FILE, case_dir, write_profile
from .timer import ProfilingStageTimer


class ProfileError(BenchError):
    """The profiled case failed, or its trace could not be analysed: exit code 1."""


@dataclass(frozen=True)
class Schedule:
    wait: int
    warmup: int
    active: int

    @property
    def steps(self) -> int:
        return self.wait + self.warmup + self.active


@dataclass
class ProfileResult:
    case: Case
    dir: Path
    analysis: Analysis
    summary: dict
    stages: list[str]


def plan_cases(suite_path: str | Path, modes: list[str], clip_s: float, *, variant: str | None = None,
               repeats: int | None = None, overrides: dict | None = None) -> list[Case]:
    """The cases ``bench run`` would measure for these modes at ``clip_s`` (one variant)."""
    if not clip_s > 0:
        raise UserError(f"--length: {clip_s:g} is not a clip length (expected positive seconds, e.g. 30)")
    if repeats is not None and repeats < 1:
        raise UserError(f"--repeats: {repeats} (expected an integer >= 1)")
    suite = load_suite(suite_path, overrides)
    specs = [_parse_mode(m) for m in modes]
    chosen = variant or next(iter(suite.variants))
    if chosen not in suite.variants:
        raise UserError(f"--variant: {chosen!r} is not a variant of {suite.path} "
                        f"(expected one of {', '.join(suite.variants)})")
    suite = replace(suite, clip_lengths_s=[float(clip_s)], modes=specs, variants={chosen: suite.variants[chosen]},
                    repeats=repeats or suite.repeats)
    from ..run.runner import resolve_device

    cases, _ = build_cases(suite, run_id="profile", device=resolve_device(suite.device))
    return cases


def _parse_mode(text: str):
    try:
        return parse_mode(text)
    except ValueError as exc:
        raise UserError(f"--mode: {exc}") from None


def open_pipeline(case: Case, stage: str | None = None) -> Pipeline:
    """Load the case's pipeline on its device; check ``stage`` names one of its stages."""
    if case.device.startswith("cuda"):
        select_cuda_device(case.device)
    pipeline = load_pipeline(case.pipeline, case.pipeline_args, device=case.device)
    if not case.backend.is_plain():  # the variant's backend and precision, as bench run applies them
        import tempfile

        from ..backends.apply import apply_variant

        pipeline, _ = apply_variant(pipeline, case.backend,
                                    build_dir=Path(tempfile.mkdtemp(prefix="benchrunner-profile-build-")))
    if stage is not None and stage not in pipeline.stage_names():
        raise UserError(f"--stage: {stage!r} is not a stage of {pipeline.name} "
                        f"(expected one of {', '.join(pipeline.stage_names())})")
    return pipeline


def profile_cases(cases: list[Case], base_dir: Path, *, stage: str | None = None) -> list[ProfileResult]:
    """Profile each case (pipeline loaded once) into ``base_dir/<case>/``."""
    pipeline = open_pipeline(cases[0], stage)
    return [profile_case(pipeline, case, case_dir(base_dir, case)) for case in cases]


def profile_case(pipeline: Pipeline, case: Case, out_dir: Path) -> ProfileResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = schedule_for(case)
    timer = ProfilingStageTimer(case.device)
    activity = profiler_activity(case.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if activity == "cuda" else [])
    with profile(activities=activities, record_shapes=True, profile_memory=True,
                 schedule=schedule(wait=plan.wait, warmup=plan.warmup, active=plan.active, repeat=1)) as prof:
        run_steps(pipeline, case, timer, plan.steps, after_step=prof.step)
    trace_path = out_dir / TRACE_FILE
    prof.export_chrome_trace(str(trace_path))
    analysis = _analyse(trace_path, timer, pipeline, activity)
    summary = write_profile(out_dir, case, analysis, asdict(plan), pipeline.stage_names())
    return ProfileResult(case, out_dir, analysis, summary, pipeline.stage_names())


def schedule_for(case: Case) -> Schedule:
    return Schedule(wait=max(1, case.warmup), warmup=1, active=case.repeats)


def profiler_activity(device: str) -> str:
    """``cuda`` when the case runs on a GPU and this torch can trace CUDA, else ``cpu``."""
    if device.startswith("cuda") and ProfilerActivity.CUDA in torch.profiler.supported_activities():
        return "cuda"
    return "cpu"


def run_steps(pipeline: Pipeline, case: Case, timer: ProfilingStageTimer, steps: int, *,
              after_step: Callable[[], None] = lambda: None,
              step_range: Callable[[int], AbstractContextManager] = lambda index: nullcontext()) -> None:
    """``steps`` calls of the case, each fed by the prefetch thread like a worker's repeats,
    each inside ``step_range(index)`` and followed by ``after_step()``."""
    prefetcher = Prefetcher(pipeline)
    prefetcher.schedule([case.input_for(i) for i in range(steps)])
    chunked = ChunkedMode(**asdict(case.chunk))
    try:
        for index in range(steps):
            with step_range(index):
                _one_call(pipeline, case, timer, prefetcher, chunked)
            after_step()
    finally:
        prefetcher.close()


def _one_call(pipeline: Pipeline, case: Case, timer: ProfilingStageTimer, prefetcher: Prefetcher,
              chunked: ChunkedMode) -> None:
    with timer.range(IO_WAIT):
        ref, clip, _ = prefetcher.get()
        if isinstance(clip, BaseException):
            raise ProfileError(f"{case.case_id}: input {ref.label}: {describe_exception(clip)}")
        if case.device.startswith("cuda"):
            clip = {k: v.to(case.device, non_blocking=True) for k, v in clip.items()}
            synchronize(case.device)
    try:
        with torch.inference_mode():
            execute_mode(case.mode, pipeline, clip, pipeline.duration_s(clip, case.clip_s), timer, chunked)
            synchronize(case.device)
    except ChunkFailed as exc:
        raise ProfileError(f"{case.case_id}: {exc}") from None
    except Exception as exc:  # the case itself failed: nothing to profile
        raise ProfileError(f"{case.case_id}: {describe_exception(exc)}") from None


def _analyse(trace_path: Path, timer: ProfilingStageTimer, pipeline: Pipeline, activity: str) -> Analysis:
    with gzip.open(trace_path, "rt", encoding="utf-8") as f:
        trace = json.load(f)
    try:
        return analyse(trace, timer.stage_of, pipeline.stage_names(), activity)
    except TraceError as exc:
        raise ProfileError(f"{trace_path}: {exc}") from None
