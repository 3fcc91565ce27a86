"""bench nightly never records a wrong verdict: a regressed night stays a regression whatever
fails after the comparison (issue 12 A1), distinct suites never share a nightly folder (A2),
and a signal during the report step posts and marks nothing (B11). In-process run_nightly on a
schema-true synthetic run (tests/synthetic_run.py), a real SQLite history and the fake Slack."""

from __future__ import annotations

import os
import signal
import time

import pytest
from fake_slack import FakeSlack, forever
from synthetic_run import make_synthetic_run

from benchrunner.errors import Interrupted, UserError
from benchrunner.store.history import open_history
from benchrunner.nightly.orchestrate import nightly_run_id, run_nightly
from benchrunner.suite import load_suite

TOKEN = "xoxb-TRUTH-SECRET-7"
SUITE = """
    name = "{name}"
    device = "cpu"
    clip_lengths_s = [5]
    modes = ["single"]
"""


@pytest.fixture
def slack_env(monkeypatch):
    def start(**fail):
        slack = FakeSlack(token=TOKEN, fail=fail)
        slack.__enter__()
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("BENCH_SLACK_API_URL", slack.api_url)
        return slack
    return start


def _nightly_folder(write_suite, tmp_path, name="synthetic", owner=None):
    """Today's nightly of suite ``name`` already measured (a finished synthetic run whose 120 s
    cases breach the suite's 9 s p50 budget: an alert), so run_nightly goes straight to judging."""
    suite = load_suite(write_suite(SUITE.format(name=name)))
    run_id = nightly_run_id(suite)
    make_synthetic_run(tmp_path / "results", suite=owner or name, run_id=run_id, repeats=3)
    return suite, run_id


def _mark(tmp_path, run_id):
    with open_history(f"sqlite:///{tmp_path / 'results' / 'history.db'}") as history:
        (row,) = [r for r in history.runs("synthetic") if r["run_id"] == run_id]
        return row["regression"], history.last_good_run("synthetic")


def test_a_regression_stays_marked_when_slack_fails_afterwards(write_suite, tmp_path, slack_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite, run_id = _nightly_folder(write_suite, tmp_path)
    slack = slack_env(**{"chat.postMessage": forever(500)})
    try:
        result = run_nightly(suite, channel="C1", results_dir=tmp_path / "results", reports_dir=tmp_path / "reports")
    finally:
        slack.__exit__(None, None, None)
    assert result.alerts, "the synthetic run breaches its p50 budget"
    assert result.exit_code == 4 and any(p.startswith("slack:") for p in result.problems)
    regression, last_good = _mark(tmp_path, run_id)
    assert regression is True            # not a good baseline for tomorrow
    assert last_good is None


def test_summary_names_both_the_regression_and_the_failed_step():
    from benchrunner.cli.nightly import _summary_lines
    from benchrunner.nightly.orchestrate import NightlyResult

    result = NightlyResult(alerts=["latency regression at 5 s"], problems=["slack: HTTP 500"], exit_code=4)
    lines = _summary_lines(result)
    assert "exit 4" in lines[0] and "regression" in lines[0]
    assert "  problem: slack: HTTP 500" in lines and "  alert: latency regression at 5 s" in lines


def test_suites_whose_slugs_collide_get_distinct_nightly_ids(write_suite):
    a = load_suite(write_suite(SUITE.format(name="night a"), "a.toml"))
    b = load_suite(write_suite(SUITE.format(name="night/a"), "b.toml"))
    long1 = load_suite(write_suite(SUITE.format(name="x" * 40 + "1"), "c.toml"))
    long2 = load_suite(write_suite(SUITE.format(name="x" * 40 + "2"), "d.toml"))
    assert nightly_run_id(a) != nightly_run_id(b)
    assert nightly_run_id(long1) != nightly_run_id(long2)


def test_a_nightly_folder_of_another_suite_is_refused(write_suite, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite, run_id = _nightly_folder(write_suite, tmp_path, owner="someone-else")
    with pytest.raises(UserError, match=r"manifest.json: suite: .*'someone-else', not 'synthetic'"):
        run_nightly(suite, results_dir=tmp_path / "results", reports_dir=tmp_path / "reports")


def test_sigterm_during_the_report_step_posts_and_marks_nothing(write_suite, tmp_path, slack_env, monkeypatch):
    from benchrunner.cli.common import signals_raise_interrupted as _signals_raise_interrupted

    monkeypatch.chdir(tmp_path)
    suite, run_id = _nightly_folder(write_suite, tmp_path)

    def report_then_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not interrupt the report")

    monkeypatch.setattr("benchrunner.report.writer.write_reports", report_then_sigterm)
    slack = slack_env()
    try:
        with _signals_raise_interrupted(), pytest.raises(Interrupted) as caught:
            run_nightly(suite, channel="C1", results_dir=tmp_path / "results", reports_dir=tmp_path / "reports")
        assert caught.value.exit_code == 143
        assert slack.calls("chat.postMessage") == []
    finally:
        slack.__exit__(None, None, None)
    assert _mark(tmp_path, run_id)[0] is None
