"""One concurrency level, measured inside the worker process.

Warm-up (clips not recorded, at least one per slot so the pipeline is full), then windows
until the stability rule stops the level (windows.py), then the clips in flight drain and the
rows are built (levelstats.py). The suite's ``memory_limit_gb`` applies to the whole level
(warm-up included) from the moment the executor's threads exist (their stacks and malloc
arenas are address space too), so it bounds what the clips in flight add, as it bounds what
a latency case adds: an allocation beyond it fails the clip as ``oom``, the slot is freed,
and the level goes on.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..cases import case_id
from ..inputs import InputRef, load_clip
from ...modespec import ModeSpec
from ...pipeline import Pipeline
from ...store.results import now_iso
from ...suite import ChunkConfig, ThroughputConfig, VariantSpec
from ...analysis.throughput.levelstats import LevelMeta, level_rows, make_window, sample_rows
from .pipelined import PipelinedExecutor
from .placement import TIMER_SOURCE_HOST, TIMER_SOURCE_STREAM
from ...analysis.throughput.windows import Window, should_stop

DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LevelTask:
    """Everything a worker needs to measure one level (and the columns that identify it).
    ``variant``, ``pipeline_args`` and ``device`` pick the worker, as a Case's do."""

    run_id: str
    suite: str
    pipeline: str
    variant: str
    pipeline_args: dict[str, Any]
    mode: ModeSpec
    clip_s: float
    concurrency: int
    inputs: tuple[InputRef, ...]
    chunk: ChunkConfig
    device: str
    config: ThroughputConfig
    memory_limit_bytes: int | None
    timeout_s: float
    warmup: int = 1
    backend: VariantSpec = field(default_factory=VariantSpec)  # the variant's backend/precision, as a Case's
    build_dir: str | None = None

    @property
    def level_id(self) -> str:
        return f"{case_id(self.variant, self.mode, self.clip_s)}@c{self.concurrency}"

    def key(self) -> tuple:
        return (self.pipeline, self.variant, self.mode.kind, self.mode.threshold_s, self.clip_s, self.concurrency)


@dataclass
class LevelResult:
    rows: list[dict]
    samples: list[dict]
    notes: list[str] = field(default_factory=list)


class _ClipSource:
    """Fresh clips cycling through the level's inputs; each input is loaded once."""

    def __init__(self, pipeline: Pipeline, inputs: tuple[InputRef, ...]):
        self.pipeline, self.inputs, self.index, self.cache = pipeline, inputs, 0, {}

    def __call__(self) -> tuple[str, dict]:
        ref = self.inputs[self.index % len(self.inputs)]
        self.index += 1
        if ref not in self.cache:
            self.cache[ref] = load_clip(ref, self.pipeline)
        return ref.label, {k: v.clone() for k, v in self.cache[ref].items()}


def measure_level(pipeline: Pipeline, task: LevelTask, devices: list[str], memory, memory_limit) -> LevelResult:
    """Measure one level. ``memory`` is the worker's memory tracker (begin/end), applied to the
    whole level; ``memory_limit(limit_bytes, device)`` the worker's limit context."""
    cfg = task.config
    meta = LevelMeta(task.run_id, task.suite, task.pipeline, task.variant, task.mode.kind, task.mode.threshold_s,
                     task.clip_s, task.concurrency, task.device, cfg.stability_pct, cfg.window_s, cfg.window_clips,
                     cfg.queue_depth,
                     TIMER_SOURCE_STREAM if any(d.startswith("cuda") for d in devices) else TIMER_SOURCE_HOST,
                     now_iso())
    executor = PipelinedExecutor(pipeline, devices, task.mode, task.chunk, concurrency=task.concurrency,
                                 queue_depth=cfg.queue_depth, clip_s=task.clip_s,
                                 next_clip=_ClipSource(pipeline, task.inputs))
    cuda_devices = sorted({d for d in devices if d.startswith("cuda")})
    deadline = time.perf_counter_ns() + int(task.timeout_s * 0.9e9)
    memory.begin()
    cuda_before = {}
    for d in cuda_devices:
        torch.cuda.reset_peak_memory_stats(torch.device(d))
        cuda_before[d] = torch.cuda.memory_allocated(torch.device(d))
    cpu_start, wall_start = time.process_time_ns(), time.perf_counter_ns()
    windows: list[Window] = []
    stable, ended_by, drained = False, None, False
    executor.start()
    with memory_limit(task.memory_limit_bytes, task.device):
        executor.go()
        try:
            if not executor.wait_completed(max(1, task.warmup) * task.concurrency, deadline) \
                    and not executor.feed_errors:
                ended_by = "timeout"
            while ended_by is None and not executor.feed_errors:
                start = time.perf_counter_ns()
                if cfg.window_clips:
                    finished = executor.wait_completed(executor.completed() + cfg.window_clips, deadline)
                else:
                    window_end = start + int(cfg.window_s * 1e9)
                    executor.wait_completed(10**12, min(window_end, deadline))
                    finished = time.perf_counter_ns() < deadline
                windows.append(make_window(executor.clips, start, time.perf_counter_ns()))
                if not finished:
                    ended_by = "timeout"
                    break
                stop, stable = should_stop(windows, cfg.stability_pct, cfg.max_windows)
                if stop:
                    break
            cpu_ns, wall_ns = time.process_time_ns() - cpu_start, time.perf_counter_ns() - wall_start
            drained = executor.stop(DRAIN_TIMEOUT_S)
        except BaseException:
            executor.stop(1.0)
            raise
    reading = memory.end()
    peak, growth = reading.peak_bytes, reading.growth_bytes
    if cuda_devices:  # every device the stages use: absolute peaks and what the level added, summed
        peaks = {d: torch.cuda.max_memory_allocated(torch.device(d)) for d in cuda_devices}
        peak, growth = float(sum(peaks.values())), float(sum(peaks[d] - cuda_before[d] for d in cuda_devices))
    cpu_util = 100.0 * cpu_ns / wall_ns / (os.cpu_count() or 1) if wall_ns > 0 else None
    level_error = executor.feed_errors[0] if executor.feed_errors else ""
    if ended_by == "timeout":
        level_error = (f"level did not finish within 0.9 x timeout_s = {0.9 * task.timeout_s:g} s "
                       f"({len(windows)} window(s), {executor.completed()} clip(s) completed)")
    rows = level_rows(meta, pipeline.stage_names(), devices, windows, stable, executor.clips,
                      executor.stage_events, executor.transfer_events, peak_mem_bytes=peak, peak_mem_growth_bytes=growth,
                      mem_source="cuda_allocator" if cuda_devices else reading.source, cpu_util_pct=cpu_util,
                      level_error=level_error, ended_by=ended_by if ended_by else None)
    notes = [] if drained else [f"{task.level_id}: clips still in flight {DRAIN_TIMEOUT_S:g} s after the level "
                                "ended (a stage may hang)"]
    return LevelResult(rows, sample_rows(meta, windows, executor.clips), notes)
