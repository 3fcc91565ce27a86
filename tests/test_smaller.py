"""Issue 12, section D: smaller fixes (option checks, compare's choices, nightly pre-flight,
the worker log, where the report went, bench report --db)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import bench_env
from synthetic_run import make_synthetic_run


def one_line(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return make_synthetic_run(tmp_path_factory.mktemp("syn") / "results", repeats=3)


# --- tune-threshold options -------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--memory-budget-gb", "-5"], "--memory-budget-gb: -5 is not valid"),
    (["--memory-budget-gb", "nan"], "--memory-budget-gb: nan is not valid"),
    (["--min-snr-db", "nan"], "--min-snr-db: nan is not valid"),
    (["--min-snr-db", "inf"], "--min-snr-db: inf is not valid"),
    (["--gpu-memory-gb", "nan"], "--gpu-memory-gb: nan is not valid"),
    (["--safety-margin", "nan"], "--safety-margin: nan is not valid"),
])
def test_tune_threshold_refuses_bad_option_values(bench, synthetic, args, message):
    done = bench("tune-threshold", str(synthetic), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in one_line(done) and done.stdout == ""


# --- compare: nothing to compare, and which run ------------------------------------------------

def test_compare_a_side_with_itself_says_there_is_nothing_to_compare(bench, synthetic):
    for sides in (("single", "single"), ("hybrid@28", "hybrid@28"), ("default", "default")):
        done = bench("compare", *sides, "--run", str(synthetic))
        assert done.returncode == 2, (sides, done.stdout, done.stderr)
        assert "A and B are the same, so there is nothing to compare" in one_line(done)
        assert done.stdout.strip() == ""


def _run_with_modes(results: Path, name: str, started_at: str, modes: list[str]) -> Path:
    from benchrunner.store.results import SAMPLE_COLUMNS, RunFiles

    rows = [{c: None for c in SAMPLE_COLUMNS} | {
        "schema_version": 1, "run_id": name, "case_id": f"default/{mode}/5s", "suite": "s", "pipeline": "p:build",
        "variant": "default", "mode": mode, "clip_s": 5.0, "executed_as": mode, "repeat": i, "stage": "total",
        "status": "ok", "latency_ms": 10.0 + i, "peak_mem_bytes": 1e9, "mem_source": "rss_hwm"}
        for mode in modes for i in range(4)]
    files = RunFiles(results / name)
    files.dir.mkdir(parents=True)
    files.append_case(rows, [])
    files.write_manifest({"run_id": name, "status": "finished", "started_at": started_at,
                          "suite": {"name": "s", "as_loaded": {}}, "environment": {}})
    return files.dir


def test_compare_without_run_picks_the_newest_run_that_has_both_sides_and_says_so(bench, tmp_path):
    results = tmp_path / "results"
    _run_with_modes(results, "older-both", "2026-01-01T00:00:00+00:00", ["single", "chunked"])
    _run_with_modes(results, "newer-single-only", "2026-01-02T00:00:00+00:00", ["single"])
    done = bench("compare", "single", "chunked", "--results-dir", str(results))
    assert done.returncode == 0, done.stderr
    assert re.search(r"note: run: older-both \(.*\), the newest run with both single and chunked; "
                     r"newer runs without both: newer-single-only", done.stdout), done.stdout
    done = bench("compare", "single", "hybrid@3", "--results-dir", str(results))
    assert done.returncode == 2
    assert "no finished or interrupted run has both 'single' and 'hybrid@3'" in one_line(done)
    assert "newer-single-only, older-both" in done.stderr


# --- bench nightly checks Slack settings before running ----------------------------------------

NIGHTLY_SUITE = """
    name = "preflight"
    pipeline_args = { scale = "tiny" }
    device = "cpu"
    clip_lengths_s = [2]
    modes = ["single"]
    repeats = 1
    warmup = 0
"""


@pytest.mark.parametrize("env,code,message", [
    ({"BENCH_SLACK_API_URL": "ftp://slack.example/api", "SLACK_BOT_TOKEN": "xoxb-1"}, 2,
     "BENCH_SLACK_API_URL: 'ftp://slack.example/api' is not a Slack API URL"),
    ({"BENCH_SLACK_API_URL": "http://127.0.0.1:notaport/api/", "SLACK_BOT_TOKEN": "xoxb-1"}, 2, "has a bad port"),
    ({"SLACK_BOT_TOKEN": ""}, 4, "SLACK_BOT_TOKEN is not set"),
])
def test_nightly_checks_slack_settings_before_running(write_suite, tmp_path, env, code, message):
    suite = write_suite(NIGHTLY_SUITE)
    full_env = {k: v for k, v in bench_env().items() if k not in ("BENCH_SLACK_API_URL", "SLACK_BOT_TOKEN")}
    full_env.update(env)
    done = subprocess.run([sys.executable, "-m", "benchrunner", "nightly", str(suite), "--slack-channel", "C1"],
                          cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == code, done.stdout + done.stderr
    assert message in one_line(done)
    assert not (tmp_path / "results").exists()  # nothing ran


# --- the pipeline's own output goes to the run folder's worker.log ----------------------------

def test_pipeline_prints_go_to_the_worker_log_and_a_dying_worker_shows_its_last_lines(bench, write_suite, tmp_path):
    suite = write_suite("""
        name = "chatty"
        pipeline = "testing_pipelines:build"
        pipeline_args = { chatter = true, abort_clip_s = 3 }
        device = "cpu"
        clip_lengths_s = [2, 3]
        modes = ["single"]
        repeats = 2
        warmup = 0
    """)
    done = bench("run", str(suite), "--out", str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    (run_dir,) = (tmp_path / "results").iterdir()
    log = (run_dir / "worker.log").read_text()
    assert "CHATTER: pipeline built" in log and "CHATTER: stage on 2 s" in log and "CHATTER-ERR" in log
    assert "CHATTER: about to abort on the 3 s clip" in log  # written before the abort, not lost in a buffer
    shown = [line for line in output.splitlines() if "CHATTER" in line]
    assert 1 <= len(shown) <= 5 and all(line.startswith("    CHATTER") for line in shown), output
    assert shown[-1] == "    CHATTER: about to abort on the 3 s clip"  # only as the dead worker's last lines
    assert "CHATTER: pipeline built" not in output
    assert f"last lines of {run_dir / 'worker.log'}" in output


# --- bench report --out is recorded so bench post finds it -------------------------------------

def test_post_finds_the_report_written_with_out(bench, synthetic, tmp_path):
    out = tmp_path / "somewhere" / "else"
    done = bench("report", str(synthetic), "--pdf", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "report.pdf").is_file()
    record = json.loads((synthetic / "report.json").read_text())
    assert record["out_dir"] == str(out.resolve())
    posted = bench("post", str(synthetic), "--channel", "C1", "--dry-run", cwd=tmp_path)
    assert posted.returncode == 0, posted.stderr
    assert json.loads(posted.stdout)["file"]["path"] == str(out.resolve() / "report.pdf")
    explicit = bench("post", str(synthetic), "--channel", "C1", "--dry-run", "--reports", str(tmp_path / "nope"),
                     cwd=tmp_path)
    assert explicit.returncode == 4 and "no PDF report" in one_line(explicit)  # --reports still wins


# --- bench report --db with a bad URL ----------------------------------------------------------

@pytest.mark.parametrize("url,message", [
    ("not a url", "cannot open history database"),
    ("postgresql+nosuchdriver://bob:s3cret@db.example/bench", "cannot open history database"),
    ("sqlite:///{tmp}/missing.db", "no history database at"),
])
def test_report_with_a_bad_db_url_is_bad_input(bench, synthetic, tmp_path, url, message):
    done = bench("report", str(synthetic), "--md", "--out", str(tmp_path / "r"), "--db", url.format(tmp=tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done)
    assert line.startswith("bench: error: --db/BENCH_DB_URL") and message in line and "s3cret" not in line
    assert not (tmp_path / "r" / "report.md").exists()
