"""Run a suite: cases -> worker processes -> rows on disk -> summary and manifest.

The core never prints: progress goes to the ``on_event`` callback the CLI gives.
A run folder is locked while a process writes into it; an interrupted run (signal, kill,
power cut) is finished later with :func:`resume_run`, under the same run id.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..analysis.summary import summarise
from ..analysis.warnings import (device_memory_warnings, gpu_run_warnings, other_process_warnings, quality_warnings,
                                 run_warnings, sampler_warnings)
from ..errors import Interrupted, UserError, scrub_argv
from ..measure.environment import capture_environment, diff_environments, environment_warnings, source_commits
from ..measure.gpu import resolve_device as gpu_resolve_device
from ..pipeline import check_factory_args, resolve_factory
from ..store.locks import FileLock
from ..store.results import (WORKER_LOG, RunFiles, now_iso, read_manifest, read_samples, read_timeline, repair_run,
                             samples_schema_matches)
from ..store.runs import check_run_id, is_run_id
from ..suite import Suite, validate_suite
from .cases import Case, build_cases
from .executors.local import LocalWorker
from .worker import WorkerConfig

EventHandler = Callable[..., None]
DRIFT_TOLERANCE = 0.05
DRIFT_SLACK_BYTES = 16 * 2**20


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    cases: int
    failed_repeats: int
    warnings: list[dict] = field(default_factory=list)


def resolve_device(requested: str) -> str:
    """``auto``/``cuda`` -> ``cuda:N`` or ``cpu`` (see measure.gpu.resolve_device)."""
    return gpu_resolve_device(requested)


def new_run_id(suite_name: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", suite_name).strip("-")[:40] or "suite"
    return f"{stamp}-{slug}"


def _fresh_run_dir(out_dir: Path, run_id: str, explicit: bool) -> tuple[str, Path]:
    candidate, n = run_id, 1
    while True:
        path = out_dir / candidate
        try:
            path.mkdir(parents=True)
            return candidate, path
        except FileExistsError:
            if explicit:
                return candidate, path  # the lock and the emptiness check decide
            n += 1
            candidate = f"{run_id}-{n}"


def check_pipeline(suite: Suite) -> None:
    """Import the factory and bind every variant's args before anything runs."""
    factory = resolve_factory(suite.pipeline, source=str(suite.path))
    for variant in suite.variants:
        field_name = "pipeline_args" if variant == "default" else f"variants.{variant}"
        check_factory_args(factory, suite.variant_args(variant), source=str(suite.path), field_name=field_name)


def run_lock(run_dir: Path) -> FileLock:
    return FileLock(run_dir / ".lock", what=f"run folder {run_dir}")


def run_suite(suite: Suite, *, out_dir: Path | None = None, argv: list[str] | None = None,
              on_event: EventHandler | None = None, run_id: str | None = None, wait: bool = False) -> RunResult:
    """A new run of ``suite`` into ``out_dir/<run_id>`` (a fresh id unless one is given)."""
    explicit = run_id is not None
    run_id = check_run_id(run_id, "--run-id") if explicit else new_run_id(suite.name)
    check_pipeline(suite)
    device = resolve_device(suite.device)
    out_dir = Path(out_dir or suite.results_dir)
    out_existed = out_dir.exists()
    run_id, run_dir = _fresh_run_dir(out_dir, run_id, explicit)
    slot = _WorkerSlot(suite, run_dir / WORKER_LOG)
    try:
        with run_lock(run_dir).acquire(wait=wait):
            if (run_dir / "manifest.json").exists():
                raise UserError(f"--run-id: {run_dir} already holds a run (expected a new id, or --resume {run_id})")
            cases, notes = _prepare(suite, slot, run_id, device, run_dir, None if out_existed else out_dir)
            manifest = _manifest(suite, run_id, device, argv or sys.argv, notes)
            return _execute(suite, RunFiles(run_dir), manifest, cases, on_event, slot=slot)
    finally:
        slot.kill()


def _prepare(suite: Suite, slot: "_WorkerSlot", run_id: str, device: str, run_dir: Path,
             created_out_dir: Path | None) -> tuple[list[Case], list]:
    """Cases, and the first worker started: a bucket without inputs or a pipeline that fails
    to load is bad input, and leaves no folder behind that this run made."""
    try:
        cases, notes = build_cases(suite, run_id=run_id, device=device)
        slot.get(cases[0])
    except UserError:
        if not any(p.name not in (".lock", WORKER_LOG) for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
            if created_out_dir is not None and not any(created_out_dir.iterdir()):
                created_out_dir.rmdir()
        raise
    return cases, notes


def resume_run(run_ref: str, *, out_dir: Path | None = None, suite: Suite | None = None,
               argv: list[str] | None = None, on_event: EventHandler | None = None, force: bool = False,
               wait: bool = False) -> RunResult:
    """Finish the cases of an interrupted run that have no complete rows, under its run id."""
    run_dir = _find_run_dir(run_ref, out_dir)
    with run_lock(run_dir).acquire(wait=wait):
        manifest = read_manifest(run_dir)
        check_run_id(manifest.get("run_id"), f"{run_dir / 'manifest.json'}: run_id")
        stored = validate_suite(manifest["suite"]["as_loaded"], Path(manifest["suite"]["path"]))
        _check_resumable(manifest, stored, suite, force)
        if not samples_schema_matches(run_dir):
            raise UserError(f"--resume {manifest['run_id']}: {run_dir / 'samples.csv'}: written with an older "
                            "column schema (expected the columns of this benchrunner; resume it with the "
                            "version that started it, or start a new run)")
        complete, repairs = repair_run(run_dir, stored.repeats)
        device = manifest["suite"]["device"]
        cases, notes = build_cases(stored, run_id=manifest["run_id"], device=device)
        todo = [c for c in cases if c.case_id not in complete]
        manifest.setdefault("resumed", []).append({
            "at": now_iso(), "argv": scrub_argv(argv or sys.argv), "repairs": repairs, "cases_left": len(todo),
            "environment_diff": _env_diff(manifest["environment"], capture_environment(cwd=Path.cwd())),
        })
        manifest["status"] = "running"
        emit = on_event or (lambda *a, **k: None)
        for note in repairs:
            emit("note", text=note)
        return _execute(stored, RunFiles(run_dir), manifest, todo, on_event, total=len(cases),
                        done=len(cases) - len(todo), slot=_WorkerSlot(stored, run_dir / WORKER_LOG))


def _find_run_dir(run_ref: str, out_dir: Path | None) -> Path:
    candidates = [Path(run_ref)] + ([Path(out_dir or "results") / run_ref] if is_run_id(run_ref) else [])
    for candidate in candidates:
        if (candidate / "manifest.json").exists():
            return candidate
    raise UserError(f"--resume: {run_ref!r}: no run folder with a manifest.json "
                    f"(expected a run id under {out_dir or 'results'}/ or a path)")


def _env_diff(old: dict, new: dict) -> list[list[Any]]:
    return [list(d) for d in diff_environments(old, new)]


def _check_resumable(manifest: dict, stored: Suite, given: Suite | None, force: bool) -> None:
    """The suite and the environment must still be those of the run (or ``force``)."""
    problems = []
    if given is not None and given.raw != stored.raw:
        fields = sorted(k for k in set(given.raw) | set(stored.raw) if given.raw.get(k) != stored.raw.get(k))
        problems.append(f"the suite differs from the run's in {', '.join(fields)}")
    diff = diff_environments(manifest["environment"], capture_environment(cwd=Path.cwd()))
    if diff:
        problems.append("the environment differs in " + ", ".join(f"{k} ({a} -> {b})" for k, a, b in diff))
    if problems and not force:
        raise UserError(f"--resume {manifest['run_id']}: {'; '.join(problems)} "
                        "(expected the same; --force resumes anyway and records the difference)")


def _execute(suite: Suite, files: RunFiles, manifest: dict, cases: list[Case], on_event: EventHandler | None,
             *, slot: "_WorkerSlot", total: int | None = None, done: int = 0) -> RunResult:
    emit = on_event or (lambda *a, **k: None)
    files.write_manifest(manifest)
    emit("start", run_id=manifest["run_id"], run_dir=files.dir, total=total or len(cases), done=done,
         device=manifest["suite"]["device"], notes=manifest.get("notes", []))
    status = "interrupted"
    try:
        _run_cases(slot, cases, files, emit, offset=done, total=total or len(cases))
        status = "finished"
    except Interrupted as exc:
        exc.run_id = manifest["run_id"]
        raise
    finally:
        manifest["workers"] = manifest.get("workers", []) + slot.workers
        manifest["baseline_drift"] = manifest.get("baseline_drift", []) + slot.drift
        manifest["sampler"] = slot.sampler
        _finish(files, manifest, status, emit)
    samples = read_samples(files.dir)
    failed = int(((samples["stage"] == "total") & (samples["status"] != "ok")).sum())
    return RunResult(manifest["run_id"], files.dir, status, len(cases), failed, manifest.get("warnings", []))


class _WorkerSlot:
    """The current worker, replaced when the variant changes, when it dies, or when its
    memory does not return to its baseline after a case (recorded as baseline drift)."""

    def __init__(self, suite: Suite, log_path: Path | None = None):
        self.suite = suite
        self.log_path = log_path  # the run folder's worker.log: the pipeline's own output
        self.worker: LocalWorker | None = None
        self.reference_baseline: int | None = None
        self.workers: list[dict] = []   # what each worker reported when ready
        self.drift: list[dict] = []     # workers replaced because memory did not come back
        self.single_pass_lost: set[tuple[str, float]] = set()  # (variant, clip_s) whose single pass killed a worker
        self.sampler: dict = {"util_sources": [], "errors": [], "source_changes": [], "fallback_reason": None,
                              "other_gpu_pids": [], "quality_problems": [], "device_mem_notes": []}

    def note_diagnostics(self, diagnostics: dict) -> None:
        """Accumulate the sampler's notes over workers, each item once."""
        if not diagnostics:
            return
        notes = self.sampler
        if diagnostics["util_source"] not in notes["util_sources"]:
            notes["util_sources"].append(diagnostics["util_source"])
        for key in ("errors", "source_changes", "other_gpu_pids", "quality_problems", "device_mem_notes"):
            notes.setdefault(key, []).extend(x for x in diagnostics.get(key, []) if x not in notes[key])
        notes["fallback_reason"] = notes["fallback_reason"] or diagnostics["fallback_reason"]

    def get(self, case: Case) -> LocalWorker:
        if self.worker is None or self.worker.config.pipeline_args != case.pipeline_args:
            self.close()
            self.worker = LocalWorker(WorkerConfig(self.suite.pipeline, case.pipeline_args, case.device,
                                                   self.suite.sampler.enabled, self.suite.sampler.hz,
                                                   self.suite.timer),
                                      source=str(self.suite.path), log_path=self.log_path)
            self.workers.append({"variant": case.variant, **self.worker.info})
            self.reference_baseline = None
        return self.worker

    def after_case(self, case: Case, baseline_after: int | None, lost: str | None) -> None:
        if lost:
            self.kill()
            return
        if baseline_after is None:
            return
        if self.reference_baseline is None:
            self.reference_baseline = baseline_after
            return
        limit = self.reference_baseline * (1 + DRIFT_TOLERANCE) + DRIFT_SLACK_BYTES
        if baseline_after > limit:
            self.drift.append({
                "after_case": case.case_id, "reference_bytes": self.reference_baseline,
                "baseline_bytes": baseline_after, "action": "worker restarted"})
            self.close()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def kill(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None


def _run_cases(slot: "_WorkerSlot", cases: list[Case], files: RunFiles, emit: EventHandler, *,
               offset: int, total: int) -> None:
    progress = _Progress(emit, offset, total)
    groups = case_groups(cases, slot.suite.interleave)
    try:
        for index, group in enumerate(groups):
            following = groups[index + 1][0].schedule()[:1] if index + 1 < len(groups) else []
            _run_group(slot, group, following, files, progress)
    except BaseException:
        slot.kill()  # abandon the cases in progress: no partial rows, they run again on --resume
        raise
    slot.close()


def case_groups(cases: list[Case], interleave: bool) -> list[list[Case]]:
    """Cases measured together: with ``interleave``, the modes of one variant and clip length
    (their repeats alternate, so drift over time falls on all of them alike); else one each."""
    groups: list[list[Case]] = []
    for case in cases:
        last = groups[-1][-1] if groups else None
        if interleave and last is not None and (last.variant, last.clip_s) == (case.variant, case.clip_s):
            groups[-1].append(case)
        else:
            groups.append([case])
    return groups


class _Progress:
    def __init__(self, emit: EventHandler, done: int, total: int):
        self.emit, self.done, self.total = emit, done, total

    def started(self, group: list[Case]) -> None:
        self.emit("case_start", case=group[0], index=self.done, total=self.total)

    def finished(self, case: Case, rows: list[dict], worker_lost: str | None) -> None:
        self.emit("case_end", case=case, index=self.done, total=self.total, rows=rows, worker_lost=worker_lost)
        self.done += 1


def _run_group(slot: "_WorkerSlot", group: list[Case], following: list, files: RunFiles,
               progress: _Progress) -> None:
    """Measure a group; write each finished case at once. When the worker dies mid-group, the
    case it was running keeps its failed repeat and the group's unfinished cases run again,
    each alone in a fresh worker."""
    group = [_without_doomed_reference(slot, case) for case in group]
    worker = slot.get(group[0])
    progress.started(group)
    outcome = worker.run_group(group, following,
                               on_repeat=lambda case, r: progress.emit("repeat", case=case, repeat=r))
    for case in group:
        if case.case_id not in outcome.unfinished:
            result = outcome.cases[case.case_id]
            files.append_case(result.rows, result.timeline)
            progress.finished(case, result.rows, outcome.worker_lost if case.case_id == outcome.lost_case else None)
    _show_log_tail(progress, outcome, slot.log_path)
    slot.after_case(group[-1], outcome.baseline_after, outcome.worker_lost)
    slot.note_diagnostics(outcome.diagnostics)
    lost = next((c for c in group if c.case_id == outcome.lost_case), None)
    if lost is not None and _runs_single_pass(lost):
        slot.single_pass_lost.add((lost.variant, lost.clip_s))
    for case in group:
        if case.case_id in outcome.unfinished:
            _run_group(slot, [case], [], files, progress)


def _show_log_tail(progress: _Progress, outcome, log_path: Path | None) -> None:
    """When a worker was lost, say so with the last lines it wrote (its log is in the run folder)."""
    if outcome.worker_lost and outcome.log_tail:
        progress.emit("note", text=f"worker lost ({outcome.worker_lost}) in {outcome.lost_case}; last lines of "
                                   f"{log_path}:\n    " + "\n    ".join(outcome.log_tail))


def _without_doomed_reference(slot: "_WorkerSlot", case: Case) -> Case:
    """No untimed single-pass quality reference for a clip whose single pass killed a worker:
    it would kill this case's worker too (quality then stays blank)."""
    if case.want_quality and (case.variant, case.clip_s) in slot.single_pass_lost:
        return replace(case, want_quality=False)
    return case


def _runs_single_pass(case: Case) -> bool:
    return case.mode.kind == "single" or (case.mode.kind == "hybrid" and case.clip_s <= case.mode.threshold_s)


def _manifest(suite: Suite, run_id: str, device: str, argv: list[str], notes: list[str]) -> dict[str, Any]:
    env = capture_environment(cwd=Path.cwd())
    env["sources"] = source_commits(suite.pipeline)
    return {
        "format_version": 1, "run_id": run_id, "status": "running", "argv": scrub_argv(argv),
        "started_at": now_iso(), "ended_at": None, "benchrunner_version": __version__,
        "suite": {"name": suite.name, "path": str(suite.path), "as_loaded": suite.raw,
                  "modes": [m.label for m in suite.modes], "clip_lengths_s": suite.clip_lengths_s,
                  "variants": suite.variants, "pipeline": suite.pipeline, "repeats": suite.repeats,
                  "warmup": suite.warmup, "device": device},
        "environment": env, "notes": notes,
        "environment_warnings": [w.__dict__ for w in environment_warnings(env)],
    }


def _sampler_warnings(manifest: dict) -> list:
    notes = manifest.get("sampler") or {}
    if not notes:
        return []
    sources = notes["util_sources"]
    found = sampler_warnings(notes["errors"], notes["source_changes"], sources[-1] if sources else "off",
                             notes["fallback_reason"])
    return found + other_process_warnings(notes["other_gpu_pids"]) + \
        quality_warnings(notes.get("quality_problems", [])) + device_memory_warnings(notes.get("device_mem_notes", []))


def _finish(files: RunFiles, manifest: dict, status: str, emit: EventHandler) -> None:
    samples = read_samples(files.dir)
    summary = summarise(samples)
    files.write_summary(summary)
    found = run_warnings(summary) + gpu_run_warnings(read_timeline(files.dir)) + _sampler_warnings(manifest)
    manifest["warnings"] = manifest.get("environment_warnings", []) + [w.__dict__ for w in found]
    manifest.update(status=status, ended_at=now_iso())
    files.write_manifest(manifest)
    emit("finished", status=status, run_dir=files.dir, warnings=manifest["warnings"], summary=summary)
