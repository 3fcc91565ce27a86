"""Issue 12, section C: run ids are never paths, credentials never leave the process in
clear, HTML stays text in Markdown, prune never follows a symbolic link.
(The Slack deadline tests, C18, are in test_slack.py, next to the fake server.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchrunner.errors import UserError, scrub, scrub_argv
from benchrunner.formats import Column, Document, render
from benchrunner.store.prune import prune_runs
from benchrunner.store.runs import RUN_ID_MAX_CHARS, check_run_id, resolve_run

from conftest import REPO
from synthetic_run import make_synthetic_run

BAD_RUN_IDS = ["", ".", "..", ".hidden", "a/b", "../../x", "/tmp/x", "a\\b", "a b", "x" * (RUN_ID_MAX_CHARS + 1),
               "nul\0byte", "\u00e9t\u00e9"]


# --- C16: run ids -----------------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["20261125-135328-quick", "nightly-a_b-20261130", "run.2", "X" * RUN_ID_MAX_CHARS])
def test_run_id_rule_accepts_folder_names(run_id):
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", BAD_RUN_IDS + [None, 12])
def test_run_id_rule_refuses_paths_dots_and_long_names(run_id):
    with pytest.raises(UserError, match="--run-id: .* is not a run id"):
        check_run_id(run_id, "--run-id")


def test_run_id_that_is_a_path_is_refused_before_anything_is_written(bench, tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    for run_id in ("../../escaped", "sub/dir", ".", str(tmp_path / "absolute")):
        done = bench("run", str(REPO / "suites" / "quick.toml"), "--lengths", "3", "--modes", "single",
                     "--repeats", "1", "--out", "results", "--run-id", run_id, cwd=work)
        assert done.returncode == 2, (run_id, done.stderr)
        assert f"--run-id: {repr(run_id)[:40]}" in done.stderr and "is not a run id" in done.stderr  # long: cut
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]  # nothing written anywhere


def _outside_layout(tmp_path: Path) -> tuple[Path, Path]:
    """results/ and, beside it, a run folder an id like ../elsewhere/run would reach."""
    results = tmp_path / "results"
    results.mkdir()
    make_synthetic_run(tmp_path / "elsewhere", repeats=2, run_id="run")
    work = tmp_path / "w1" / "w2"  # a cwd from which the same text is no path to it
    work.mkdir(parents=True)
    return results, work


def test_compare_report_and_resume_ids_do_not_reach_outside_the_results_folder(tmp_path, monkeypatch):
    from benchrunner.report.model import resolve_run_dir
    from benchrunner.run.runner import resume_run

    results, work = _outside_layout(tmp_path)
    monkeypatch.chdir(work)
    ref = "../elsewhere/run"
    assert (results / ref / "manifest.json").is_file()  # joining the id would reach it
    with pytest.raises(UserError, match="not a run folder nor a run id"):
        resolve_run(ref, results)
    with pytest.raises(UserError, match="no such run folder"):
        resolve_run_dir(ref, results)
    with pytest.raises(UserError, match="--resume: '../elsewhere/run': no run folder"):
        resume_run(ref, out_dir=results)


def test_resume_refuses_a_manifest_whose_run_id_is_a_path(tmp_path):
    from benchrunner.run.runner import resume_run

    run_dir = make_synthetic_run(tmp_path / "results", repeats=2, run_id="crafted")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["run_id"] = "../../evil"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"manifest.json: run_id: '../../evil' is not a run id"):
        resume_run(str(run_dir))


def test_a_crafted_manifest_cannot_send_the_report_outside_reports(tmp_path, monkeypatch):
    from benchrunner.report.writer import write_reports

    run_dir = make_synthetic_run(tmp_path / "results", repeats=2, run_id="crafted")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["run_id"] = "../../../outside"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    work = tmp_path / "w1" / "w2"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    with pytest.raises(UserError, match=r"manifest.json: run_id: '../../../outside' is not a run id"):
        write_reports(run_dir, formats=("md",), research_log=None)
    assert not (tmp_path / "outside").exists() and not (tmp_path / "w1" / "outside").exists()
    assert not list(tmp_path.rglob("report.md"))


# --- C17: credentials -------------------------------------------------------------------------

def test_scrub_removes_url_passwords_tokens_and_known_secrets():
    assert scrub("--db postgresql+psycopg://bench:hunter2@db:5432/bench") == \
        "--db postgresql+psycopg://bench:[REDACTED]@db:5432/bench"
    assert scrub("--db=mysql://u:p%40ss@h/d?password=x&charset=utf8") == \
        "--db=mysql://u:[REDACTED]@h/d?password=[REDACTED]&charset=utf8"
    assert scrub("https://xoxb-1-2@hooks/x and token=abc") == "https://[REDACTED]@hooks/x and token=[REDACTED]"
    assert scrub("postgresql://team@db/bench") == "postgresql://team@db/bench"  # a user name is no secret
    assert scrub("https://x-access-token:ghp_abc@github.com/o/r") == "https://x-access-token:[REDACTED]@github.com/o/r"
    assert scrub("Bearer xoxb-123-456-abcDEF failed") == "Bearer [REDACTED] failed"
    assert scrub("sqlite:///results/history.db http://proxy:8080/api/") == \
        "sqlite:///results/history.db http://proxy:8080/api/"  # nothing secret: unchanged
    assert scrub("my secret is s3cr3t!", secrets=[" s3cr3t! "]) == "my secret is [REDACTED]"
    assert scrub_argv(["bench", "--db", "postgresql://a:b@c/d"]) == ["bench", "--db", "postgresql://a:[REDACTED]@c/d"]


def test_db_password_is_not_in_the_manifest_nor_in_any_output(bench, write_suite, tmp_path):
    suite = write_suite("""
        name = "secret"
        pipeline_args = { scale = "tiny" }
        device = "cpu"
        clip_lengths_s = [2]
        modes = ["single"]
        repeats = 1
        warmup = 0
    """)
    password = "hunter2-PASS"
    url = f"postgresql+psycopg://bench:{password}@127.0.0.1:1/bench"
    done = bench("nightly", str(suite), "--db", url, "--out", str(tmp_path / "results"),
                 "--reports", str(tmp_path / "reports"), "--dry-run", timeout=600)
    assert done.returncode == 7, done.stderr  # the history store cannot be reached
    assert "bench:[REDACTED]@127.0.0.1" in done.stdout + done.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in written)
    for where in [done.stdout, done.stderr] + [p.read_bytes().decode("utf-8", "replace") for p in written]:
        assert password not in where


def test_failure_messages_recorded_in_samples_are_scrubbed():
    from benchrunner.run.failures import describe_exception

    exc = ConnectionError("could not reach postgresql://svc:topsecret@db/features (token=abc123)")
    text = describe_exception(exc)
    assert "topsecret" not in text and "abc123" not in text
    assert text == "ConnectionError: could not reach postgresql://svc:[REDACTED]@db/features (token=[REDACTED])"


# --- C19: Markdown ----------------------------------------------------------------------------

def test_markdown_escapes_html_in_names():
    doc = Document(title="B = <b>x</b> against A", columns=[Column("case", "case", align="left")],
                   records=[{"case": "<img src=x onerror=alert(1)>/single|x"}],
                   before=["variant <script>alert(1)</script>"], after=["a & b"])
    out = render(doc, "md")
    assert "<" not in out and ">" not in out.replace("---:", "")
    assert "&lt;img src=x onerror=alert(1)&gt;/single\\|x" in out
    assert "&lt;script&gt;" in out and "a &amp; b" in out


def test_bench_compare_md_escapes_variant_and_case_names(tmp_path):
    from benchrunner.analysis.compare import compare
    from benchrunner.formats.documents import compare_document
    from benchrunner.store.results import SAMPLE_COLUMNS, RunFiles

    rows = []
    for variant, center in (("<i>fp32</i>", 10.0), ("<script>x</script>", 11.0)):
        for i in range(6):
            rows.append({c: None for c in SAMPLE_COLUMNS} | {
                "schema_version": 1, "run_id": "r", "case_id": f"{variant}/single/5s", "suite": "s",
                "pipeline": "p:build", "variant": variant, "mode": "single", "clip_s": 5.0, "executed_as": "single",
                "repeat": i, "stage": "total", "status": "ok", "latency_ms": center + 0.01 * i,
                "peak_mem_bytes": 1e9, "mem_source": "rss_hwm"})
    files = RunFiles(tmp_path / "r")
    files.dir.mkdir()
    files.append_case(rows, [])
    files.write_manifest({"run_id": "r", "status": "finished", "started_at": "2026-01-01T00:00:00+00:00",
                          "suite": {"name": "s", "as_loaded": {}}, "environment": {}})
    md = render(compare_document(compare("<i>fp32</i>", "<script>x</script>", run=files.dir)), "md")
    assert "<script>" not in md and "<i>" not in md
    assert "&lt;script&gt;x&lt;/script&gt;" in md


# --- C20: prune and symbolic links ------------------------------------------------------------

def _run_folder(parent: Path, name: str, day: int, suite: str = "s") -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "run_id": name, "status": "finished", "suite": {"name": suite},
        "started_at": f"2026-01-{day:02d}T00:00:00+00:00"}))
    (folder / "samples.csv").write_text("x\n" * 100)
    return folder


def test_prune_never_follows_links_and_the_dry_run_lists_what_the_real_run_deletes(tmp_path):
    results = tmp_path / "results"
    keep_newest = _run_folder(results, "new", 9)
    old = _run_folder(results, "old", 1)
    precious = _run_folder(tmp_path / "elsewhere", "precious", 2)  # an old run of the suite, outside
    (results / "linked").symlink_to(precious, target_is_directory=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    lock_linked = _run_folder(results, "lock-linked", 3)
    (lock_linked / ".lock").symlink_to(victim)  # taking this lock would truncate victim.txt
    inside = _run_folder(results, "inside-link", 4)
    (inside / "data").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    dry = prune_runs(results, keep=1, dry_run=True)
    real = prune_runs(results, keep=1)

    assert sorted(r.run_id for r in dry.deleted) == sorted(r.run_id for r in real.deleted) == ["inside-link", "old"]
    assert sorted((p.name, why) for p, why in dry.skipped) == sorted((p.name, why) for p, why in real.skipped)
    skipped = dict((p.name, why) for p, why in real.skipped)
    assert skipped["linked"] == "symbolic link (never followed)"
    assert skipped["lock-linked"] == ".lock is a symbolic link (never followed)"
    assert dry.freed_bytes == real.freed_bytes > 2 * 200  # two samples.csv of 200 bytes, and manifests
    assert not (precious / ".lock").exists() and (precious / "manifest.json").is_file()
    assert victim.read_text() == "keep me"
    assert (tmp_path / "elsewhere" / "precious" / "samples.csv").is_file()  # the link inside was removed, not followed
    assert keep_newest.is_dir() and not old.exists() and not inside.exists()
    assert os.path.islink(results / "linked")
