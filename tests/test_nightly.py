"""bench nightly end to end against a local fake Slack: run, compare, report, post, history;
the lock; Slack failing for good. Real CLI processes, real slack-sdk WebClient."""

from __future__ import annotations

import subprocess
import sys
import time

from fake_slack import FakeSlack, forever

from benchrunner.store.history import open_history
from benchrunner.nightly.orchestrate import suite_key
from conftest import bench_env

TOKEN = "xoxb-NIGHTLY-SECRET-42"
SUITE = """
    name = "tiny-nightly"
    pipeline_args = { scale = "tiny" }
    device = "cpu"
    clip_lengths_s = [3, 12]
    modes = ["single", "chunked"]
    chunk = { window_s = 5, overlap_s = 1 }
    repeats = 3
    warmup = 1
    budgets = { p50_latency_ms = 60000, failure_rate = 0.0 }
"""


def nightly(tmp_path, slack: FakeSlack, *extra: str, suite: str = "suite.toml", popen: bool = False):
    env = {**bench_env(), "SLACK_BOT_TOKEN": TOKEN, "BENCH_SLACK_API_URL": slack.api_url}
    args = [sys.executable, "-m", "benchrunner", "nightly", suite, "--slack-channel", "C123", *extra]
    if popen:
        return subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_nightly_runs_the_whole_chain_and_posts_the_pdf(write_suite, tmp_path):
    write_suite(SUITE)
    with FakeSlack(token=TOKEN) as slack:
        result = nightly(tmp_path, slack)
        assert result.returncode == 0, result.stdout + result.stderr
        (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.name.startswith("nightly-")]
        pdf = tmp_path / "reports" / run_dir.name / "report.pdf"
        assert pdf.is_file() and (tmp_path / "reports" / run_dir.name / "report.html").is_file()
        (message,) = slack.calls("chat.postMessage")
        assert "tiny-nightly" in str(message.body)
        (upload_bytes,) = slack.uploads.values()
        assert upload_bytes == pdf.read_bytes()
        (complete,) = slack.calls("files.completeUploadExternal")
        assert message.headers.get("Authorization") == f"Bearer {TOKEN}"
    with open_history(f"sqlite:///{tmp_path / 'results' / 'history.db'}") as history:
        assert [r["run_id"] for r in history.runs("tiny-nightly")] == [run_dir.name]
    assert TOKEN not in result.stdout + result.stderr


def test_a_second_nightly_of_the_suite_exits_3_with_the_lock_message(write_suite, tmp_path):
    write_suite(SUITE)
    with FakeSlack(token=TOKEN) as slack:
        first = nightly(tmp_path, slack, popen=True)
        deadline = time.monotonic() + 120
        lock = tmp_path / "results" / f".nightly-{suite_key('tiny-nightly')}.lock"
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
            time.sleep(0.1)
        second = nightly(tmp_path, slack)
        out, err = first.communicate(timeout=600)
    assert second.returncode == 3, second.stderr
    assert "the nightly of suite 'tiny-nightly' is locked by pid" in second.stderr
    assert first.returncode == 0, out + err


def test_slack_failing_for_good_exits_4_and_keeps_the_report(write_suite, tmp_path):
    write_suite(SUITE)
    with FakeSlack(token=TOKEN, fail={"chat.postMessage": forever(500)}) as slack:
        result = nightly(tmp_path, slack)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "chat.postMessage failed: HTTP 500" in result.stderr
    assert list((tmp_path / "reports").glob("nightly-*/report.pdf"))
    assert TOKEN not in result.stdout + result.stderr


def test_post_dry_run_needs_no_token(write_suite, tmp_path, bench):
    write_suite(SUITE)
    with FakeSlack(token=TOKEN) as slack:
        assert nightly(tmp_path, slack).returncode == 0
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.name.startswith("nightly-")]
    env = {k: v for k, v in bench_env().items() if k != "SLACK_BOT_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "benchrunner", "post", run_dir.name, "--channel", "C9", "--dry-run"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"chat.postMessage"' in result.stdout and "report.pdf" in result.stdout


def test_nightly_resumes_todays_interrupted_nightly(write_suite, tmp_path):
    import signal
    from datetime import datetime, timezone

    from benchrunner.store.results import read_manifest, read_samples

    write_suite(SUITE.replace('clip_lengths_s = [3, 12]', 'clip_lengths_s = [3, 6, 9, 12, 15]'))
    run_id = f"nightly-{suite_key('tiny-nightly')}-{datetime.now(timezone.utc):%Y%m%d}"
    first = subprocess.Popen([sys.executable, "-m", "benchrunner", "run", "suite.toml", "--out", "results",
                              "--run-id", run_id], cwd=tmp_path, env=bench_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    samples = tmp_path / "results" / run_id / "samples.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (samples.exists() and samples.stat().st_size):
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    with FakeSlack(token=TOKEN) as slack:
        result = nightly(tmp_path, slack)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / "results" / run_id
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "finished" and len(manifest["resumed"]) == 1
    keys = read_samples(run_dir)[["case_id", "repeat", "stage"]]
    assert not keys.duplicated().any() and keys["case_id"].nunique() == 10


def test_post_reads_the_token_from_the_variable_named_by_token_env(write_suite, tmp_path):
    write_suite(SUITE)
    env = {k: v for k, v in bench_env().items() if k != "SLACK_BOT_TOKEN"}
    built = subprocess.run([sys.executable, "-m", "benchrunner", "nightly", "suite.toml"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.name.startswith("nightly-")]
    with FakeSlack(token=TOKEN) as slack:
        env.update(TEAM_SLACK_TOKEN=TOKEN, BENCH_SLACK_API_URL=slack.api_url)
        result = subprocess.run([sys.executable, "-m", "benchrunner", "post", run_dir.name, "--channel", "C5",
                                 "--token-env", "TEAM_SLACK_TOKEN"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert slack.uploads and TOKEN not in result.stdout + result.stderr
