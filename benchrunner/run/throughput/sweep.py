"""The parent's side of the throughput scenario: levels -> worker -> throughput.csv.

For every case of the suite (variant x clip length x mode) the concurrency levels run in
ascending order, each in the worker process (same loading and isolation as the latency
scenario). A level's rows are appended and fsynced when it ends. A level that loses its
worker (a crash, a timeout) gets one ``total`` row with that status and the error, a fresh
worker is started, and the sweep goes on with the next level; failed clips inside a level
(out of memory at high concurrency, a stage error) are counted on the level's row.
When the sweep ends, the knee of each curve is marked (curves.mark_knees).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..cases import Case
from ...store.results import now_iso
from ...suite import Suite
from ...analysis.throughput.curves import mark_knees
from .level import LevelTask
from ...analysis.throughput.levelstats import LevelMeta
from ...store.throughput import (KIND_TOTAL, append_level, has_throughput, read_throughput,
                     rewrite_throughput)


def level_tasks(suite: Suite, cases: list[Case]) -> list[LevelTask]:
    """One task per case and concurrency level, levels ascending within a case."""
    cfg = suite.throughput
    return [LevelTask(run_id=c.run_id, suite=c.suite, pipeline=c.pipeline, variant=c.variant,
                      pipeline_args=c.pipeline_args, mode=c.mode, clip_s=c.clip_s, concurrency=level,
                      inputs=c.inputs, chunk=c.chunk, device=c.device, config=cfg,
                      memory_limit_bytes=c.memory_limit_bytes, timeout_s=c.timeout_s, warmup=c.warmup,
                      backend=c.backend, build_dir=c.build_dir)
            for c in cases for level in cfg.concurrency]


def done_levels(run_dir: Path) -> set[tuple]:
    """Keys of the levels throughput.csv already holds (for resume)."""
    if not has_throughput(run_dir):
        return set()
    totals = read_throughput(run_dir)
    totals = totals[totals["kind"] == KIND_TOTAL]
    return {(r.pipeline, r.variant, r.mode, None if r.threshold_s != r.threshold_s else float(r.threshold_s),
             float(r.clip_s), int(r.concurrency)) for r in totals.itertuples()}


def lost_level_rows(task: LevelTask, status: str, error: str) -> list[dict]:
    """The one row of a level whose worker was lost: its status and what happened."""
    cfg = task.config
    meta = LevelMeta(task.run_id, task.suite, task.pipeline, task.variant, task.mode.kind, task.mode.threshold_s,
                     task.clip_s, task.concurrency, task.device, cfg.stability_pct, cfg.window_s, cfg.window_clips,
                     cfg.queue_depth, "", now_iso())
    return [{**meta.columns(), "kind": KIND_TOTAL,
             "stage": KIND_TOTAL, "device": task.device, "status": status, "error": error, "windows": 0,
             "stable": False, "clips": 0, "failures": 0}]


def run_sweep(tasks: list[LevelTask], run_dir: Path, get_worker: Callable[[LevelTask], object],
              lose_worker: Callable[[], None], emit: Callable[..., None], *, knee_budget_ms: float | None,
              skip: set[tuple] = frozenset()) -> int:
    """Measure every level not in ``skip``; returns how many levels lost their worker."""
    lost = 0
    todo = [t for t in tasks if t.key() not in skip]
    for index, task in enumerate(todo):
        emit("level_start", task=task, index=index, total=len(todo))
        worker = get_worker(task)
        status, rows, samples, notes = worker.run_level(task)
        if status != "ok":
            lost += 1
            lose_worker()
            rows, samples = lost_level_rows(task, status, notes[0] if notes else status), []
        append_level(run_dir, rows, samples)
        emit("level_end", task=task, index=index, total=len(todo), row=rows[0], notes=notes)
    if has_throughput(run_dir):
        rewrite_throughput(run_dir, mark_knees(read_throughput(run_dir), knee_budget_ms))
    return lost


