"""Local worker processes: start, send a case, wait with a deadline, replace when dead.

A worker is a spawned process (no inherited CUDA state or threads) that loads the
pipeline once and serves many cases. A case past its deadline kills the worker
(status ``timeout``); a worker that dies mid-case (segfault, abort, OOM killer) is
recorded as ``crash`` with its signal or exit code. Either way the caller starts a
new worker and the sweep goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from ..cases import Case
from ..errors import UserError
from ..failures import CRASH, TIMEOUT
from ..inputs import InputRef
from ..rows import failure_rows
from ..worker import WorkerConfig, serve

READY_TIMEOUT_S = 300.0


@dataclass
class CaseOutcome:
    rows: list[dict] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    worker_lost: str | None = None  # "timeout" or "crash" when the worker had to be replaced
    baseline_after: int | None = None  # the worker's memory after the case (see worker._baseline_after)
    diagnostics: dict = field(default_factory=dict)  # the sampler's notes (see Worker.diagnostics)


def exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker vanished"
    if exitcode < 0:
        try:
            return f"worker killed by signal {signal.Signals(-exitcode).name} ({-exitcode})"
        except ValueError:
            return f"worker killed by signal {-exitcode}"
    return f"worker exited with code {exitcode}"


class LocalWorker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, config: WorkerConfig, source: str = "suite"):
        self.config = config
        self.source = source
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child_conn, config), name="benchrunner-worker", daemon=True)
        self.process.start()
        child_conn.close()
        self.info = self._wait_ready()

    def _wait_ready(self) -> dict:
        if not self._conn.poll(READY_TIMEOUT_S):
            self.kill()
            raise UserError(f"{self.source}: pipeline: {self.config.pipeline} did not load within {READY_TIMEOUT_S:g} s")
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

    def run_case(self, case: Case, next_refs: list[InputRef],
                 on_repeat: Callable[[int], None] | None = None) -> CaseOutcome:
        outcome = CaseOutcome()
        self._conn.send(("case", case, next_refs))
        deadline = time.monotonic() + case.timeout_s
        current = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                ready = self._conn.poll(max(0.0, remaining))
                message = self._conn.recv() if ready else None
            except (EOFError, ConnectionResetError, BrokenPipeError):
                message, ready = None, True
            if not ready:
                self.kill()
                outcome.rows += failure_rows(case, self.stages, current, TIMEOUT,
                                             f"no result within timeout_s={case.timeout_s:g} s; worker killed")
                outcome.worker_lost = TIMEOUT
                return outcome
            if message is None:
                self.process.join(5)
                outcome.rows += failure_rows(case, self.stages, current, CRASH,
                                             exit_description(self.process.exitcode))
                outcome.worker_lost = CRASH
                return outcome
            kind = message[0]
            if kind == "repeat_started":
                current = message[1]
                if on_repeat:
                    on_repeat(current)
            elif kind == "repeat":
                outcome.rows += message[1]
            elif kind == "case_done":
                outcome.timeline, outcome.baseline_after, outcome.diagnostics = message[1], message[2], message[3]
                return outcome

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self.process.join(10)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self._conn.close()
