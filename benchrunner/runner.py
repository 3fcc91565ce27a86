"""Run a suite: cases -> worker processes -> rows on disk -> summary and manifest.

The core never prints: progress goes to the ``on_event`` callback the CLI gives.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .cases import Case, build_cases
from .executors.local import LocalWorker
from .measure.environment import capture_environment, environment_warnings
from .pipeline import check_factory_args, resolve_factory
from .results import RunFiles, read_samples
from .rows import now_iso
from .suite import Suite
from .summary import summarise
from .warnings import run_warnings
from .worker import WorkerConfig

EventHandler = Callable[..., None]


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    cases: int
    failed_repeats: int
    warnings: list[dict] = field(default_factory=list)


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def new_run_id(suite_name: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", suite_name).strip("-")[:40] or "suite"
    return f"{stamp}-{slug}"


def _fresh_run_dir(out_dir: Path, run_id: str) -> tuple[str, Path]:
    candidate, n = run_id, 1
    while (out_dir / candidate).exists():
        n += 1
        candidate = f"{run_id}-{n}"
    path = out_dir / candidate
    path.mkdir(parents=True)
    return candidate, path


def check_pipeline(suite: Suite) -> None:
    """Import the factory and bind every variant's args before anything runs."""
    factory = resolve_factory(suite.pipeline, source=str(suite.path))
    for variant in suite.variants:
        field_name = "pipeline_args" if variant == "default" else f"variants.{variant}"
        check_factory_args(factory, suite.variant_args(variant), source=str(suite.path), field_name=field_name)


def run_suite(suite: Suite, *, out_dir: Path | None = None, argv: list[str] | None = None,
              on_event: EventHandler | None = None) -> RunResult:
    emit = on_event or (lambda *a, **k: None)
    check_pipeline(suite)
    device = resolve_device(suite.device)
    out_dir = Path(out_dir or suite.results_dir)
    run_id, run_dir = _fresh_run_dir(out_dir, new_run_id(suite.name))
    cases, notes = build_cases(suite, run_id=run_id, device=device)
    files = RunFiles(run_dir)
    manifest = _manifest(suite, run_id, device, argv or sys.argv, notes)
    files.write_manifest(manifest)
    emit("start", run_id=run_id, run_dir=run_dir, total=len(cases), device=device, notes=notes)
    status = "interrupted"
    try:
        manifest["workers"] = _run_cases(suite, cases, files, device, emit)
        status = "finished"
    finally:
        _finish(files, manifest, status, emit)
    samples = read_samples(run_dir)
    failed = int(((samples["stage"] == "total") & (samples["status"] != "ok")).sum())
    return RunResult(run_id, run_dir, status, len(cases), failed, manifest.get("warnings", []))


def _run_cases(suite: Suite, cases: list[Case], files: RunFiles, device: str, emit: EventHandler) -> list[dict]:
    workers_seen: list[dict] = []
    worker: LocalWorker | None = None
    try:
        for index, case in enumerate(cases):
            if worker is None or worker.config.pipeline_args != case.pipeline_args:
                if worker is not None:
                    worker.stop()
                worker = LocalWorker(WorkerConfig(suite.pipeline, case.pipeline_args, device,
                                                  suite.sampler.enabled, suite.sampler.hz))
                workers_seen.append({"variant": case.variant, **worker.info})
            next_refs = cases[index + 1].schedule()[:1] if index + 1 < len(cases) else []
            emit("case_start", case=case, index=index, total=len(cases))
            outcome = worker.run_case(case, next_refs,
                                      on_repeat=lambda r, c=case: emit("repeat", case=c, repeat=r))
            files.append_case(outcome.rows, outcome.timeline)
            emit("case_end", case=case, index=index, total=len(cases), rows=outcome.rows,
                 worker_lost=outcome.worker_lost)
            if outcome.worker_lost:
                worker.kill()
                worker = None
    finally:
        if worker is not None:
            worker.stop()
    return workers_seen


def _manifest(suite: Suite, run_id: str, device: str, argv: list[str], notes: list[str]) -> dict[str, Any]:
    env = capture_environment(cwd=Path.cwd())
    return {
        "format_version": 1, "run_id": run_id, "status": "running", "argv": list(argv),
        "started_at": now_iso(), "ended_at": None, "benchrunner_version": __version__,
        "suite": {"name": suite.name, "path": str(suite.path), "as_loaded": suite.raw,
                  "modes": [m.label for m in suite.modes], "clip_lengths_s": suite.clip_lengths_s,
                  "variants": suite.variants, "pipeline": suite.pipeline, "repeats": suite.repeats,
                  "warmup": suite.warmup, "device": device},
        "environment": env, "notes": notes,
        "warnings": [w.__dict__ for w in environment_warnings(env)],
    }


def _finish(files: RunFiles, manifest: dict, status: str, emit: EventHandler) -> None:
    samples = read_samples(files.dir)
    summary = summarise(samples)
    files.write_summary(summary)
    manifest["warnings"] = manifest.get("warnings", []) + [w.__dict__ for w in run_warnings(summary)]
    manifest.update(status=status, ended_at=now_iso())
    files.write_manifest(manifest)
    emit("finished", status=status, run_dir=files.dir, warnings=manifest["warnings"], summary=summary)
