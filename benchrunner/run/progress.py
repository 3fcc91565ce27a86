"""Progress of a run on the terminal: a rich progress bar on a TTY, plain lines otherwise."""

from __future__ import annotations

import sys
import time

import click

from ..store.results import TOTAL_STAGE
from ..analysis.stats import describe


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def case_line(case, rows: list[dict], worker_lost: str | None) -> str:
    totals = [r for r in rows if r["stage"] == TOTAL_STAGE]
    ok = sorted(r["latency_ms"] for r in totals if r["status"] == "ok" and r["latency_ms"] is not None)
    failed = [r for r in totals if r["status"] != "ok"]
    text = f"{case.case_id:<28} ok {len(ok)}/{len(totals)}"
    if ok:
        text += f"  median {describe(ok).p50:.1f} ms"  # the statistic summary.csv's latency_p50_ms holds
    if failed:
        text += f"  {failed[0]['status']}: {failed[0]['error'][:100]}"
    if worker_lost:
        text += "  (worker replaced)"
    return text


def level_line(task, row: dict) -> str:
    """One throughput level: clips/s, p50/p99, failures, bottleneck (or what ended it)."""
    text = f"{task.level_id:<32} {row['status']}"
    if row.get("throughput_clips_per_s") is not None:
        p99 = row.get("latency_p99_ms")
        text += (f"  {row['throughput_clips_per_s']:.2f} clips/s  p50 {row['latency_p50_ms'] or 0:.1f} ms"
                 f"  p99 {'n/a' if p99 is None else f'{p99:.1f} ms'}  bottleneck {row.get('bottleneck') or '-'}")
    if row.get("failures"):
        text += f"  failures {row['failures']}"
    if row.get("error"):
        text += f"  {row['error'][:100]}"
    return text


class ProgressPrinter:
    """Consumes the runner's events. ETA = elapsed / done x remaining cases (cases differ in
    length, so it is a rough guide and says so by being rounded to seconds)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._rich = None
        self._task = None
        self.done_before = 0
        self.workers: dict[str, str] = {}     # label -> device, when the run has several workers
        self._worker_tasks: dict[str, int] = {}

    def __enter__(self):
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  console=Console(file=self.stream), transient=False)
            self._rich.__enter__()
        return self

    def __exit__(self, *exc):
        if self._rich:
            self._rich.__exit__(*exc)
        return False

    def echo(self, text: str) -> None:
        if self._rich:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, file=self.stream)

    def handle(self, kind: str, **event) -> None:
        getattr(self, f"_on_{kind}", lambda **_: None)(**event)

    def _on_start(self, run_id, run_dir, total, done, device, notes, workers=()):
        self.start = time.monotonic()
        self.done_before = done
        left = f" ({total - done} left)" if done else ""
        self.workers = {w["worker"]: w["device"] for w in workers} if len(workers) > 1 else {}
        on = f"{len(workers)} workers ({', '.join(f'{k} {v}' for k, v in self.workers.items())})" \
            if self.workers else device
        self.echo(f"run {run_id} on {on}: {total} cases{left} -> {run_dir}")
        for note in notes:
            self.echo(f"note: {note}")
        if self._rich:
            self._task = self._rich.add_task("starting", total=total, completed=done)
            for label, dev in self.workers.items():
                self._worker_tasks[label] = self._rich.add_task(f"  {label} {dev}: idle", total=None)

    def _on_note(self, text):
        self.echo(f"note: {text}")

    def _on_case_start(self, case, index, total, worker="w0"):
        if self._rich:
            self._rich.update(self._task, description=case.case_id)
            if worker in self._worker_tasks:
                self._rich.update(self._worker_tasks[worker],
                                  description=f"  {worker} {self.workers[worker]}: {case.case_id}")
        elif self.workers:
            self.echo(f"[{worker}] started {case.case_id}")

    def _on_case_end(self, case, index, total, rows, worker_lost, worker="w0"):
        done = index + 1
        elapsed = time.monotonic() - self.start
        eta = elapsed / max(1, done - self.done_before) * (total - done)
        line = (f"[{worker}] " if self.workers else "") + case_line(case, rows, worker_lost)
        if self._rich:
            self._rich.advance(self._task)
            self.echo(line)
        else:
            self.echo(f"[{done}/{total}] {line}  (elapsed {_clock(elapsed)}, ETA {_clock(eta)})")

    def _on_level_end(self, task, index, total, row, notes):
        self.echo(level_line(task, row) + f"  [{index + 1}/{total} levels]")
        for note in notes if row["status"] in ("ok", "unstable") else []:
            self.echo(f"note: {note}")

    def _on_finished(self, status, run_dir, warnings, summary):
        self.echo(f"run {status}: {run_dir}")
        for warning in warnings:
            self.echo(f"warning: {warning['message']}. Fix: {warning['fix']}")
