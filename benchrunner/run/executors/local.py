"""Local worker processes: start, send a case, wait with a deadline, replace when dead.

A worker is a spawned process (no inherited CUDA state or threads) that loads the
pipeline once and serves many cases. A case past its deadline kills the worker
(status ``timeout``); a worker that dies mid-case (segfault, abort, OOM killer) is
recorded as ``crash`` with its signal or exit code. Either way the caller starts a
new worker and the sweep goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import UserError
from ...store.results import CRASH, TIMEOUT, worker_log_tail
from ..cases import Case
from ..inputs import InputRef
from ..rows import apply_case_level_util, failure_rows
from ..worker import GroupPart, WorkerConfig, call_order, serve

READY_TIMEOUT_S = 300.0


@dataclass
class CaseOutcome:
    rows: list[dict] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)


@dataclass
class GroupOutcome:
    cases: dict[str, CaseOutcome]
    worker_lost: str | None = None     # "timeout" or "crash": the worker had to be replaced
    lost_case: str | None = None       # the case that was running then
    unfinished: list[str] = field(default_factory=list)  # other cases with repeats left: run them again
    baseline_after: int | None = None  # the worker's memory after the group (see Worker._baseline_after)
    diagnostics: dict = field(default_factory=dict)  # the sampler's notes (see Worker.diagnostics)
    log_tail: list[str] = field(default_factory=list)  # last lines of the worker log when it was lost


def _repeats_done(outcome: CaseOutcome) -> int:
    return sum(1 for row in outcome.rows if row["stage"] == "total")


def exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker vanished"
    if exitcode < 0:
        try:
            return f"worker killed by signal {signal.Signals(-exitcode).name} ({-exitcode})"
        except ValueError:
            return f"worker killed by signal {-exitcode}"
    return f"worker exited with code {exitcode}"


def serve_logged(conn, config: WorkerConfig, log_path: str | None) -> None:
    """The worker's entry point: its stdout and stderr (the pipeline's own prints, and any
    traceback) go to ``log_path`` instead of the terminal of ``bench run``, then :func:`serve`."""
    if log_path is not None:
        redirect_output(log_path, f"--- worker pid {os.getpid()}: {config.pipeline} {config.pipeline_args}")
    serve(conn, config)


def redirect_output(log_path: str, header: str) -> None:
    """Point file descriptors 1 and 2 (so C extensions' output too) at ``log_path``, appended,
    line-buffered so the last lines are on disk when the process dies."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    print(header, flush=True)


class LocalWorker:
    """One worker process and the parent's end of its pipe. With ``log_path``, the worker's
    output goes to that file (the run folder's worker.log)."""

    def __init__(self, config: WorkerConfig, source: str = "suite", log_path: Path | None = None):
        self.config = config
        self.source = source
        self.log_path = log_path
        self._kill_lock = threading.Lock()  # see kill()
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=serve_logged, args=(child_conn, config, None if log_path is None
                                                              else str(log_path)),
                                   name="benchrunner-worker", daemon=True)
        self.process.start()
        child_conn.close()
        self.info = self._wait_ready()

    def _wait_ready(self) -> dict:
        # a variant with another backend exports, quantises or compiles before it is ready
        timeout_s = READY_TIMEOUT_S * (1 if self.config.backend.is_plain() else 3)
        if not self._conn.poll(timeout_s):
            self.kill()
            raise UserError(f"{self.source}: pipeline: {self.config.pipeline} did not load within {timeout_s:g} s")
        try:
            message = self._conn.recv()
        except EOFError:
            self.process.join(5)
            raise UserError(f"{self.source}: pipeline: {self.config.pipeline}: "
                            f"{exit_description(self.process.exitcode)} while loading it") from None
        if message[0] == "load_error":
            self.process.join(5)
            _, is_user_error, text = message[:3]
            raise UserError(f"{self.source}: {text}" if is_user_error else
                            f"{self.source}: pipeline: {self.config.pipeline} failed to load: {text}")
        return message[1]

    @property
    def stages(self) -> list[str]:
        return self.info["stages"]

    def run_group(self, cases: list[Case], next_refs: list[InputRef],
                  on_repeat: Callable[[Case, int], None] | None = None, *, part: GroupPart | None = None,
                  spent: dict[str, float] | None = None, done: dict[str, int] | None = None) -> GroupOutcome:
        """Send a group of cases (see Worker.run_group), or the slice ``part`` of it, and collect
        their rows. Each case has its own ``timeout_s``, counted over the time its own calls
        run (``spent`` carries that time over the parts of a group, ``done`` the repeats
        already recorded, for the cases left unfinished when the worker is lost)."""
        by_id = {case.case_id: case for case in cases}
        group = GroupOutcome(cases={case.case_id: CaseOutcome() for case in cases})
        spent = spent if spent is not None else dict.fromkeys(by_id, 0.0)
        for case_id in by_id:
            spent.setdefault(case_id, 0.0)
        self._done_before = done or {}
        first = call_order(cases, part)[:1]
        c, i = first[0] if first else (0, 0)
        current, repeat, call_started = cases[c].case_id, i - cases[c].warmup, time.monotonic()
        self._start_group(cases, next_refs, part)
        while True:
            case = by_id[current]
            remaining = case.timeout_s - spent[current] - (time.monotonic() - call_started)
            message = self._receive(remaining)
            if message in (TIMEOUT, CRASH):
                self._lose(group, by_id, case, max(repeat, 0), message)
                return group
            if message[0] == "worker_error":
                self._lose(group, by_id, case, max(repeat, 0), CRASH, detail=message[1])
                return group
            if message[0] == "call_started":
                now = time.monotonic()
                spent[current] += now - call_started
                current, repeat, call_started = message[1], message[2], now
                if repeat >= 0 and on_repeat:
                    on_repeat(by_id[current], repeat)
            elif message[0] == "repeat":
                group.cases[message[1]].rows += message[2]
            elif message[0] == "group_done":
                for case_id, timeline in message[1].items():
                    group.cases[case_id].timeline = timeline
                group.baseline_after, group.diagnostics = message[2], message[3]
                for case_id, figure in (message[4] if len(message) > 4 else {}).items():
                    apply_case_level_util(group.cases[case_id].rows, figure)
                return group

    def _start_group(self, cases: list[Case], next_refs: list[InputRef], part: GroupPart | None = None) -> None:
        self._conn.send(("group", cases, next_refs) if part is None else ("group", cases, next_refs, part))

    def _death_description(self) -> str:
        """Why the worker is gone (it is reaped and killed first)."""
        self.process.join(5)
        self.kill()
        return exit_description(self.process.exitcode)

    def _start_level(self, task) -> None:
        self._conn.send(("level", task))

    def run_level(self, task) -> tuple[str, list[dict], list[dict], list[str]]:
        """Send one throughput level (see Worker.run_level) and wait up to its ``timeout_s``:
        ``("ok", rows, samples, notes)``, or ``(TIMEOUT or CRASH, [], [], [what happened])`` with
        the worker killed (the caller records the level as failed and starts a new worker)."""
        self._start_level(task)
        message = self._receive(task.timeout_s)
        if message == TIMEOUT:
            self.kill()
            return TIMEOUT, [], [], [f"no result within timeout_s={task.timeout_s:g} s; worker killed"]
        if message == CRASH or message[0] == "worker_error":
            detail = message[1] if message != CRASH else None
            return CRASH, [], [], ["; ".join(filter(None, [detail, self._death_description()]))]
        return "ok", message[1], message[2], message[3]

    def _receive(self, timeout_s: float):
        """The next message, or TIMEOUT when none came in time, or CRASH when the worker died."""
        try:
            if not self._conn.poll(max(0.0, timeout_s)):
                return TIMEOUT
            return self._conn.recv()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return CRASH

    def _lose(self, group: "GroupOutcome", by_id: dict[str, Case], case: Case, repeat: int, kind: str,
              detail: str | None = None) -> None:
        """The worker is gone: the case in progress gets a failed repeat; the other cases of
        the group that had repeats left are listed as unfinished (the caller runs them again)."""
        if kind == TIMEOUT:
            self.kill()
            error = f"no result within timeout_s={case.timeout_s:g} s; worker killed"
        else:
            error = "; ".join(filter(None, [detail, self._death_description()]))
        group.cases[case.case_id].rows += failure_rows(case, self.stages, repeat, kind, error)
        group.worker_lost, group.lost_case = kind, case.case_id
        done_before = getattr(self, "_done_before", {})
        group.log_tail = worker_log_tail(None, log_path=self.log_path)
        group.unfinished = [case_id for case_id, outcome in group.cases.items()
                            if case_id != case.case_id
                            and done_before.get(case_id, 0) + _repeats_done(outcome) < by_id[case_id].repeats]

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self.process.join(10)
        self.kill()

    def kill(self) -> None:
        """Kill the process and close the pipe, once. Two threads may get here together: the
        driver abandoning the run (SIGTERM) and the lane that saw the worker die because of it;
        without the lock both close the pipe's descriptor, and the second ``close`` fails with
        EBADF, or closes whatever file took that number in between."""
        with self._kill_lock:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(10)
            self._conn.close()


class LocalExecutor:
    """Worker processes on this machine: one per device (``--devices``), or ``--workers N``
    on the CPU."""

    kind = "local"

    def __init__(self, spec):
        self.spec = spec

    def lanes(self, device: str) -> list:
        from . import Lane

        devices = local_devices(self.spec.devices, device, self.spec.workers)
        return [Lane(f"w{i}", d) for i, d in enumerate(devices)]

    def start_worker(self, lane, config: WorkerConfig, source: str, log_path: Path | None = None) -> LocalWorker:
        return LocalWorker(config, source=source, log_path=log_path)

    def describe(self) -> dict:
        return self.spec.describe()

    def close(self) -> None:
        pass


def local_devices(requested: tuple[str, ...], device: str, workers: int) -> list[str]:
    """The device of each local worker: those of ``--devices`` (``all``: every CUDA device),
    else ``workers`` workers on the suite's device (more than one only on the CPU: workers
    sharing a GPU would measure each other)."""
    family = "cuda" if device.startswith("cuda") else "cpu"
    if not requested:
        if workers > 1 and family == "cuda":
            raise UserError(f"--workers: {workers} workers would share {device} and measure each other "
                            "(expected --devices cuda:0,cuda:1 or all: one worker per GPU)")
        return [device] * workers
    if requested == ("all",):
        if family != "cuda":
            raise UserError("--devices: all means every CUDA device, and the suite runs on the CPU "
                            "(expected --workers N for CPU workers, or device = \"cuda\")")
        import torch
        if torch.cuda.device_count() == 0:
            raise UserError("--devices: all: no CUDA device is visible (expected a machine with GPUs)")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    wrong = [d for d in requested if not d.startswith(family)]
    if wrong:
        raise UserError(f"--devices: {wrong[0]} does not fit the suite's device {device} "
                        f"(expected {'cuda:N' if family == 'cuda' else 'cpu'} devices)")
    if family == "cuda":
        import torch
        missing = [d for d in requested if int(d.split(":")[1]) >= torch.cuda.device_count()]
        if missing:
            raise UserError(f"--devices: {missing[0]} is not visible here "
                            f"({torch.cuda.device_count()} CUDA device(s))")
    return list(requested)
