"""A schema-true synthetic run folder (samples, timeline, summary, manifest) for report tests
and timings: 6 modes x 8 clip lengths x 25 repeats x 5 stages = 6,000 sample rows by default.

It tells the users' story on a pretend 80 GB GPU: single passes run out of memory on long
clips, chunked never does but costs time, hybrid switches at its threshold. Failures are
included on purpose (OOM for single above 30 s, one timeout in chunked at 120 s).

    python tests/synthetic_run.py OUT_DIR [--suite NAME] [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchrunner.analysis.summary import summarise
from benchrunner.analysis.warnings import run_warnings
from benchrunner.store.results import SCHEMA_VERSION, RunFiles, read_samples

STAGES = ("voice_conversion", "acoustic", "pitch", "lipsync")
STAGE_SHARE = (0.15, 0.55, 0.05, 0.25)
MODES = ("single", "chunked", "hybrid@28", "hybrid@30", "hybrid@32", "hybrid@35")
CLIPS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
GB = 1e9
RUN_ID = "20250301-020000-synthetic"
STARTED = "2025-03-01T02:00:00.000+00:00"


def _mode(label: str) -> tuple[str, float | None]:
    kind, _, threshold = label.partition("@")
    return kind, float(threshold) if threshold else None


def _executed(kind: str, threshold: float | None, clip_s: float) -> str:
    if kind == "hybrid":
        return "single" if clip_s <= threshold else "chunked"
    return kind


def _status(mode: str, executed: str, clip_s: float, repeat: int, failures: bool = True) -> tuple[str, str]:
    if not failures:
        return "ok", ""
    if executed == "single" and clip_s >= 60:
        return "oom", "acoustic: OutOfMemoryError: CUDA out of memory. Tried to allocate 12.00 GiB"
    if executed == "single" and clip_s == 45 and repeat % 8 == 3:
        return "oom", "acoustic: OutOfMemoryError: CUDA out of memory. Tried to allocate 6.00 GiB"
    if mode == "chunked" and clip_s == 120 and repeat == 7:
        return "timeout", "timed out after 600 s"
    return "ok", ""


def _latency_ms(executed: str, clip_s: float, rng: np.random.Generator) -> float:
    base = 68.0 * clip_s * (1.0 + clip_s / 400.0)
    if executed == "chunked":
        base *= 1.09
    return float(base * rng.lognormal(0.0, 0.04))


def _memory_bytes(executed: str, clip_s: float) -> float:
    if executed == "chunked":
        return (34.0 + 7.0 * min(clip_s, 10.0) / 10.0) * GB
    return (34.0 + 4.0 * (clip_s / 30.0) ** 2) * GB


def _case_base(run_id: str, suite: str, label: str, clip_s: float) -> dict:
    kind, threshold = _mode(label)
    return {"schema_version": SCHEMA_VERSION, "run_id": run_id, "case_id": f"default/{label}/{clip_s:g}s",
            "suite": suite, "pipeline": "benchrunner.pipelines.reference:build", "variant": "default",
            "mode": kind, "threshold_s": threshold, "clip_s": clip_s, "device": "cuda",
            "executed_as": _executed(kind, threshold, clip_s), "timer_source": "cuda_event",
            "input": f"synthetic:{clip_s:g}s:seed0", "started_at": STARTED}


def _repeat_rows(base: dict, repeat: int, rng: np.random.Generator, failures: bool = True) -> list[dict]:
    executed, clip_s = base["executed_as"], base["clip_s"]
    status, error = _status(base["mode"], executed, clip_s, repeat, failures)
    ok = status == "ok"
    total = _latency_ms(executed, clip_s, rng)
    common = {**base, "repeat": repeat, "status": status, "error": error}
    rows = [{**common, "stage": stage, "latency_ms": total * share if ok else None}
            for stage, share in zip(STAGES, STAGE_SHARE)]
    chunked = executed == "chunked"
    rows.append({
        **common, "stage": "total", "latency_ms": total if ok else None,
        "peak_mem_bytes": 79.6 * GB if status == "oom" else _memory_bytes(executed, clip_s),
        "mem_source": "cuda_allocator",
        "util_mean_pct": float(rng.normal(78.0 if chunked else 72.0, 2.0)) if ok else None,
        "util_p95_pct": float(rng.normal(92.0, 1.0)) if ok else None, "util_samples": 40 if ok else None,
        "util_source": "gpm_sm", "io_wait_ms": float(rng.uniform(5, 15)) if ok else None,
        "chunks": int(np.ceil(clip_s / 10.0)) if chunked else 1, "retries": 0,
        "quality_snr_db": float(rng.normal(42.0 - clip_s / 20.0, 0.5)) if ok and chunked else None,
    })
    return rows


def _timeline(base: dict, rng: np.random.Generator) -> list[dict]:
    chunked = base["executed_as"] == "chunked"
    steps = np.arange(0.0, 6000.0, 100.0)
    level = 78.0 if chunked else 72.0
    dips = (steps % 1000.0 < 150.0) if chunked else np.zeros_like(steps, dtype=bool)
    values = np.clip(rng.normal(level, 4.0, steps.size) - dips * 30.0, 0, 100)
    return [{"case_id": base["case_id"], "repeat": 0, "t_ms": float(t), "metric": "util_pct", "value": float(v)}
            for t, v in zip(steps, values)]


def _manifest(run_id: str, suite: str, repeats: int) -> dict:
    return {
        "format_version": 1, "run_id": run_id, "status": "finished", "started_at": STARTED,
        "ended_at": "2025-03-01T05:12:00.000+00:00", "argv": ["bench", "run", "nightly.toml"],
        "benchrunner_version": "0.1.0", "notes": [],
        "suite": {"name": suite, "path": "suites/nightly.toml", "modes": list(MODES), "clip_lengths_s": list(CLIPS),
                  "variants": {"default": {}}, "pipeline": "benchrunner.pipelines.reference:build",
                  "repeats": repeats, "warmup": 1, "device": "cuda",
                  "as_loaded": {"name": suite, "budgets": {"p50_latency_ms": 9000, "peak_memory_gb": 60,
                                                           "failure_rate": 0.0}}},
        "environment": {
            "format_version": 1, "captured_at": STARTED, "gpu_source": "nvml",
            "host": {"hostname": "gpu-node-3", "os": "Linux", "kernel": "6.1.0", "machine": "x86_64"},
            "python": {"version": "3.11.7"}, "torch": {"version": "2.2.0", "cuda": "12.3"},
            "cpu": {"model": "AMD EPYC 7763 64-Core Processor", "governor": "performance"},
            "gpus": [{"index": i, "name": "NVIDIA A100-SXM4-80GB", "memory_total_bytes": 80 * 2**30,
                      "driver_version": "545.23.08"} for i in range(2)],
            "git": {"commit": "4f3b6a5ae6aea9a23622edd110139db87f3a5d5c", "dirty": False},
        },
        "warnings": [],
    }


def make_synthetic_run(out_dir: Path, *, suite: str = "synthetic", repeats: int = 25, run_id: str = RUN_ID,
                       seed: int = 0, clips: tuple[float, ...] = CLIPS, failures: bool = True,
                       slowdown: float = 1.0, memory_scale: float = 1.0, budgets: dict | None = None) -> Path:
    """Write the run folder out_dir/run_id and return its path. ``failures=False`` gives a run
    where every repeat succeeds (a night without failures); ``slowdown`` scales every latency
    (a night that got slower)."""
    files = RunFiles(Path(out_dir) / run_id)
    files.dir.mkdir(parents=True, exist_ok=False)
    rng = np.random.default_rng(seed)
    for clip_s in clips:
        for label in MODES:
            base = _case_base(run_id, suite, label, clip_s)
            rows = [row for r in range(repeats) for row in _repeat_rows(base, r, rng, failures)]
            for row in rows:
                if row["latency_ms"] is not None:
                    row["latency_ms"] *= slowdown
                if row.get("peak_mem_bytes") is not None:
                    row["peak_mem_bytes"] *= memory_scale
            files.append_case(rows, _timeline(base, rng))
    summary = summarise(read_samples(files.dir))
    files.write_summary(summary)
    manifest = _manifest(run_id, suite, repeats)
    manifest["suite"]["clip_lengths_s"] = list(clips)
    if budgets is not None:
        manifest["suite"]["as_loaded"]["budgets"] = budgets
    manifest["warnings"] = [w.__dict__ for w in run_warnings(summary)]
    files.write_manifest(manifest)
    return files.dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--suite", default="synthetic")
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args(argv)
    print(make_synthetic_run(args.out_dir, suite=args.suite, repeats=args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
