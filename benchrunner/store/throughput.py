"""The on-disk schema of the throughput scenario: one writer and one reader per file.

results/<run_id>/
  throughput.csv          one row per variant x mode x clip length x concurrency level x row kind:
                          ``total`` (the level end to end), one per stage, one per cross-device
                          transfer
  throughput_samples.csv  raw: one row per measured clip (its window, status, latency), so any
                          figure of throughput.csv can be recomputed

Same conventions as results.py (blank = not measured, units in the names); no torch here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .results import _append_durably, _csv_text, _drop_torn_tail, _rewrite

THROUGHPUT_SCHEMA_VERSION = 1
THROUGHPUT_FILE = "throughput.csv"
THROUGHPUT_SAMPLES_FILE = "throughput_samples.csv"
KIND_TOTAL, KIND_STAGE, KIND_TRANSFER = "total", "stage", "transfer"
ROW_KINDS = (KIND_TOTAL, KIND_STAGE, KIND_TRANSFER)
# a level's status: ok, or unstable (measured, but the last windows did not agree), or the
# failure that ended it (oom/error: every clip failed; crash/timeout: the worker was lost)
LEVEL_STATUSES = ("ok", "unstable", "oom", "error", "crash", "timeout")

THROUGHPUT_COLUMNS = [
    "schema_version", "run_id", "suite", "pipeline", "variant", "mode", "threshold_s", "clip_s", "concurrency",
    "kind", "stage", "device", "status", "error",
    # the measurement (total rows)
    "windows", "stable", "stability_pct", "window_s", "window_clips", "measured_s", "clips", "failures",
    "n_oom", "n_error", "throughput_clips_per_s", "window_clips_per_s",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_max_ms",
    "entry_wait_mean_ms", "peak_mem_bytes", "peak_mem_growth_bytes", "mem_source", "cpu_util_pct", "bottleneck",
    "knee", "knee_quantile", "knee_budget_ms",
    # per stage (stage rows; total rows: the sum over stages) and per transfer
    "calls", "busy_ms", "busy_mean_ms", "utilisation_pct", "queue_wait_mean_ms", "queue_wait_max_ms",
    "blocked_mean_ms", "transfer_bytes_mean",
    "queue_depth", "timer_source", "started_at",
]
THROUGHPUT_DTYPES = {
    "schema_version": "Int64", "concurrency": "Int64", "windows": "Int64", "window_clips": "Int64",
    "clips": "Int64", "failures": "Int64", "n_oom": "Int64", "n_error": "Int64", "calls": "Int64",
    "queue_depth": "Int64",
    **{c: "float64" for c in (
        "threshold_s", "clip_s", "stability_pct", "window_s", "measured_s", "throughput_clips_per_s",
        "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_max_ms",
        "entry_wait_mean_ms", "peak_mem_bytes", "peak_mem_growth_bytes", "cpu_util_pct", "knee_budget_ms", "busy_ms", "busy_mean_ms",
        "utilisation_pct", "queue_wait_mean_ms", "queue_wait_max_ms", "blocked_mean_ms",
        "transfer_bytes_mean")},
}
THROUGHPUT_SAMPLE_COLUMNS = [
    "run_id", "variant", "mode", "threshold_s", "clip_s", "concurrency", "window", "clip", "status", "error",
    "executed_as", "latency_ms", "entry_wait_ms", "done_at_ms", "chunks", "retries", "input",
]
THROUGHPUT_SAMPLE_DTYPES = {
    "threshold_s": "float64", "clip_s": "float64", "concurrency": "Int64", "window": "Int64", "clip": "Int64",
    "latency_ms": "float64", "entry_wait_ms": "float64", "done_at_ms": "float64", "chunks": "Int64",
    "retries": "Int64",
}
# what identifies one level of the sweep (the resume key, the compare key)
LEVEL_KEY = ["pipeline", "variant", "mode", "threshold_s", "clip_s", "concurrency"]


def append_level(run_dir: Path, rows: Iterable[Mapping[str, Any]], samples: Iterable[Mapping[str, Any]]) -> None:
    """All rows of one level, written at once (raw samples first: a level counts as done
    when its throughput.csv rows exist)."""
    run_dir = Path(run_dir)
    samples = list(samples)
    if samples:
        _append_durably(run_dir / THROUGHPUT_SAMPLES_FILE, _csv_text(samples, THROUGHPUT_SAMPLE_COLUMNS),
                        THROUGHPUT_SAMPLE_COLUMNS)
    _append_durably(run_dir / THROUGHPUT_FILE, _csv_text(list(rows), THROUGHPUT_COLUMNS), THROUGHPUT_COLUMNS)


def rewrite_throughput(run_dir: Path, frame: pd.DataFrame) -> None:
    """Replace throughput.csv (used once a sweep ends, to mark the knee on its rows)."""
    path = Path(run_dir) / THROUGHPUT_FILE
    text = ",".join(THROUGHPUT_COLUMNS) + "\n" + _csv_text(frame.to_dict("records"), THROUGHPUT_COLUMNS)
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read(path: Path, columns: list[str], dtypes: dict[str, str]) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "object")) for c in columns})
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={c: [""] for c in dtypes})


def read_throughput(run_dir: Path) -> pd.DataFrame:
    """throughput.csv with typed columns; an empty frame when the run has none."""
    return _read(Path(run_dir) / THROUGHPUT_FILE, THROUGHPUT_COLUMNS, THROUGHPUT_DTYPES)


def read_throughput_samples(run_dir: Path) -> pd.DataFrame:
    return _read(Path(run_dir) / THROUGHPUT_SAMPLES_FILE, THROUGHPUT_SAMPLE_COLUMNS, THROUGHPUT_SAMPLE_DTYPES)


def has_throughput(run_dir: Path) -> bool:
    path = Path(run_dir) / THROUGHPUT_FILE
    return path.exists() and path.stat().st_size > 0


def level_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``total`` rows (one per level), in concurrency order within each curve."""
    if frame.empty:
        return frame
    totals = frame[frame["kind"] == KIND_TOTAL]
    return totals.sort_values(["variant", "mode", "threshold_s", "clip_s", "concurrency"], kind="stable",
                              na_position="first")


def curve_label(variant: Any, mode: Any, threshold_s: Any, clip_s: Any, variants: int = 1) -> str:
    """``hybrid@32 · 5 s`` (prefixed by the variant when a run has several): one curve."""
    label = f"{mode}@{float(threshold_s):g}" if mode == "hybrid" and pd.notna(threshold_s) else str(mode)
    text = f"{label} · {float(clip_s):g} s"
    return text if variants <= 1 else f"{variant} · {text}"


def repair_throughput(run_dir: Path) -> list[str]:
    """Before resuming: drop torn last lines, and the raw samples of a level whose rows were
    never written (the run stopped between the two appends), so that level runs again cleanly."""
    run_dir = Path(run_dir)
    notes = [n for n in (_drop_torn_tail(run_dir / THROUGHPUT_FILE, len(THROUGHPUT_COLUMNS)),
                         _drop_torn_tail(run_dir / THROUGHPUT_SAMPLES_FILE, len(THROUGHPUT_SAMPLE_COLUMNS))) if n]
    samples = read_throughput_samples(run_dir)
    if samples.empty:
        return notes
    totals = read_throughput(run_dir)
    totals = totals[totals["kind"] == KIND_TOTAL]
    key = ["variant", "mode", "threshold_s", "clip_s", "concurrency"]
    done = {tuple(_plain(v) for v in row) for row in totals[key].itertuples(index=False)}
    keep = [tuple(_plain(v) for v in row) in done for row in samples[key].itertuples(index=False)]
    if all(keep):
        return notes
    kept = samples[keep]
    _rewrite(run_dir / THROUGHPUT_SAMPLES_FILE, ",".join(THROUGHPUT_SAMPLE_COLUMNS) + "\n" +
             _csv_text(kept.to_dict("records"), THROUGHPUT_SAMPLE_COLUMNS))
    notes.append(f"{THROUGHPUT_SAMPLES_FILE}: dropped {len(samples) - len(kept)} rows of a level cut short; it runs again")
    return notes


def _plain(value: Any) -> Any:
    """A key cell as a plain value: numbers as float, blanks (NaN, NA) as None."""
    if value is None or value is pd.NA or isinstance(value, str):
        return value if isinstance(value, str) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return None if number != number else number
