"""The history store (real SQLite files), `bench history`, trend change points and `bench prune`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect

from benchrunner.analysis.history_trend import trend_changes
from benchrunner.errors import UserError
from benchrunner.store.history import (CASES, CURRENT_VERSION, RUNS, default_db_url, history_series, mask_url, migrate,
                                       open_history, record_folders)
from benchrunner.analysis.summary import SUMMARY_COLUMNS
from benchrunner.store.results import RunFiles, read_summary

from conftest import bench_env

SUITE = "nightly"
CASES_MS = {"default/single/5s": 340.0, "default/chunked/45s": 3100.0, "default/hybrid@32/45s": 2900.0}
DAY0 = datetime(2025, 3, 1, 2, 0, tzinfo=timezone.utc)


# --- synthetic nights ---------------------------------------------------------------------------

def _summary_row(run_id: str, case_id: str, latency_ms: float, stage: str = "total") -> dict:
    variant, mode_label, clip = case_id.split("/")
    mode, _, threshold = mode_label.partition("@")
    row = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(run_id=run_id, case_id=case_id, suite=SUITE, pipeline="benchrunner.pipelines.reference:build",
               variant=variant, mode=mode, threshold_s=float(threshold) if threshold else None,
               clip_s=float(clip.rstrip("s")), stage=stage, executed_as=mode, n=25, n_total=25, failures=0,
               failure_rate=0.0, latency_p50_ms=latency_ms, latency_mean_ms=latency_ms, device="cuda")
    if stage == "total":
        row.update(throughput_clips_per_s=1000.0 / latency_ms, peak_mem_bytes=38e9, util_mean_pct=75.0,
                   util_source="gpm_sm", mem_source="cuda_allocator")
    return row


def make_night(results: Path, night: int, latencies: dict[str, float], *, suite: str = SUITE,
               status: str = "finished") -> Path:
    """Night ``night`` (0-based) as a schema-true run folder, via RunFiles."""
    started = DAY0 + timedelta(days=night)
    run_id = f"{started:%Y%m%d-%H%M%S}-{suite}"
    files = RunFiles(results / run_id)
    files.dir.mkdir(parents=True)
    rows = [_summary_row(run_id, case, ms) for case, ms in latencies.items()]
    rows += [_summary_row(run_id, case, ms * 0.55, stage="acoustic") for case, ms in latencies.items()]
    files.write_summary(pd.DataFrame(rows, columns=SUMMARY_COLUMNS))
    files.write_manifest({
        "format_version": 1, "run_id": run_id, "status": status, "started_at": started.isoformat(),
        "ended_at": (started + timedelta(hours=3)).isoformat(),
        "suite": {"name": suite, "path": f"suites/{suite}.toml"},
        "environment": {"gpus": [{"name": "NVIDIA A100-SXM4-80GB", "driver_version": "545.23.08"}],
                        "torch": {"version": "2.2.0", "cuda": "12.3"}, "git": {"commit": f"c0ffee{night:02d}"},
                        "host": {"hostname": "gpu-node-3"}},
    })
    return files.dir


def make_nights(results: Path, n: int, shape, *, seed: int = 0) -> list[Path]:
    """``n`` nights; ``shape(case_id, night)`` multiplies each case's base latency; 1% noise."""
    rng = np.random.default_rng(seed)
    return [make_night(results, i, {c: ms * shape(c, i) * (1 + rng.normal(0, 0.01)) for c, ms in CASES_MS.items()})
            for i in range(n)]


def bench(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchrunner", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=bench_env())


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'history.db'}"


# --- bench history ------------------------------------------------------------------------------

def test_cli_flags_the_step_at_night_6_and_nothing_else(tmp_path, db):
    step_case = "default/hybrid@32/45s"
    make_nights(tmp_path / "results", 10, lambda c, i: 1.10 if c == step_case and i >= 5 else 1.0)
    done = bench("history", SUITE, "--db", db, "--record", "results", "--format", "json", "--last", "10",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert len(payload["nights"]) == 10
    changes = {c["case_id"]: c["changes"] for c in payload["cases"]}
    assert [ch["night"] for ch in changes.pop(step_case)] == [6]
    assert all(not found for found in changes.values())
    step = {c["case_id"]: c for c in payload["cases"]}[step_case]
    assert step["verdict"] == "regression" and step["changes"][0]["regression"]
    assert step["changes"][0]["relative_change"] == pytest.approx(0.10, abs=0.03)

    table = bench("history", SUITE, "--db", db, "--last", "10", "--fail-on-regression", cwd=tmp_path)
    assert table.returncode == 1, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith(step_case))
    assert "night 6 (2025-03-06) +" in row and "regression" in row
    assert table.stdout.count("night 6 (") == 1


def test_one_night_spike_is_not_a_change(tmp_path, db):
    make_nights(tmp_path / "results", 10, lambda c, i: 1.30 if i == 4 else 1.0, seed=1)
    with open_history(db) as history:
        assert record_folders(history, SUITE, [tmp_path / "results"]) == 10
        series = history.series(SUITE, "latency")
    assert trend_changes(series, "latency") == []


def test_slow_drift_is_caught_and_directions_follow_the_metric(tmp_path, db):
    make_nights(tmp_path / "results", 14, lambda c, i: 1 + 0.02 * i, seed=2)  # +2% a night
    with open_history(db) as history:
        record_folders(history, SUITE, [tmp_path / "results"])
        latency = trend_changes(history.series(SUITE, "latency"), "latency")
        throughput = trend_changes(history.series(SUITE, "throughput"), "throughput")
    assert {c["case_id"] for c in latency} == set(CASES_MS)
    assert all(c["direction"] == "up" and c["regression"] for c in latency)
    assert throughput and all(c["direction"] == "down" and c["regression"] for c in throughput)


def test_util_changes_are_shown_never_regressions(tmp_path, db):
    results = tmp_path / "results"
    make_nights(results, 8, lambda c, i: 1.0)
    for night in sorted(results.iterdir())[4:]:  # utilisation drops 75% -> 60% from night 5
        summary = read_summary(night)
        summary.loc[summary["stage"] == "total", "util_mean_pct"] = 60.0
        RunFiles(night).write_summary(summary)
    with open_history(db) as history:
        record_folders(history, SUITE, [results])
        changes = trend_changes(history.series(SUITE, "util"), "util")
    assert changes and all(c["night"] == 5 and not c["regression"] for c in changes)


def test_history_series_for_the_report(tmp_path, db):
    make_nights(tmp_path / "results", 6, lambda c, i: 1.0)
    with open_history(db) as history:
        record_folders(history, SUITE, [tmp_path / "results"])
    frame = history_series(db, SUITE, "latency", 4)
    assert list(frame.columns) == ["run_id", "started_at", "case_id", "value"]
    assert frame["run_id"].nunique() == 4 and len(frame) == 4 * len(CASES_MS)
    assert frame["started_at"].is_monotonic_increasing and str(frame["started_at"].dt.tz) == "UTC"
    acoustic = history_series(db, SUITE, "latency", 4, stage="acoustic")
    assert (acoustic["value"].to_numpy() < frame["value"].to_numpy()).all()


# --- the store ----------------------------------------------------------------------------------

def test_record_run_of_a_real_run(tmp_path, db, write_suite):
    suite = write_suite("""
        name = "tiny"
        pipeline = "benchrunner.pipelines.reference:build"
        pipeline_args = { scale = "tiny", dtype = "float32" }
        device = "cpu"
        clip_lengths_s = [5]
        modes = ["single", "chunked"]
        repeats = 2
        warmup = 0
        timeout_s = 120
    """)
    done = bench("run", str(suite), "--out", "results", "--run-id", "r1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "results" / "r1"
    summary = read_summary(run_dir)
    with open_history(db) as history:
        history.record_run(run_dir)
        history.record_run(run_dir)  # idempotent: replaces
        [run] = history.runs("tiny")
        series = history.series("tiny", "latency")
    assert run["run_id"] == "r1" and run["status"] == "finished" and run["regression"] is None
    assert run["torch"] and "commit" in run and run["run_dir"] == str(run_dir.resolve())
    total = summary[summary["stage"] == "total"].set_index("case_id")["latency_p50_ms"]
    assert series.set_index("case_id")["value"].to_dict() == pytest.approx(total.to_dict())
    engine = create_engine(db)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from case_summaries").scalar() == len(summary)
    engine.dispose()


def test_marks_and_last_good_run(tmp_path, db):
    folders = make_nights(tmp_path / "results", 3, lambda c, i: 1.0)
    make_night(tmp_path / "results", 3, CASES_MS, status="interrupted")
    with open_history(db) as history:
        record_folders(history, SUITE, [tmp_path / "results"])
        newest = folders[-1].name
        assert history.last_good_run(SUITE)["run_id"] == newest  # the interrupted night is not good
        history.mark_run(newest, regression=True, note="p50 +12%")
        assert history.last_good_run(SUITE)["run_id"] == folders[1].name
        history.mark_run(folders[1].name, regression=False)
        assert history.last_good_run(SUITE, exclude_run_id=folders[1].name)["run_id"] == folders[0].name
        history.record_run(folders[-1])  # re-recording keeps the mark
        assert history.runs(SUITE)[2]["regression"] is True and history.runs(SUITE)[2]["note"] == "p50 +12%"
        assert [r["run_id"] for r in history.runs(SUITE, last_n=2)] == [newest, history.runs(SUITE)[-1]["run_id"]]
        with pytest.raises(UserError, match="not recorded"):
            history.mark_run("nope", regression=False)


def test_upgrade_from_a_v1_database(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    assert migrate(engine, target=1) == 0  # the database as benchrunner with schema v1 left it
    engine.dispose()
    with sqlite3.connect(path) as conn:
        assert "regression" not in {row[1] for row in conn.execute("pragma table_info(runs)")}
        conn.execute("insert into runs (run_id, suite, started_at, status, recorded_at) values (?, ?, ?, ?, ?)",
                     ("old-1", "nightly", "2025-01-01T02:00:00.000+00:00", "finished", "2025-01-01T05:00:00.000+00:00"))
    with open_history(f"sqlite:///{path}") as history:
        assert history.last_good_run("nightly")["run_id"] == "old-1"
        history.mark_run("old-1", regression=True)
        assert history.runs("nightly")[0]["regression"] is True
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        versions = [r[0] for r in conn.exec_driver_sql("select version from schema_version order by version")]
        found = inspect(conn)
        assert {c["name"] for c in found.get_columns("runs")} == set(RUNS.c.keys())
        assert {c["name"] for c in found.get_columns("case_summaries")} == set(CASES.c.keys())
    engine.dispose()
    assert versions == list(range(1, CURRENT_VERSION + 1))


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    open_history(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("insert into schema_version values (99, 'later')")
    with pytest.raises(UserError, match="version 99, newer"):
        open_history(f"sqlite:///{path}")


def record_concurrently(db: str, folders: list[Path]) -> None:
    """One process per folder, all recording (and migrating a fresh database) at once."""
    script = ("import sys; from benchrunner.store.history import open_history, record_folders\n"
              "h = open_history(sys.argv[1]); print(record_folders(h, 'nightly', [sys.argv[2]]))")
    procs = [subprocess.Popen([sys.executable, "-c", script, db, str(f)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=bench_env()) for f in folders]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(folders), outs


def test_two_writers_at_once(tmp_path, db):
    make_nights(tmp_path / "a", 4, lambda c, i: 1.0)
    make_nights(tmp_path / "b", 4, lambda c, i: 1.0, seed=3)
    record_concurrently(db, [tmp_path / "a", tmp_path / "b"])
    with open_history(db) as history:
        assert len(history.runs(SUITE)) == 4  # same run ids (same nights): the later recording won


@pytest.fixture
def pg_db(pg_url) -> str:
    """The PostgreSQL database of ``pg_url``, emptied of benchrunner's tables."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        for table in ("case_summaries", "runs", "schema_version"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()
    return pg_url


def test_postgresql(tmp_path, pg_db):
    """Two nightlies recording at once into a fresh database (both migrate it), then the
    change point read back through bench history, and the marks."""
    step = "default/single/5s"
    for half in ("a", "b"):
        make_nights(tmp_path / half, 10, lambda c, i: 1.10 if c == step and i >= 5 else 1.0)
    record_concurrently(pg_db, [tmp_path / "a", tmp_path / "b"])
    done = bench("history", SUITE, "--db", pg_db, "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    changes = {c["case_id"]: [ch["night"] for ch in c["changes"]] for c in json.loads(done.stdout)["cases"]}
    assert changes == {**dict.fromkeys(CASES_MS, []), step: [6]}
    with open_history(pg_db) as history:
        history.mark_run(history.runs(SUITE)[-1]["run_id"], regression=True)
        assert history.last_good_run(SUITE)["run_id"] == history.runs(SUITE)[-2]["run_id"]


def test_postgresql_upgrade_from_v1(pg_db):
    """A PostgreSQL database left at schema v1 is migrated in place, its rows kept."""
    engine = create_engine(pg_db)
    assert migrate(engine, target=1) == 0
    with engine.begin() as conn:
        assert "regression" not in {c["name"] for c in inspect(conn).get_columns("runs")}
        conn.exec_driver_sql("insert into runs (run_id, suite, started_at, status, recorded_at) values "
                             "('old-1', 'nightly', '2025-01-01T02:00:00.000+00:00', 'finished', "
                             "'2025-01-01T05:00:00.000+00:00')")
    with open_history(pg_db) as history:
        assert history.last_good_run("nightly")["run_id"] == "old-1"
        history.mark_run("old-1", regression=True)
        assert history.runs("nightly")[0]["regression"] is True
    with engine.connect() as conn:
        versions = [r[0] for r in conn.exec_driver_sql("select version from schema_version order by version")]
        assert {c["name"] for c in inspect(conn).get_columns("runs")} == set(RUNS.c.keys())
        assert {c["name"] for c in inspect(conn).get_columns("case_summaries")} == set(CASES.c.keys())
    engine.dispose()
    assert versions == list(range(1, CURRENT_VERSION + 1))


def test_bad_urls_are_one_line_with_the_password_masked(tmp_path):
    assert mask_url("postgresql://bob:s3cret@db.example/bench") == "postgresql://bob:[REDACTED]@db.example/bench"
    for url in ("postgresql+nosuchdriver://bob:s3cret@db.example/bench", "not a url"):
        done = bench("history", SUITE, "--db", url, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.startswith("bench: error: --db/BENCH_DB_URL") and done.stderr.count("\n") == 1
        assert "s3cret" not in done.stderr
    done = bench("history", SUITE, cwd=tmp_path)
    assert done.returncode == 2 and "no history database at sqlite:///results/history.db" in done.stderr
    assert not (tmp_path / "results").exists()


def test_default_db_url(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_DB_URL", raising=False)
    assert default_db_url(tmp_path) == f"sqlite:///{tmp_path}/history.db"
    monkeypatch.setenv("BENCH_DB_URL", "postgresql://team@db/bench")
    assert default_db_url(tmp_path) == "postgresql://team@db/bench"


# --- bench prune --------------------------------------------------------------------------------

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from benchrunner.store.locks import FileLock
    lock = FileLock(Path(sys.argv[1]) / ".lock", what="run").acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def test_prune_keeps_n_per_suite_and_skips_locked_and_running(tmp_path, db):
    results = tmp_path / "results"
    nights = make_nights(results, 6, lambda c, i: 1.0)
    other = make_night(results, 0, CASES_MS, suite="other")
    newer = [make_night(results, night, CASES_MS, suite="other2") for night in (4, 5)]
    older_running = make_night(results, 0, CASES_MS, suite="other2", status="running")
    (results / "history.db").write_text("")  # not a run folder
    with open_history(db) as history:
        record_folders(history, SUITE, [results])
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(nights[1])], stdout=subprocess.PIPE,
                              text=True, env=bench_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        dry = bench("prune", "--keep", "2", "--results", "results", "--dry-run", cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        assert all(p.exists() for p in nights) and not (nights[0] / ".lock").exists()
        done = bench("prune", "--keep", "2", "--results", "results", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    finally:
        holder.kill()
        holder.wait()
    for output in (dry.stdout, done.stdout):
        assert f"skipped results/{nights[1].name}: locked by pid {holder.pid}" in output
        assert f"skipped results/{older_running.name}: status running" in output
    assert "would delete 3 run folder(s)" in dry.stdout and "deleted 3 run folder(s)" in done.stdout
    kept = sorted(p.name for p in results.iterdir() if p.is_dir())
    assert kept == sorted(p.name for p in (nights[1], nights[4], nights[5], other, *newer, older_running))
    with open_history(db) as history:
        assert len(history.runs(SUITE)) == 6  # history rows stay


def test_prune_refuses_keep_zero(tmp_path):
    done = bench("prune", "--keep", "0", "--results", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("bench: error: --keep")
