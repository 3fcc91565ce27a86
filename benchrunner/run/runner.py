"""Run a suite: cases -> worker processes -> rows on disk -> summary and manifest.

The core never prints: progress goes to the ``on_event`` callback the CLI gives.
A run folder is locked while a process writes into it; an interrupted run (signal, kill,
power cut) is finished later with :func:`resume_run`, under the same run id.
"""

from __future__ import annotations

import queue
import re
import shutil
import signal
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..analysis import stats
from ..analysis.summary import summarise
from ..analysis.warnings import (device_memory_warnings, gpu_run_warnings, other_process_warnings, placement_warnings,
                                 quality_warnings, run_warnings, sampler_warnings)
from ..errors import Interrupted, StorageError, UserError, scrub_argv
from ..measure.environment import capture_environment, diff_environments, environment_warnings, source_commits
from ..measure.gpu import resolve_device as gpu_resolve_device
from ..pipeline import check_factory_args, resolve_factory
from ..store.locks import FileLock
from ..store.results import (TOTAL_STAGE, WORKER_LOG, RunFiles, manifest_field, now_iso, read_manifest, read_samples,
                             read_timeline, repair_run, samples_schema_matches)
from ..store.runs import check_run_id, is_run_id
from ..suite import Suite, validate_suite
from .cases import Case, build_cases
from .executors import ExecutorSpec, Lane, WorkerHandle, WorkerUnavailable, open_executor
from .executors.local import CaseOutcome, GroupOutcome
from .worker import GroupPart, WorkerConfig

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
              on_event: EventHandler | None = None, run_id: str | None = None, wait: bool = False,
              executor: ExecutorSpec | None = None) -> RunResult:
    """A new run of ``suite`` into ``out_dir/<run_id>`` (a fresh id unless one is given), its
    cases spread over the workers of ``executor`` (default: one local worker)."""
    explicit = run_id is not None
    run_id = check_run_id(run_id, "--run-id") if explicit else new_run_id(suite.name)
    check_pipeline(suite)
    device = resolve_device(suite.device)
    out_dir = Path(out_dir or suite.results_dir)
    out_existed = out_dir.exists()
    with _open_slots(suite, executor, device) as slots:
        run_id, run_dir = _fresh_run_dir(out_dir, run_id, explicit)
        _log_into(slots, run_dir)
        with run_lock(run_dir).acquire(wait=wait):
            if (run_dir / "manifest.json").exists():
                raise UserError(f"--run-id: {run_dir} already holds a run (expected a new id, or --resume {run_id})")
            cases, notes = _prepare(suite, slots[0], run_id, device, run_dir, None if out_existed else out_dir)
            manifest = _manifest(suite, run_id, device, argv or sys.argv, notes)
            _note_executor(manifest, slots)
            return _execute(suite, RunFiles(run_dir), manifest, cases, on_event, slots=slots)


def _log_into(slots: list["_WorkerSlot"], run_dir: Path) -> None:
    """Workers write their output (the pipeline's own prints) to the run folder's worker.log."""
    for slot in slots:
        slot.log_path = run_dir / WORKER_LOG


class _open_slots:
    """The executor and one worker slot per lane; every worker is killed and the executor
    closed on the way out (a normal end has already stopped them gracefully)."""

    def __init__(self, suite: Suite, spec: ExecutorSpec | None, device: str):
        if "throughput" in suite.scenarios and spec is not None and spec.kind != "local":
            raise UserError(f"{suite.path}: scenario: the throughput scenario runs on the local executor "
                            f"only (expected --executor local, got {spec.kind})")
        self.executor = open_executor(spec)
        try:
            lanes = self.executor.lanes(device)
        except BaseException:
            self.executor.close()
            raise
        first = _WorkerSlot(suite, self.executor, lanes[0])
        self.slots = [first] + [first.sibling(lane) for lane in lanes[1:]]

    def __enter__(self) -> list["_WorkerSlot"]:
        return self.slots

    def __exit__(self, *exc_info) -> bool:
        try:
            for slot in self.slots:
                slot.kill()
        finally:
            self.executor.close()
        return False


def _note_executor(manifest: dict, slots: list["_WorkerSlot"]) -> None:
    """The executor and its lanes, one entry per session (the run, then each resume)."""
    manifest.setdefault("executors", []).append({
        **slots[0].executor.describe(), "at": now_iso(),
        "lanes": [{"worker": s.lane.label, "device": s.lane.device} for s in slots]})


def _prepare(suite: Suite, slot: "_WorkerSlot", run_id: str, device: str, run_dir: Path,
             created_out_dir: Path | None) -> tuple[list[Case], list]:
    """Cases, and the first worker started: a bucket without inputs or a pipeline that fails
    to load is bad input, and leaves no folder behind that this run made."""
    try:
        cases, notes = build_cases(suite, run_id=run_id, device=device, run_dir=run_dir)
        if "latency" in suite.scenarios:
            _check_file_input(suite, slot.get(cases[0]).info)
        else:
            _check_file_input(suite, slot.get(cases[0], stage_devices=suite.throughput.stage_devices).info)
    except UserError:
        if not any(p.name not in (".lock", WORKER_LOG) for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
            if created_out_dir is not None and not any(created_out_dir.iterdir()):
                created_out_dir.rmdir()
        raise
    return cases, notes


def _check_file_input(suite: Suite, info: dict) -> None:
    """With ``inputs = "dir"``, the pipeline must have the stream the files' audio goes into."""
    problem = info.get("file_input_problem")
    if suite.inputs and problem:
        raise UserError(f"{suite.path}: inputs: {problem}")


def resume_run(run_ref: str, *, out_dir: Path | None = None, suite: Suite | None = None,
               argv: list[str] | None = None, on_event: EventHandler | None = None, force: bool = False,
               wait: bool = False, executor: ExecutorSpec | None = None) -> RunResult:
    """Finish the cases of an interrupted run that have no complete rows, under its run id."""
    run_dir = _find_run_dir(run_ref, out_dir)
    with run_lock(run_dir).acquire(wait=wait):
        manifest = read_manifest(run_dir)
        _check_manifest_fields(manifest, run_dir)
        check_run_id(manifest.get("run_id"), f"{run_dir / 'manifest.json'}: run_id")
        stored = validate_suite(manifest["suite"]["as_loaded"], Path(manifest["suite"]["path"]))
        _check_resumable(manifest, stored, suite, force)
        read_samples(run_dir)  # a corrupt samples.csv is named precisely before the schema check
        if not samples_schema_matches(run_dir):
            raise UserError(f"--resume {manifest['run_id']}: {run_dir / 'samples.csv'}: written with an older "
                            "column schema (expected the columns of this benchrunner; resume it with the "
                            "version that started it, or start a new run)")
        complete, repairs = repair_run(run_dir, stored.repeats)
        device = manifest["suite"]["device"]
        cases, notes = build_cases(stored, run_id=manifest["run_id"], device=device, run_dir=run_dir)
        todo = [c for c in cases if c.case_id not in complete]
        manifest.setdefault("resumed", []).append({
            "at": now_iso(), "argv": scrub_argv(argv or sys.argv), "repairs": repairs, "cases_left": len(todo),
            "environment_diff": _env_diff(manifest["environment"], capture_environment(cwd=Path.cwd())),
        })
        manifest["status"] = "running"
        emit = on_event or (lambda *a, **k: None)
        for note in repairs:
            emit("note", text=note)
        with _open_slots(stored, executor, device) as slots:
            _log_into(slots, run_dir)
            _note_executor(manifest, slots)
            return _execute(stored, RunFiles(run_dir), manifest, todo, on_event, total=len(cases),
                            done=len(cases) - len(todo), slots=slots, all_cases=cases)


def _check_manifest_fields(manifest: dict, run_dir: Path) -> None:
    """What resuming reads from the manifest must be there (one line naming the field if not)."""
    for keys in (("suite", "as_loaded"), ("suite", "path"), ("suite", "device"), ("environment",)):
        value = manifest_field(manifest, run_dir, *keys)
        if keys[-1] in ("as_loaded", "environment") and not isinstance(value, dict):
            raise UserError(f"{run_dir / 'manifest.json'}: manifest: {'.'.join(keys)} is a "
                            f"{type(value).__name__} (expected an object written by bench run)")


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
             *, slots: list["_WorkerSlot"], total: int | None = None, done: int = 0,
             all_cases: list[Case] | None = None) -> RunResult:
    emit = on_event or (lambda *a, **k: None)
    throughput_cases = list(all_cases if all_cases is not None else cases)
    if "latency" not in suite.scenarios:
        cases, total, done = [], 0, 0
    files.write_manifest(manifest)
    files.reserve_space()
    emit("start", run_id=manifest["run_id"], run_dir=files.dir, total=total or len(cases), done=done,
         device=manifest["suite"]["device"], notes=manifest.get("notes", []),
         workers=[{"worker": s.lane.label, "device": s.lane.device} for s in slots])
    status = "interrupted"
    slot = slots[0]  # the slots share their records (see _WorkerSlot.sibling)
    tally = _WorkerTally()
    try:
        if cases:
            _run_cases(slots, cases, files, emit, offset=done, total=total or len(cases), tally=tally)
        if "throughput" in suite.scenarios:
            _run_throughput(slot, suite, throughput_cases, files, emit)
        status = "finished"
    except Interrupted as exc:
        exc.run_id = manifest["run_id"]
        raise
    except OSError as exc:  # disk full, folder gone read-only: the run ends interrupted, resumable
        raise StorageError(exc, run_id=manifest["run_id"]) from None
    finally:
        with signals_deferred(raise_after=status == "finished"):
            manifest["workers"] = manifest.get("workers", []) + slot.workers
            _record_worker_environment(manifest)
            manifest["worker_summary"] = manifest.get("worker_summary", []) + tally.summary()
            manifest["baseline_drift"] = manifest.get("baseline_drift", []) + slot.drift
            manifest["sampler"] = slot.sampler
            manifest["design"] = run_design(slot.suite, slot.design)
            manifest["variants"] = {**manifest.get("variants", {}), **{k: v for k, v in slot.variants.items()
                                                                       if k not in manifest.get("variants", {})}}
            _finish(files, manifest, status, emit)
    if status == "finished":
        shutil.rmtree(files.dir / "accuracy_reference", ignore_errors=True)  # kept only for a --resume
    samples = read_samples(files.dir)
    failed = int(((samples["stage"] == "total") & (samples["status"] != "ok")).sum())
    return RunResult(manifest["run_id"], files.dir, status, len(cases), failed, manifest.get("warnings", []))


def _record_worker_environment(manifest: dict) -> None:
    """The environment's thread counts and plugin as the workers ran them (a plugin's import
    may call torch.set_num_threads), not as the CLI process has them; the CLI's stay as
    ``cli_num_threads`` / ``cli_num_interop_threads``."""
    workers = [w for w in manifest.get("workers", []) if "torch_threads" in w]
    torch_env = (manifest.get("environment") or {}).get("torch")
    if not workers or not isinstance(torch_env, dict):
        return
    torch_env.setdefault("cli_num_threads", torch_env.get("num_threads"))
    torch_env.setdefault("cli_num_interop_threads", torch_env.get("num_interop_threads"))
    for key, field_name in (("intra_op", "num_threads"), ("inter_op", "num_interop_threads")):
        values = sorted({w["torch_threads"][key] for w in workers})
        torch_env[field_name] = values[0] if len(values) == 1 else ", ".join(map(str, values))
    torch_env["threads_from"] = "workers, after the pipeline loaded"
    plugins = [w["plugin"] for w in workers if w.get("plugin")]
    if plugins:
        manifest["environment"]["plugin"] = plugins[-1]


@contextmanager
def signals_deferred(*, raise_after: bool):
    """SIGINT and SIGTERM wait while the run writes its summary and final manifest: a second
    Ctrl-C close after the first must not leave the manifest ``running`` without a summary.
    A signal held here is raised afterwards only when no interruption is already under way
    (``raise_after``: the run had finished). Main thread only (where Python runs handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held and raise_after:
        raise Interrupted(held[0])


def _run_throughput(slot: "_WorkerSlot", suite: Suite, cases: list[Case], files: RunFiles,
                    emit: EventHandler) -> None:
    """The throughput scenario's sweep (benchrunner/run/throughput/sweep.py), after the latency
    cases; levels already in throughput.csv (a resumed run) are skipped."""
    from ..store.throughput import repair_throughput
    from .throughput.sweep import done_levels, level_tasks, run_sweep

    for note in repair_throughput(files.dir):
        emit("note", text=note)
    levels = suite.throughput.concurrency
    emit("note", text=f"throughput scenario: {len(cases) * len(levels)} levels (concurrency "
                      f"{', '.join(map(str, levels))} for each of {len(cases)} case(s)) -> throughput.csv")
    try:
        run_sweep(level_tasks(suite, cases), files.dir,
                  get_worker=lambda task: slot.get(task, stage_devices=suite.throughput.stage_devices),
                  lose_worker=slot.kill, emit=emit, knee_budget_ms=suite.throughput.knee_latency_ms,
                  skip=done_levels(files.dir))
    except BaseException:
        slot.kill()  # abandon the level in progress: no partial rows, it runs again on --resume
        raise
    slot.close()


class _WorkerSlot:
    """The live workers, one per variant: a worker is replaced when it dies, or when its
    memory does not return to its baseline after a group (recorded as baseline drift).
    Variants measured together (``interleave``) keep their workers alive at once; measured
    one after the other, starting a variant's worker stops the others."""

    def __init__(self, suite: Suite, executor=None, lane: Lane | None = None):
        self.suite = suite
        self.executor = executor or open_executor(None)
        self.lane = lane or Lane("w0", resolve_device(suite.device))
        self.log_path: Path | None = None  # the run folder's worker.log: the pipeline's own output
        self.live: dict[str, WorkerHandle] = {}  # variant -> its live worker on this lane
        self.reference_baselines: dict[str, int] = {}
        self.workers: list[dict] = []   # what each worker reported when ready
        self.variants: dict[str, dict] = {}  # per variant: how its first worker built it (size, set-up cost)
        self.drift: list[dict] = []     # workers replaced because memory did not come back
        self.single_pass_lost: set[tuple[str, float]] = set()  # (variant, clip_s) whose single pass killed a worker
        self.design: dict = {"variants": "one", "reason": ""}  # how variants were measured (see variant_design)
        self.sampler: dict = {"util_sources": [], "errors": [], "source_changes": [], "fallback_reason": None,
                              "other_gpu_pids": [], "quality_problems": [], "device_mem_notes": []}

    @property
    def worker(self) -> WorkerHandle | None:
        """The most recently started live worker (None when none is alive)."""
        return next(reversed(self.live.values()), None)

    def sibling(self, lane: Lane) -> "_WorkerSlot":
        """A slot for another lane of the same sweep, sharing this one's records (workers,
        variant builds, drift, sampler notes, single passes that killed a worker, the
        variants' design)."""
        other = _WorkerSlot(self.suite, self.executor, lane)
        other.workers, other.drift, other.sampler = self.workers, self.drift, self.sampler
        other.variants, other.design = self.variants, self.design
        other.single_pass_lost = self.single_pass_lost
        return other

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

    def get(self, case: Case, stage_devices: tuple = (), *, keep_others: bool = False) -> WorkerHandle:
        """The worker for ``case`` (or a throughput level, with its stage placement): one live
        worker per variant on this lane. With ``keep_others`` (variants measured together)
        the other variants' workers stay alive; otherwise starting one stops the others."""
        worker = self.live.get(case.variant)
        if worker is None or (worker.config.pipeline_args, worker.config.backend,
                              worker.config.stage_devices) != (case.pipeline_args, case.backend, stage_devices):
            for variant in [v for v in self.live if v == case.variant or not keep_others]:
                self._close(variant)
            config = WorkerConfig(self.suite.pipeline, case.pipeline_args, self.lane.device,
                                  self.suite.sampler.enabled, self.suite.sampler.hz, self.suite.timer,
                                  self.suite.input_loading,
                                  backend=case.backend, build_dir=case.build_dir,
                                  seed=self.suite.seed, setup_call=_compares_variants(self.suite),
                                  stage_devices=stage_devices)
            worker = self.executor.start_worker(self.lane, config, str(self.suite.path), log_path=self.log_path)
            self.live[case.variant] = worker
            info = {k: v for k, v in worker.info.items() if k != "variant_build"}
            self.workers.append({"variant": case.variant, "worker": self.lane.label, **info})
        self.variants.setdefault(case.variant, worker.info.get("variant_build") or {})
        return worker

    def after_case(self, case: Case, baseline_after: int | None, lost: str | None) -> None:
        if lost:
            self._kill(case.variant)
            return
        if baseline_after is None:
            return
        reference = self.reference_baselines.get(case.variant)
        if reference is None:
            self.reference_baselines[case.variant] = baseline_after
            return
        limit = reference * (1 + DRIFT_TOLERANCE) + DRIFT_SLACK_BYTES
        if baseline_after > limit:
            self.drift.append({
                "after_case": case.case_id, "reference_bytes": reference,
                "baseline_bytes": baseline_after, "action": "worker restarted"})
            self._close(case.variant)

    def replace(self, variant: str) -> None:
        """Stop the variant's worker so that the next ``get`` starts a fresh process (a new block)."""
        self._close(variant)

    def _close(self, variant: str) -> None:
        worker = self.live.pop(variant, None)
        self.reference_baselines.pop(variant, None)
        if worker is not None:
            worker.stop()

    def _kill(self, variant: str) -> None:
        worker = self.live.pop(variant, None)
        self.reference_baselines.pop(variant, None)
        if worker is not None:
            worker.kill()

    def close(self) -> None:
        for variant in list(self.live):
            self._close(variant)

    def kill(self) -> None:
        for variant in list(self.live):
            self._kill(variant)


def _compares_variants(suite: Suite) -> bool:
    """The suite compares backends or precisions: every variant then makes the same untimed
    set-up call, so their set-up times compare."""
    return suite.reference_variant is not None or any(not s.is_plain() for s in suite.variant_specs.values())


def _run_cases(slots: list["_WorkerSlot"], cases: list[Case], files: RunFiles, emit: EventHandler, *,
               offset: int, total: int, tally: "_WorkerTally | None" = None) -> None:
    """Measure ``cases`` on every lane at once. Each lane (a thread driving one worker) takes a
    whole group at a time, so the cases a comparison pairs run on one worker; this thread,
    the driver, is the only one that writes the run folder and reports progress."""
    progress = _Progress(emit, offset, total)
    _decide_variant_design(slots[0], cases)
    groups = case_groups(cases, slots[0].suite.interleave,
                         across_variants=slots[0].design["variants"] == "interleaved")
    board = _Board(longest_first(groups) if len(slots) > 1 else groups)
    events: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_lane_loop, args=(slot, board, events), daemon=True,
                                name=f"benchrunner-lane-{slot.lane.label}") for slot in slots]
    try:
        for thread in threads:
            thread.start()
        _drive(events, len(cases), len(slots), files, progress, slots[0], tally or _WorkerTally())
    except BaseException as exc:
        board.close(aborted=True)
        for slot in slots:
            try:
                slot.kill()  # abandon the cases in progress: no partial rows, they run again on --resume
            except Exception as kill_error:  # what stopped the run (SIGTERM, a full disk) is what to report
                exc.add_note(f"while stopping worker {slot.lane.label}: {kill_error!r}")
        raise
    board.close()
    for thread in threads:
        thread.join()
    for slot in slots:
        slot.close()


def _drive(events: queue.Queue, n_cases: int, n_lanes: int, files: RunFiles, progress: "_Progress",
           records: "_WorkerSlot", tally: "_WorkerTally") -> None:
    """Consume the lanes' events until every case is written."""
    written, live = 0, n_lanes
    while written < n_cases:
        try:
            event = events.get(timeout=0.2)  # a short wait keeps signals (Interrupted) prompt
        except queue.Empty:
            continue
        kind, slot = event[0], event[1]
        if kind == "started":
            progress.started(event[2], worker=slot.lane.label)
        elif kind == "repeat":
            progress.emit("repeat", case=event[2], repeat=event[3], worker=slot.lane.label)
        elif kind == "group":
            written += _write_group(event[2], event[3], event[4], files, progress, slot.lane.label)
            _show_log_tail(progress, event[3], slot.log_path)
            records.note_diagnostics(event[3].diagnostics)
            tally.add(slot.lane, event[4], len(event[2]) - len(event[3].unfinished), event[5])
        elif kind == "diagnostics":  # the sampler's notes of one slice of interleaved variants
            records.note_diagnostics(event[2])
        elif kind == "retired":
            live -= 1
            progress.emit("note", text=f"worker {slot.lane.label} retired: {event[2]}")
            if live == 0:
                raise UserError(f"no worker left to run the {n_cases - written} remaining case(s): {event[2]}")
        elif kind == "error":
            raise event[2]


def _write_group(group: list[Case], outcome, placement: dict, files: RunFiles, progress: "_Progress",
                 label: str) -> int:
    """Write each finished case of a group at once, each row stamped with where it ran."""
    written = 0
    for case in group:
        if case.case_id in outcome.unfinished:
            continue
        result = outcome.cases[case.case_id]
        rows = [{**row, **placement} for row in result.rows]
        files.append_case(rows, result.timeline)
        progress.finished(case, rows, outcome.worker_lost if case.case_id == outcome.lost_case else None,
                          worker=label)
        written += 1
    return written


def _lane_loop(slot: "_WorkerSlot", board: "_Board", events: queue.Queue) -> None:
    """One lane: take a group, measure it on this lane's worker, hand the outcome to the
    driver. When the worker dies mid-group, the case it was running keeps its failed repeat
    and the group's unfinished cases run again on this lane, each alone in a fresh worker."""
    label, taken = slot.lane.label, None
    try:
        while (taken := board.take(label)) is not None:
            group, following = taken
            events.put(("started", slot, group))
            started = time.monotonic()
            group = [_without_doomed_reference(slot, case) for case in group]
            if len({case.variant for case in group}) > 1:  # interleaved variants: one worker per variant
                _run_variant_rounds(slot, group, board, events)
                taken = None
                continue
            worker = slot.get(group[0], keep_others=slot.design["variants"] == "interleaved")
            placement = _placement(worker, label)
            outcome = worker.run_group(group, following,
                                       on_repeat=lambda case, r: events.put(("repeat", slot, case, r)))
            slot.after_case(group[-1], outcome.baseline_after, outcome.worker_lost)
            lost = next((c for c in group if c.case_id == outcome.lost_case), None)
            if lost is not None and _runs_single_pass(lost):
                slot.single_pass_lost.add((lost.variant, lost.clip_s))
            board.rerun(label, [case for case in group if case.case_id in outcome.unfinished])
            taken = None
            events.put(("group", slot, group, outcome, placement, time.monotonic() - started))
    except WorkerUnavailable as exc:
        board.retire(label, taken[0] if taken else None)
        events.put(("retired", slot, exc))
    except BaseException as exc:  # handed to the driver, which stops the sweep (unless it already has)
        if not board.aborted:
            events.put(("error", slot, exc))


class _Board:
    """The groups still to run: a shared queue in run order, plus each lane's own reruns
    (the unfinished cases of a group whose worker died stay on that lane, so they keep its
    device). Lanes wait here for work until the driver closes the board."""

    def __init__(self, groups: list[list[Case]]):
        self.shared: deque[list[Case]] = deque(groups)
        self.own: dict[str, deque[list[Case]]] = {}
        self.closed = self.aborted = False
        self._cond = threading.Condition()

    def take(self, label: str) -> tuple[list[Case], list] | None:
        """The next group for lane ``label`` and the next one's first input (to prefetch)."""
        with self._cond:
            own = self.own.setdefault(label, deque())
            while not self.closed and not (own or self.shared):
                self._cond.wait()
            if self.closed:
                return None
            group = (own or self.shared).popleft()
            after = own or self.shared
            return group, (after[0][0].schedule()[:1] if after else [])

    def rerun(self, label: str, cases: list[Case]) -> None:
        with self._cond:
            self.own.setdefault(label, deque()).extendleft([case] for case in reversed(cases))
            self._cond.notify_all()

    def retire(self, label: str, group: list[Case] | None) -> None:
        """Lane ``label`` is gone: its group in hand and its reruns go back to the others."""
        with self._cond:
            back = ([group] if group else []) + list(self.own.pop(label, ()))
            self.shared.extendleft(reversed(back))
            self._cond.notify_all()

    def close(self, aborted: bool = False) -> None:
        with self._cond:
            self.closed, self.aborted = True, self.aborted or aborted
            self._cond.notify_all()


class _WorkerTally:
    """What each worker ran (the manifest's ``worker_summary``): host, device, GPU, cases,
    and the seconds it spent measuring them."""

    def __init__(self):
        self.rows: dict[tuple, dict] = {}

    def add(self, lane: Lane, placement: dict, cases: int, busy_s: float) -> None:
        key = (lane.label, placement.get("host", ""), placement.get("gpu", ""))
        row = self.rows.setdefault(key, {"worker": lane.label, "host": key[1], "device": lane.device, "gpu": key[2],
                                         "cases": 0, "busy_s": 0.0})
        row["cases"] += cases
        row["busy_s"] = round(row["busy_s"] + busy_s, 3)

    def summary(self) -> list[dict]:
        return list(self.rows.values())


def case_groups(cases: list[Case], interleave: bool, *, across_variants: bool = False) -> list[list[Case]]:
    """Cases measured together. With ``interleave``: the modes of one clip length, and with
    ``across_variants`` also every variant of that clip length (one worker per variant, their
    rounds alternating), so drift over time falls on all of them alike; else one case each."""
    if interleave and across_variants:
        by_clip: dict[float, list[Case]] = {}
        for case in cases:
            by_clip.setdefault(case.clip_s, []).append(case)
        return list(by_clip.values())
    groups: list[list[Case]] = []
    for case in cases:
        last = groups[-1][-1] if groups else None
        if interleave and last is not None and (last.variant, last.clip_s) == (case.variant, case.clip_s):
            groups[-1].append(case)
        else:
            groups.append([case])
    return groups


def variant_design(*, variants: int, interleave: bool, device: str, worker_info: dict | None,
                   memory_limit_bytes: int | None) -> tuple[str, str]:
    """("one" | "interleaved" | "sequential", why): whether the variants of a clip length are
    measured together, one live worker per variant. On a GPU the workers must fit at once:
    each may use ``memory_limit_bytes`` (memory_limit_gb) on top of what loading the pipeline
    took (device total - free after the first worker loaded, an over-estimate when other
    processes use the device); without a limit nothing bounds them, so they run one after
    the other."""
    if variants <= 1:
        return "one", ""
    if not interleave:
        return "sequential", "interleave = false"
    if not device.startswith("cuda"):
        return "interleaved", ""
    info = worker_info or {}
    free, total = info.get("device_free_bytes"), info.get("device_total_bytes")
    if memory_limit_bytes is None or free is None or total is None:
        return "sequential", (f"on {device} the {variants} variants are measured one after the other: without "
                              "memory_limit_gb nothing says that one worker per variant fits on the device")
    loaded = total - free
    need = variants * memory_limit_bytes + (variants - 1) * loaded
    if need > free:
        return "sequential", (f"on {device} the {variants} variants are measured one after the other: "
                              f"{variants} workers need {need / 2**30:.1f} GiB ({variants} x memory_limit_gb "
                              f"{memory_limit_bytes / 2**30:g} + {variants - 1} x {loaded / 2**30:.1f} GiB to load "
                              f"the pipeline), {free / 2**30:.1f} GiB is free")
    return "interleaved", ""


def _decide_variant_design(slot: "_WorkerSlot", cases: list[Case]) -> None:
    variants = list(dict.fromkeys(case.variant for case in cases))
    if not cases or slot.design["variants"] != "one" or len(variants) <= 1:
        return
    kind = getattr(slot.executor, "kind", "local")
    if slot.suite.interleave and kind != "local":
        slot.design.update(variants="sequential", reason=(
            f"on the {kind} executor the {len(variants)} variants are measured one after the other: each lane "
            f"reserves the resources of one worker, and one live worker per variant would need {len(variants)} x "
            "those"))
        return
    info = None
    device = slot.lane.device  # the first lane decides for all (their slots share the design)
    if device.startswith("cuda") and slot.suite.interleave:
        slot.get(cases[0])
        info = slot.workers[-1]
    design, reason = variant_design(variants=len(variants), interleave=slot.suite.interleave,
                                    device=device, worker_info=info,
                                    memory_limit_bytes=cases[0].memory_limit_bytes)
    slot.design.update(variants=design, reason=reason)


def longest_first(groups: list[list[Case]]) -> list[list[Case]]:
    """Groups by decreasing work (clip seconds x calls), so that with several workers the
    longest start first and the workers finish together; ties keep the suite's order."""
    return sorted(groups, key=lambda group: -sum(c.clip_s * (c.warmup + c.repeats) for c in group))


class _Progress:
    def __init__(self, emit: EventHandler, done: int, total: int):
        self.emit, self.done, self.total = emit, done, total

    def started(self, group: list[Case], worker: str = "w0") -> None:
        self.emit("case_start", case=group[0], index=self.done, total=self.total, worker=worker)

    def finished(self, case: Case, rows: list[dict], worker_lost: str | None, worker: str = "w0") -> None:
        self.emit("case_end", case=case, index=self.done, total=self.total, rows=rows, worker_lost=worker_lost,
                  worker=worker)
        self.done += 1


def _run_variant_rounds(slot: "_WorkerSlot", group: list[Case], board: "_Board", events: queue.Queue) -> None:
    """The variants of one clip length measured together on this lane: one live worker per
    variant; every worker's warm-ups first, then round r runs repeat r of every case, worker
    after worker, the order of the workers rotated by one per round (and, within a worker,
    the order of its modes). A worker that dies keeps its failed repeat on the case it was
    running; its variant leaves the rotation and its unfinished cases run again alone
    afterwards, on this lane. Each variant's cases go to the driver as one group outcome."""
    label = slot.lane.label
    started = time.monotonic()
    by_variant: dict[str, list[Case]] = {}
    for case in group:
        by_variant.setdefault(case.variant, []).append(case)
    variants = list(by_variant)
    workers = {variant: slot.get(cases[0], keep_others=True) for variant, cases in by_variant.items()}
    placements = {variant: _placement(worker, label) for variant, worker in workers.items()}
    collected = {case.case_id: CaseOutcome() for case in group}
    spent: dict[str, float] = {}
    baselines: dict[str, int | None] = {}
    lost: dict[str, GroupOutcome] = {}

    def run_part(variant: str, part: GroupPart) -> None:
        done = {cid: sum(1 for row in collected[cid].rows if row["stage"] == TOTAL_STAGE)
                for cid in (c.case_id for c in by_variant[variant])}
        outcome = workers[variant].run_group(
            by_variant[variant], [], on_repeat=lambda case, r: events.put(("repeat", slot, case, r)),
            part=part, spent=spent, done=done)
        for case_id, result in outcome.cases.items():
            collected[case_id].rows += result.rows
            collected[case_id].timeline += result.timeline
        events.put(("diagnostics", slot, outcome.diagnostics))
        if outcome.worker_lost:
            lost[variant] = outcome
        else:
            baselines[variant] = outcome.baseline_after

    rounds = max(case.repeats for case in group)
    blocks = stats.contiguous_blocks(rounds, slot.suite.processes_per_variant)
    for r in range(rounds):
        if r == 0 or blocks[r] != blocks[r - 1]:  # a new block: a fresh worker per variant, warmed up
            for variant in [v for v in variants if v not in lost]:
                if r > 0:
                    slot.after_case(by_variant[variant][-1], baselines.get(variant), None)
                    slot.replace(variant)
                    workers[variant] = slot.get(by_variant[variant][0], keep_others=True)
                run_part(variant, GroupPart(warmup=True, first_round=0, stop_round=0))
        for k in range(len(variants)):
            variant = variants[(k + r) % len(variants)]
            if variant not in lost:
                run_part(variant, GroupPart(warmup=False, first_round=r, stop_round=r + 1))
    rerun: list[Case] = []
    for variant, cases in by_variant.items():
        lost_outcome = lost.get(variant)
        slot.after_case(cases[-1], baselines.get(variant), lost_outcome.worker_lost if lost_outcome else None)
        lost_case = next((c for c in cases if lost_outcome and c.case_id == lost_outcome.lost_case), None)
        if lost_case is not None and _runs_single_pass(lost_case):
            slot.single_pass_lost.add((lost_case.variant, lost_case.clip_s))
        outcome = GroupOutcome(cases={c.case_id: collected[c.case_id] for c in cases})
        if lost_outcome is not None:
            outcome.worker_lost, outcome.lost_case = lost_outcome.worker_lost, lost_outcome.lost_case
            outcome.unfinished = list(lost_outcome.unfinished)
        rerun += [c for c in cases if c.case_id in outcome.unfinished]
        busy_s = (time.monotonic() - started) / len(by_variant)  # the lane's time, shared by its variants
        events.put(("group", slot, cases, outcome, placements[variant], busy_s))
    board.rerun(label, rerun)


def _placement(worker: WorkerHandle, label: str) -> dict:
    """samples.csv's placement columns for the rows a worker measured on lane ``label``."""
    return {"host": worker.info.get("host", ""), "gpu": worker.info.get("gpu", ""), "worker": label}


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


def run_design(suite: Suite, variants: dict) -> dict[str, str]:
    """How the run was measured, for comparisons to pick their statistics: ``modes`` and
    ``variants`` "interleaved" (alternating rounds: paired statistics apply), "sequential",
    or "one"; ``input_loading`` "before" the measured call or "overlap" with it."""
    return {"modes": "interleaved" if suite.interleave else "sequential", "variants": variants["variants"],
            "variants_reason": variants["reason"], "input_loading": suite.input_loading,
            "processes_per_variant": suite.processes_per_variant if variants["variants"] == "interleaved" else 1}


def design_warnings(design: dict | None) -> list[dict]:
    """Validity warnings for how the run was measured: variants that could not be interleaved
    on the device, and inputs loaded during the measured calls."""
    if not design:
        return []
    found = []
    if design.get("variants") == "sequential" and design.get("variants_reason") != "interleave = false":
        reason = design.get("variants_reason", "")
        fix = ("run the variants on the local executor (one machine) for paired statistics"
               if " executor " in reason else "set memory_limit_gb so that one worker per variant fits on the device")
        found.append({"code": "variants_sequential", "message": reason,
                      "fix": fix + "; until then compare variants run against run (unpaired statistics), or within "
                                   "noise"})
    if design.get("input_loading") == "overlap":
        found.append({"code": "input_overlap", "message": "scenario: inputs were loaded by a prefetch thread during "
                      "the measured calls (input_loading = \"overlap\"); latencies include that contention",
                      "fix": "input_loading = \"before\" (the default) measures the pipeline alone"})
    return found


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
    """summary.csv and the manifest's final status. The disk held since the start is released
    first, so both still fit when the disk filled up; a summary that cannot be written is a
    note (resume writes it), the status is what must reach the disk."""
    files.release_space()
    samples = read_samples(files.dir)
    summary = summarise(samples)
    try:
        files.write_summary(summary)
    except OSError as exc:
        manifest.setdefault("notes", []).append(f"summary.csv not written: {exc.strerror or exc}")
    found = run_warnings(summary) + gpu_run_warnings(read_timeline(files.dir)) + _sampler_warnings(manifest) + \
        placement_warnings(samples)
    manifest["warnings"] = manifest.get("environment_warnings", []) + [w.__dict__ for w in found] + \
        design_warnings(manifest.get("design"))
    manifest.update(status=status, ended_at=now_iso())
    files.write_manifest(manifest)
    emit("finished", status=status, run_dir=files.dir, warnings=manifest["warnings"], summary=summary)
