"""bench tune-threshold: a run built so the right threshold is known, the bounds, ties, the
composition source, the memory model, and a real small sweep of the reference pipeline.

About 20 s, most of it the real sweep (12 cases, 2 repeats).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchrunner.analysis.summary import summarise
from benchrunner.analysis.tuning import GIB, tune_run, tune_threshold
from benchrunner.store.results import SAMPLE_COLUMNS, RunFiles, read_samples, read_summary
from benchrunner.store.runs import resolve_run

from conftest import REPO, bench_env

CLIPS = [20.0, 25.0, 29.0, 31.0, 33.0, 36.0, 40.0]
THRESHOLDS = [28.0, 30.0, 32.0, 35.0]
OOM_ABOVE_S = 32.0       # a single pass fails above 32 s
CHUNKED_SNR_DB = 45.0


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchrunner", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=bench_env())


def _path_rows(mode, threshold_s, clip_s, path, rng, repeats=5) -> list[dict]:
    """Single: 10 ms per clip second, peak 0.5 GiB + 0.01 GiB x clip_s^2, OOM above 32 s.
    Chunked: 15% slower, 2 GiB, 45 dB SNR against the single pass."""
    label = f"hybrid@{threshold_s:g}" if threshold_s is not None else mode
    oom = path == "single" and clip_s > OOM_ABOVE_S
    per_s = 10.0 if path == "single" else 11.5
    rows = []
    for i in range(repeats):
        rows.append({c: None for c in SAMPLE_COLUMNS} | {
            "schema_version": 1, "run_id": "syn", "case_id": f"default/{label}/{clip_s:g}s", "suite": "syn",
            "pipeline": "p:build", "variant": "default", "mode": mode, "threshold_s": threshold_s,
            "clip_s": clip_s, "executed_as": path, "repeat": i, "stage": "total",
            "status": "oom" if oom else "ok",
            "latency_ms": None if oom else float(per_s * clip_s * (1 + 0.01 * rng.standard_normal())),
            "peak_mem_bytes": float((0.5 + 0.01 * clip_s**2) * GIB if path == "single" else 2 * GIB),
            "mem_source": "cuda_allocator", "device_mem_bytes": float(80 * GIB),
            "quality_snr_db": CHUNKED_SNR_DB if path == "chunked" else None})
    return rows


def synthetic_run(folder: Path, *, clips=CLIPS, thresholds=THRESHOLDS, hybrid=True) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for clip_s in clips:
        rows += _path_rows("single", None, clip_s, "single", rng)
        rows += _path_rows("chunked", None, clip_s, "chunked", rng)
        for t in thresholds if hybrid else []:
            rows += _path_rows("hybrid", t, clip_s, "single" if clip_s <= t else "chunked", rng)
    folder.mkdir(parents=True)
    files = RunFiles(folder)
    files.append_case(rows, [])
    files.write_summary(summarise(read_samples(folder)))
    files.write_manifest({"run_id": folder.name, "status": "finished", "started_at": "2026-01-01T00:00:00+00:00",
                          "suite": {"name": "syn", "path": "syn.toml",
                                    "as_loaded": {"budgets": {"peak_memory_gb": 60, "failure_rate": 0.0}}}})
    return folder


@pytest.fixture(scope="module")
def known_run(tmp_path_factory) -> Path:
    return synthetic_run(tmp_path_factory.mktemp("known") / "run")


def test_picks_the_known_threshold_and_says_why(known_run):
    done = bench("tune-threshold", str(known_run), "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["recommended"], data["runner_up"]) == (32.0, 30.0)
    rows = {r["threshold_s"]: r for r in data["rows"]}
    assert not rows[35.0]["eligible"] and "oom at 33 s" in rows[35.0]["why_not"]
    assert "significantly faster" in data["reason"] and "(31 s)" in data["reason"]
    table = bench("tune-threshold", str(known_run))
    assert "recommended: hybrid@32" in table.stdout and "why: hybrid@32: the fastest" in table.stdout
    assert "runner-up" in table.stdout and "Not eligible: hybrid@35" in table.stdout.replace("\n  ", " ")


def test_memory_budget_and_quality_bound_exclude(known_run):
    # hybrid@32 runs single at 31 s: 0.5 + 0.01 * 31^2 = 10.1 GiB; hybrid@30 peaks at 8.9 GiB
    tight = tune_run(known_run, memory_budget_gb=9.0)
    assert tight.recommended == 30.0
    assert "peak 10.1 GiB > budget 9 GiB" in {r.threshold_s: r for r in tight.rows}[32.0].why_not
    strict = tune_run(known_run, min_snr_db=50.0)
    assert strict.recommended is None and strict.reason.startswith("no threshold is eligible")
    assert bench("tune-threshold", str(known_run), "--min-snr-db", "50").returncode == 1


def test_thresholds_with_no_clip_between_them_cannot_be_separated(tmp_path):
    run = synthetic_run(tmp_path / "run", clips=[20.0, 40.0], thresholds=[28.0, 30.0])
    result = tune_run(run)
    assert {result.recommended, result.runner_up} == {28.0, 30.0}
    assert "cannot separate them" in result.reason and "between 28 and 30 s" in result.reason


def test_composition_from_single_and_chunked(tmp_path):
    run = synthetic_run(tmp_path / "run", hybrid=False)
    result = tune_run(run)
    assert result.source == "composition"
    assert result.recommended == 31.0  # single up to 31 s; single fails at 33 s
    assert [r.threshold_s for r in result.rows if not r.eligible] == [33.0, 36.0, 40.0]
    assert any("composed from single" in n for n in result.notes)


def test_memory_model_answers_the_longest_single_clip(known_run):
    samples, summary = read_samples(known_run), read_summary(known_run)
    result = tune_threshold(samples, summary, memory_budget_bytes=None, min_snr_db=None, gpu_memory_gb=20.0)
    model = result.memory_model
    assert model["p"] == pytest.approx(2.0, abs=0.01)
    expected_s = math.sqrt((0.9 * 20.0 - 0.5) / 0.01)  # 0.5 + 0.01 x^2 = 90% of 20 GiB
    assert model["max_single_clip_s"] == pytest.approx(expected_s, rel=0.01)
    assert [p["clip_s"] for p in model["points"]] == [20.0, 25.0, 29.0, 31.0]
    assert all(abs(p["residual_bytes"]) < 0.01 * GIB for p in model["points"])
    assert model["extrapolated"] and model["single_failed_at_s"] == [33.0, 36.0, 40.0]
    assert any("trust the failures" in n for n in result.notes)
    from_run = tune_threshold(samples, summary, memory_budget_bytes=None, min_snr_db=None)
    assert from_run.memory_model["gpu_memory_from"] == "device_mem_bytes of the run"


def test_a_real_small_sweep(tmp_path):
    done = bench("run", "suites/threshold.toml", "--lengths", "20,29,40", "--repeats", "2", "--warmup", "0",
                 "--set", "hybrid_thresholds_s=[28,35]", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    run = resolve_run(None, tmp_path)
    tuned = bench("tune-threshold", str(run), "--format", "json", "--gpu-memory-gb", "1")
    assert tuned.returncode in (0, 1), tuned.stderr
    data = json.loads(tuned.stdout)
    assert [r["threshold_s"] for r in data["rows"]] == [28.0, 35.0]
    eligible = [r for r in data["rows"] if r["eligible"]]
    if eligible:
        assert data["recommended"] == min(eligible, key=lambda r: r["total_time_ms"])["threshold_s"]
    assert len(data["memory_model"]["points"]) == 3
    assert data["memory_model"]["max_single_clip_s"] > 0
