"""bench check: budgets from the suite against summary.csv; exit 1 on a breach.

Two real tiny runs (one case, 3 repeats, about 5 s each) and pure checks on summary frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchrunner.analysis.budgets import GIB, budgets_from_manifest, check_budgets
from benchrunner.suite import Budget

from conftest import REPO, bench_env


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchrunner", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=bench_env())


def tiny_run(out: Path, p50_limit_ms: float) -> Path:
    done = bench("run", "suites/quick.toml", "--lengths", "5", "--modes", "single", "--repeats", "3",
                 "--out", str(out), "--set", f"budgets.p50_latency_ms={p50_limit_ms}")
    assert done.returncode == 0, done.stderr
    return out


def test_a_breached_budget_exits_1(tmp_path):
    out = tiny_run(tmp_path, 0.001)
    done = bench("check", "--results-dir", str(out))
    assert done.returncode == 1, done.stderr
    line = next(l for l in done.stdout.splitlines() if l.startswith("p50_latency_ms"))
    assert "FAIL" in line and "0.001" in line
    assert "breached: p50_latency_ms" in done.stdout


def test_a_generous_budget_exits_0(tmp_path):
    out = tiny_run(tmp_path, 100000)
    done = bench("check", "--results-dir", str(out), "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["passed"] and {b["metric"] for b in data["budgets"]} == {"p50_latency_ms", "failure_rate"}
    p50 = next(b for b in data["budgets"] if b["metric"] == "p50_latency_ms")
    assert 0 < p50["measured"] < 100000


def _summary(rows: list[dict]) -> pd.DataFrame:
    base = {"stage": "total", "variant": "default", "threshold_s": float("nan"), "n": 5, "failure_rate": 0.0,
            "latency_p90_ms": float("nan"), "peak_mem_bytes": 30 * GIB, "throughput_clips_per_s": 3.0}
    return pd.DataFrame([base | r for r in rows])


SUMMARY = _summary([
    {"case_id": "default/single/5s", "mode": "single", "clip_s": 5.0, "latency_p50_ms": 340.0},
    {"case_id": "default/hybrid@32/5s", "mode": "hybrid", "threshold_s": 32.0, "clip_s": 5.0,
     "latency_p50_ms": 350.0, "throughput_clips_per_s": 2.4},
    {"case_id": "default/hybrid@32/60s", "mode": "hybrid", "threshold_s": 32.0, "clip_s": 60.0,
     "latency_p50_ms": 9000.0, "peak_mem_bytes": 41 * GIB, "throughput_clips_per_s": 0.1, "failure_rate": 0.2},
])


def test_scopes_and_directions():
    results = check_budgets(SUMMARY, [
        Budget("p50_latency_ms", 360, clip_s=5),                       # worst 5 s case: 350
        Budget("p50_latency_ms", 345, clip_s=5, mode="single"),        # single only: 340
        Budget("throughput_clips_per_s", 2.5, clip_s=5),               # a minimum: 2.4 breaks it
        Budget("peak_memory_gb", 40),                                  # 41 GiB at 60 s
        Budget("failure_rate", 0.0, mode="hybrid@32"),
    ])
    assert [r.passed for r in results] == [True, True, False, False, False]
    assert [r.measured for r in results] == [350.0, 340.0, 2.4, 41.0, 0.2]
    assert "default/hybrid@32/5s" in results[2].detail and "<" in results[2].detail


def test_what_cannot_be_measured_fails_with_its_fix():
    p90, missing = check_budgets(SUMMARY, [Budget("p90_latency_ms", 1000), Budget("p50_latency_ms", 1, clip_s=7)])
    assert not p90.passed and p90.measured is None and "repeats = 10" in p90.detail
    assert not missing.passed and "no measured case" in missing.detail


def test_budgets_from_the_manifest_as_loaded():
    manifest = {"suite": {"path": "s.toml", "as_loaded": {"budgets": {
        "peak_memory_gb": 60, "p50_latency_ms": {"limit": 360, "clip_s": 5, "mode": "hybrid"}}}}}
    assert budgets_from_manifest(manifest) == [Budget("peak_memory_gb", 60.0),
                                               Budget("p50_latency_ms", 360.0, 5, "hybrid")]
    assert budgets_from_manifest({"suite": {"as_loaded": {}}}) == []
