"""``bench nightly``: run, compare with the baseline, check budgets and trends, report, post,
record. What cron runs; nobody watches it, so every step says clearly what broke.

Exit codes (the CLI's; see :data:`EXIT_CODES`): 0 all well, 1 regression, budget breach or
a change point in the nightly series, 2 bad input, 3 another nightly of the suite is
running, 4 Slack failed (the report stays on disk), 5 the benchmark run did not finish,
6 the report could not be written, 7 the history store failed, 130/143 interrupted.

When a regression (1) and a failure of a later step (4, 6 or 7) both happen, the step's
code wins, so that a service manager treating 1 as success (systemd's SuccessExitStatus=1)
still sees the broken step; the regression is never hidden: it is recorded in the history
store (the night is not a good baseline), and the summary's first line names it too.
A signal stops the chain where it is: nothing is posted or marked after it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import BenchError, Interrupted, NotifyError, UserError
from ..store.locks import FileLock
from ..store.results import read_manifest, read_summary
from ..store.runs import run_dir_for
from ..suite import Suite

EXIT_OK, EXIT_REGRESSION, EXIT_NOTIFY, EXIT_RUN, EXIT_REPORT, EXIT_HISTORY = 0, 1, 4, 5, 6, 7
EXIT_CODES = {
    0: "all well", 1: "regression, budget breach or change point", 2: "bad input", 3: "locked: another nightly runs",
    4: "Slack failed (report on disk)", 5: "the benchmark run did not finish", 6: "the report failed",
    7: "the history store failed", 74: "file-system error", 130: "interrupted (SIGINT)",
    143: "interrupted (SIGTERM)",
}
RECENT_NIGHTS = 7  # a change point older than this is history, not news


@dataclass
class NightlyResult:
    run_dir: Path | None = None
    baseline: str | None = None
    report_dir: Path | None = None
    alerts: list[str] = field(default_factory=list)    # regressions, breaches, change points: exit 1
    problems: list[str] = field(default_factory=list)  # infrastructure: what broke, step by step
    notes: list[str] = field(default_factory=list)     # worth saying, not a failure
    exit_code: int = EXIT_OK
    posted: object | None = None


def nightly_run_id(suite: Suite, now: datetime | None = None) -> str:
    day = (now or datetime.now(timezone.utc)).strftime("%Y%m%d")
    return f"nightly-{suite_key(suite.name)}-{day}"


def suite_key(name: str) -> str:
    """A readable slug of the suite's name plus a short hash of the whole name: the slug is
    lossy (punctuation becomes '-', cut at 40 characters), the hash keeps distinct suites
    ("night a", "night/a") in distinct run folders and locks."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "suite"
    return f"{slug}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def nightly_lock(suite: Suite, results_dir: Path) -> FileLock:
    return FileLock(results_dir / f".nightly-{suite_key(suite.name)}.lock", what=f"the nightly of suite {suite.name!r}")


def _check_same_suite(run_dir: Path, suite: Suite) -> dict:
    """The manifest of today's nightly folder, which must be this suite's."""
    from ..store.runs import read_manifest as read_checked_manifest

    manifest = read_checked_manifest(run_dir)
    owner = (manifest.get("suite") or {}).get("name")
    if owner != suite.name:
        raise UserError(f"{run_dir / 'manifest.json'}: suite: the folder holds a run of suite {owner!r}, not "
                        f"{suite.name!r} (expected a nightly of this suite; move the folder away)")
    return manifest


def run_nightly(suite: Suite, *, baseline: str = "last-good", channel: str | None = None,
                db_url: str | None = None, results_dir: Path | None = None, reports_dir: Path = Path("reports"),
                thread_ts: str | None = None, dry_run: bool = False, wait: bool = False,
                on_event: Callable[..., None] | None = None, argv: list[str] | None = None,
                token_env: str = "SLACK_BOT_TOKEN", executor=None) -> NightlyResult:
    """The whole chain under the suite's nightly lock; steps after a failed one still run
    where they can (a failed report still gets a digest posted, saying so)."""
    from ..store.history import default_db_url

    results_dir = Path(results_dir or suite.results_dir)
    result = NightlyResult()
    emit = on_event or (lambda *a, **k: None)
    with nightly_lock(suite, results_dir).acquire(wait=wait):
        result.run_dir = _run_step(suite, results_dir, argv, on_event, result, executor)
        if result.run_dir is None:
            return result
        db_url = db_url or default_db_url(results_dir)
        history = _history_step(db_url, result)
        result.baseline = _baseline_step(history, baseline, suite, result, results_dir)
        _judge_step(history, suite, result)
        _report_step(result, reports_dir, db_url)
        emit("note", text=f"report: {result.report_dir}") if result.report_dir else None
        _post_step(result, channel, thread_ts, dry_run, emit, token_env)
        _mark_step(history, result)
    return result


def _fail(result: NightlyResult, code: int, text: str) -> None:
    result.problems.append(text)
    if result.exit_code in (EXIT_OK, EXIT_REGRESSION):
        result.exit_code = code


def _run_step(suite, results_dir, argv, on_event, result, executor=None) -> Path | None:
    """Today's nightly: a new run, or the interrupted one of the same suite and day resumed."""
    from ..run.runner import resume_run, run_suite

    run_id = nightly_run_id(suite)
    run_dir = results_dir / run_id
    manifest = run_dir / "manifest.json"
    if manifest.exists() and _check_same_suite(run_dir, suite)["status"] == "finished":
        return run_dir
    if manifest.exists():
        run = resume_run(str(run_dir), suite=suite, argv=argv, on_event=on_event, executor=executor)
    else:
        run = run_suite(suite, out_dir=results_dir, argv=argv, on_event=on_event, run_id=run_id, executor=executor)
    if run.status != "finished":
        _fail(result, EXIT_RUN, f"run {run.run_id} ended {run.status}")
        return None
    total = int((read_summary(run.run_dir)["stage"] == "total").sum())
    if total and run.failed_repeats and _all_failed(run.run_dir):
        _fail(result, EXIT_RUN, f"run {run.run_id}: every case failed (see its samples.csv errors)")
    return run.run_dir


def _all_failed(run_dir: Path) -> bool:
    totals = read_summary(run_dir).query("stage == 'total'")
    return bool(len(totals)) and bool((totals["n"] == 0).all())


def _history_step(db_url: str, result: NightlyResult):
    from ..store.history import open_history

    try:
        history = open_history(db_url)
        history.record_run(result.run_dir)
        return history
    except Interrupted:
        raise
    except BenchError as exc:
        _fail(result, EXIT_HISTORY, f"history: {exc}")
        return None


def _baseline_step(history, baseline: str, suite: Suite, result: NightlyResult, results_dir: Path) -> str | None:
    if baseline != "last-good":
        return baseline
    if history is None:
        return None
    run_id = read_manifest(result.run_dir)["run_id"]
    good = history.last_good_run(suite.name, exclude_run_id=run_id)
    if good is None:
        result.notes.append("no earlier good nightly to compare with: this run becomes the baseline")
        return None
    folder = Path(good.get("run_dir") or run_dir_for(results_dir, good["run_id"], "history: run_id"))
    if not (folder / "samples.csv").exists():
        _fail(result, EXIT_HISTORY, f"baseline {good['run_id']}: its run folder {folder} is gone (pruned?)")
        return None
    return str(folder)


def _judge_step(history, suite: Suite, result: NightlyResult) -> None:
    """Regressions against the baseline, budget breaches, and change points in the series."""
    from ..analysis.budgets import budgets_from_manifest, check_budgets
    from ..analysis.compare import compare_runs, night_noise_of, noise_summary

    if result.baseline:
        for metric in ("latency", "memory", "failure"):
            compared = compare_runs(result.baseline, result.run_dir, metric=metric,
                                    night_noise=night_noise_of(history, suite.name, metric))
            result.alerts += [_regression_text(compared, row) for row in compared.regressions()]
            result.notes += [line for line in [noise_summary(compared)] if line]
    from ..store.throughput import read_throughput

    breaches = [b for b in check_budgets(read_summary(result.run_dir), budgets_from_manifest(read_manifest(
        result.run_dir)), read_throughput(result.run_dir)) if not b.passed]
    result.alerts += [f"budget breached: {b.detail}" for b in breaches]
    if history is not None:
        result.alerts += _change_alerts(history, suite)
    if result.alerts and result.exit_code == EXIT_OK:
        result.exit_code = EXIT_REGRESSION


def _regression_text(compared, row) -> str:
    ratio = f"x{row.ratio:.3f} (95% CI {row.ci_low:.3f}-{row.ci_high:.3f})" if row.ratio is not None else \
        f"{row.failures_a} -> {row.failures_b}"
    return f"{compared.metric} regression at {row.clip_s:g} s ({row.stage}): {row.verdict} {ratio}"


def _change_alerts(history, suite: Suite) -> list[str]:
    from ..analysis.history_trend import trend_changes

    alerts = []
    for metric in ("latency", "memory"):
        series = history.series(suite.name, metric)
        nights = series["run_id"].nunique()
        for change in trend_changes(series, metric):
            if change["regression"] and change["night"] > nights - RECENT_NIGHTS:
                alerts.append(f"change point in {metric} of {change['case_id']} from night {change['night']} "
                              f"({change['run_id']}): {change['relative_change']:+.1%} "
                              f"({change['before']:.4g} -> {change['after']:.4g}, p={change['p_value']:.3g})")
    return alerts


def _report_step(result: NightlyResult, reports_dir: Path, db_url: str | None = None) -> None:
    from ..report.writer import write_reports

    run_id = read_manifest(result.run_dir)["run_id"]
    try:
        written = write_reports(result.run_dir, against=result.baseline, out=run_dir_for(reports_dir, run_id),
                                db_url=db_url)
        result.report_dir = written.out_dir
    except Interrupted:  # SIGTERM/SIGINT while writing: stop here, post nothing, mark nothing
        raise
    except Exception as exc:  # a broken report must not stop the digest: it says so instead
        _fail(result, EXIT_REPORT, f"report: {type(exc).__name__}: {exc}")


def _post_step(result: NightlyResult, channel: str | None, thread_ts: str | None, dry_run: bool, emit,
               token_env: str) -> None:
    if channel is None:
        return
    from ..notify.digest import build_digest
    from ..notify.from_run import digest_input, read_answers
    from ..notify.slack import dry_run_payload, post_report

    pdf = result.report_dir / "report.pdf" if result.report_dir else None
    alerts = [f"nightly problem: {p}" for p in result.problems] + result.alerts + result.notes
    try:
        answers = read_answers(result.report_dir)
    except NotifyError as exc:  # a damaged answers file: the digest still goes out, saying so
        answers, alerts = [], [*alerts, f"nightly problem: {exc}"]
    digest = build_digest(digest_input(result.run_dir, alerts, report_name=pdf.name if pdf else None,
                                       answers=answers))
    if dry_run:
        emit("dry_run", payload=dry_run_payload(digest, channel=channel, pdf_path=pdf, thread_ts=thread_ts))
        return
    try:
        result.posted = post_report(digest, channel=channel, pdf_path=pdf, thread_ts=thread_ts, token_env=token_env)
    except NotifyError as exc:
        _fail(result, EXIT_NOTIFY, f"slack: {exc}")


def _mark_step(history, result: NightlyResult) -> None:
    """Record what the comparison found (any alert marks the night as a regression), whatever
    failed after it: a regressed night must never become the next night's good baseline."""
    if history is None:
        return
    try:
        run_id = read_manifest(result.run_dir)["run_id"]
        history.mark_run(run_id, regression=bool(result.alerts),
                         note="; ".join(result.alerts + result.problems)[:2000])
    except Interrupted:
        raise
    except (BenchError, UserError) as exc:
        _fail(result, EXIT_HISTORY, f"history: {exc}")
