"""Where profiles live and what is written there; never samples.csv or summary.csv.

A profile of one case is a folder ``<base>/<case>/`` with ``trace.json.gz`` (Chrome /
Perfetto trace of the active steps), ``top_ops.csv`` (every op or kernel per region, per
repeat) and ``summary.json`` (busy/idle per region, largest gaps, top ops). ``<base>`` is
``<run_dir>/profiles`` when a run is given, else ``--out`` (default
``reports/profiles/<timestamp>``). ``--compare`` adds ``<base>/compare.json``.

Profiling overhead is large, so nothing here touches the run's benchmark files.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError
from .analysis import BUSY_MEANING, Analysis

FORMAT_VERSION = 1
PROFILES_DIR = "profiles"
TRACE_FILE = "trace.json.gz"
TOP_OPS_FILE = "top_ops.csv"
SUMMARY_FILE = "summary.json"
COMPARE_FILE = "compare.json"
TOP_OPS_COLUMNS = ["stage", "kind", "op", "self_time_ms", "calls", "share"]
SUMMARY_TOP = 5
OVERHEAD_NOTE = ("profiled times include the profiler's overhead (record_shapes, profile_memory): use them to see "
                 "where time goes, and samples.csv from bench run for latency")


def resolve_base_dir(run_dir: Path | None, out_dir: Path | None, now: datetime | None = None) -> Path:
    """``<run_dir>/profiles``, or ``out_dir``, or ``reports/profiles/<timestamp>``."""
    if run_dir is not None and out_dir is not None:
        raise UserError("--run and --out: give one (--run stores into RUN_DIR/profiles)")
    if run_dir is not None:
        if not (run_dir / "manifest.json").is_file() and not (run_dir / "samples.csv").is_file():
            raise UserError(f"--run: {str(run_dir)!r} is not a run folder "
                            "(expected results/<run_id>/ with manifest.json or samples.csv)")
        return run_dir / PROFILES_DIR
    if out_dir is not None:
        return out_dir
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    return Path("reports") / PROFILES_DIR / stamp


def case_dir(base: Path, case: Any) -> Path:
    """``chunked-30s``, ``hybrid-20-30s``; the variant is prefixed unless it is ``default``."""
    name = f"{case.mode.label}-{case.clip_s:g}s"
    if case.variant != "default":
        name = f"{case.variant}-{name}"
    return base / re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def write_profile(out_dir: Path, case: Any, analysis: Analysis, schedule: dict, stages: list[str]) -> dict:
    """Write ``top_ops.csv`` and ``summary.json`` next to the trace; returns the summary."""
    _write_top_ops(out_dir / TOP_OPS_FILE, analysis)
    summary = build_summary(case, analysis, schedule, stages)
    _write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def build_summary(case: Any, analysis: Analysis, schedule: dict, stages: list[str]) -> dict:
    return {
        "format_version": FORMAT_VERSION, "case_id": case.case_id, "suite": case.suite, "pipeline": case.pipeline,
        "variant": case.variant, "mode": case.mode.label, "clip_s": case.clip_s, "device": case.device,
        "activity": analysis.activity, "busy_meaning": BUSY_MEANING[analysis.activity], "per": "repeat",
        "schedule": schedule, "repeats_profiled": analysis.repeats, "stages": stages,
        "window_ms": analysis.window_ms, "busy_ms": analysis.busy_ms, "idle_ms": analysis.idle_ms,
        "busy_pct": analysis.busy_pct, "min_gap_ms": analysis.min_gap_ms,
        "regions": [asdict(r) for r in analysis.regions],
        "largest_gaps": [asdict(g) for g in analysis.gaps],
        "top_ops": top_ops_by_region(analysis, SUMMARY_TOP),
        "files": {"trace": TRACE_FILE, "top_ops": TOP_OPS_FILE},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "note": OVERHEAD_NOTE,
    }


def device_op_kind(activity: str) -> str:
    """Kernels on CUDA, torch operators on the CPU."""
    return "kernel" if activity == "cuda" else "cpu_op"


def top_ops_by_region(analysis: Analysis, limit: int) -> dict[str, list[dict]]:
    kind = device_op_kind(analysis.activity)
    out: dict[str, list[dict]] = {}
    for region in analysis.regions:
        rows = [op for op in analysis.ops if op.region == region.region and op.kind == kind]
        out[region.region] = [{"op": op.op, "self_time_ms": op.self_time_ms, "calls": op.calls, "share": op.share}
                              for op in rows[:limit]]
    return out


def write_comparison(base: Path, comparison: dict) -> Path:
    path = base / COMPARE_FILE
    _write_json(path, {"format_version": FORMAT_VERSION, **comparison})
    return path


def load_profile_summary(run_dir: str | Path) -> dict | None:
    """The profiles stored in a run folder, for reports: ``{"profiles": [summary.json
    contents + "dir"], "comparisons": [compare.json]}``, or None when the run has none."""
    base = Path(run_dir) / PROFILES_DIR
    profiles = [dict(_read_json(p), dir=str(p.parent)) for p in sorted(base.glob(f"*/{SUMMARY_FILE}"))]
    if not profiles:
        return None
    compare = base / COMPARE_FILE
    return {"profiles": profiles, "comparisons": [_read_json(compare)] if compare.is_file() else []}


def _write_top_ops(path: Path, analysis: Analysis) -> None:
    rows: Iterable[dict] = ({"stage": op.region, "kind": op.kind, "op": op.op,
                             "self_time_ms": round(op.self_time_ms, 6), "calls": round(op.calls, 3),
                             "share": round(op.share, 6)} for op in analysis.ops)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TOP_OPS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
