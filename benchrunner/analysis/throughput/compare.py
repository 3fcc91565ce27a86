"""``bench compare A B --metric throughput|load_latency``: two runs' (or two modes' or variants')
throughput rows, level by level, with the statistics of compare.py.

Per matched level (variant, mode, clip length, concurrency; less the dimension compared):

- ``throughput``: the clips/s of the measured windows of A and of B (window_clips_per_s), the
  ratio of their medians B/A with its percentile-bootstrap CI and Mann-Whitney p
  (stats.compare_samples): ``higher`` or ``lower`` only when the CI excludes 1 and the change
  is at least the minimum effect; lower throughput is the regression;
- ``load_latency``: the latency of every clip of the measured windows (throughput_samples.csv):
  ``faster``/``slower`` by the same rule.

The ``stage`` column holds the level (``c4``: 4 clips in flight). No torch here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import stats
from ..compare import CONF, METRICS, N_BOOT, CompareResult, CompareRow, parse_mode_selector
from ...errors import UserError
from ...store.runs import is_run_ref, read_manifest, resolve_run
from .curves import curves
from ...store.throughput import KIND_TOTAL, read_throughput, read_throughput_samples
from .windows import STABLE_WINDOWS

THROUGHPUT_METRICS = ("throughput", "load_latency")
LEVEL_COLUMNS = ["variant", "mode", "threshold_s", "clip_s", "concurrency"]


def _load(ref, results_dir: Path) -> tuple[Path, dict, pd.DataFrame, pd.DataFrame]:
    path = resolve_run(ref, results_dir)
    frame = read_throughput(path)
    if frame.empty:
        raise UserError(f"{path / 'throughput.csv'}: throughput: no rows (expected a run with "
                        f"scenario = \"throughput\")")
    return path, read_manifest(path), frame[frame["kind"] == KIND_TOTAL], read_throughput_samples(path)


def compare_throughput(a: str, b: str, *, run=None, results_dir: Path = Path("results"), metric: str = "throughput",
                       min_effect: float = 0.02, seed: int = 0) -> CompareResult:
    """B against A: two runs (ids or paths, without ``run``), or two modes or variants of ``run``
    (default: the latest run)."""
    sel_a, sel_b = parse_mode_selector(a), parse_mode_selector(b)
    if run is None and sel_a is None and sel_b is None and is_run_ref(a, results_dir) and is_run_ref(b, results_dir):
        path_a, man_a, tot_a, raw_a = _load(a, results_dir)
        path_b, man_b, tot_b, raw_b = _load(b, results_dir)
        label_a, label_b = str(man_a.get("run_id") or path_a.name), str(man_b.get("run_id") or path_b.name)
        keys = list(LEVEL_COLUMNS)
    else:
        path, manifest, totals, raw = _load(run, results_dir)
        tot_a, label_a = _side(totals, a, sel_a, path)
        tot_b, label_b = _side(totals, b, sel_b, path)
        raw_a = raw_b = raw
        keys = [c for c in LEVEL_COLUMNS if not _compared(tot_a[c], tot_b[c])]
    return compare_levels(tot_a, tot_b, raw_a, raw_b, a_label=label_a, b_label=label_b, keys=keys, metric=metric,
                          min_effect=min_effect, seed=seed)


def _side(totals: pd.DataFrame, text: str, sel, path: Path) -> tuple[pd.DataFrame, str]:
    if sel is not None:
        rows = totals if sel.variant is None else totals[totals["variant"] == sel.variant]
        rows = rows[rows["mode"] == sel.kind]
        if sel.threshold_s is not None:
            rows = rows[np.isclose(rows["threshold_s"].astype(float), sel.threshold_s)]
    else:
        rows = totals[totals["variant"] == text]
    if rows.empty:
        raise UserError(f"{path}: {text}: not a mode or variant of this run's throughput rows "
                        f"(expected one of {', '.join(sorted(set(totals['mode'].astype(str)) | set(totals['variant'].astype(str))))})")
    return rows, text


def _compared(a: pd.Series, b: pd.Series) -> bool:
    va, vb = set(_plain(v) for v in a), set(_plain(v) for v in b)
    return len(va) == 1 and len(vb) == 1 and va != vb


def _plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return float(value) if isinstance(value, (int, float, np.integer, np.floating)) else value


def _key(row: pd.Series, keys: list[str]) -> tuple:
    return tuple(_plain(row[k]) for k in keys)


def compare_levels(tot_a: pd.DataFrame, tot_b: pd.DataFrame, raw_a: pd.DataFrame, raw_b: pd.DataFrame, *,
                   a_label: str, b_label: str, keys: list[str], metric: str = "throughput",
                   min_effect: float = 0.02, seed: int = 0) -> CompareResult:
    """B against A over two sets of throughput.csv total rows (pure)."""
    if metric not in THROUGHPUT_METRICS:
        raise UserError(f"--metric: {metric!r} is not a throughput metric (expected one of "
                        f"{', '.join(THROUGHPUT_METRICS)})")
    spec = METRICS[metric]
    by_a = {_key(r, keys): r for _, r in tot_a.iterrows()}
    by_b = {_key(r, keys): r for _, r in tot_b.iterrows()}
    common = [k for k in by_a if k in by_b]
    rows, pairs = [], []
    for key in common:
        ra, rb = by_a[key], by_b[key]
        values_a, values_b = _values(ra, raw_a, metric), _values(rb, raw_b, metric)
        words = ("higher", "lower") if metric == "throughput" else spec.words
        c = stats.compare_samples(values_a, values_b, min_effect=min_effect, conf=CONF, n_boot=N_BOOT, seed=seed,
                                  higher_is_better=metric == "throughput", verdict_words=words)
        rows.append(CompareRow(float(ra["clip_s"]), f"c{int(ra['concurrency'])}", metric, c.n_a, c.n_b, c.median_a,
                               c.median_b, c.ratio, c.ci_low, c.ci_high, c.p_value, c.verdict, _fail(ra), _fail(rb),
                               _case(ra, keys)))
        if c.ratio is not None:
            pairs.append((values_a, values_b))
    geomean = stats.geometric_mean_ratio(pairs, n_boot=N_BOOT, conf=CONF, seed=seed) if pairs else None
    notes = ["per level (stage c4 = 4 clips in flight): "
             + ("clips/s of the measured windows" if metric == "throughput" else
                "latency of each clip of the measured windows, under load")
             + f"; ratio = median(B) / median(A); {CONF:.0%} CI: percentile bootstrap ({N_BOOT} resamples, seed "
               f"{seed}); verdict needs the CI to exclude 1 and a change of at least {min_effect:.0%}",
             *_knee_notes(tot_a, a_label), *_knee_notes(tot_b, b_label)]
    if metric == "throughput" and any(r.verdict != stats.INSUFFICIENT and min(r.n_a, r.n_b) < 5 for r in rows):
        notes.append("few windows per level (3 by the stability rule): the bootstrap interval of 3 values is coarse "
                     "and Mann-Whitney's p cannot go below 0.1 with 3 against 3; confirm a change with "
                     "--metric load_latency (every clip) or more windows (throughput.window_clips)")
    if any(r.verdict == stats.INSUFFICIENT for r in rows):
        notes.append("insufficient data (< 2 windows or clips on a side) on some levels: a level lost to a crash "
                     "or timeout has none")
    only_a = [_level_id(by_a[k], keys) for k in by_a if k not in by_b]
    only_b = [_level_id(by_b[k], keys) for k in by_b if k not in by_a]
    return CompareResult(a_label, b_label, metric, spec.unit, rows, geomean, only_a, only_b, [], notes, min_effect)


def _values(row: pd.Series, raw: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "throughput":
        text = row["window_clips_per_s"]
        if not isinstance(text, str) or not text:
            return np.array([])
        return np.array([float(v) for v in text.split(";") if v])
    if raw.empty or pd.isna(row["windows"]):
        return np.array([])
    picked = raw[(raw["variant"] == row["variant"]) & (raw["mode"] == row["mode"])
                 & np.isclose(raw["clip_s"].astype(float), float(row["clip_s"]))
                 & (raw["concurrency"] == row["concurrency"]) & (raw["status"] == "ok")
                 & (raw["window"] >= int(row["windows"]) - STABLE_WINDOWS)]
    if pd.notna(row["threshold_s"]):
        picked = picked[np.isclose(picked["threshold_s"].astype(float), float(row["threshold_s"]))]
    return picked["latency_ms"].dropna().to_numpy(dtype=float)


def _fail(row: pd.Series) -> str:
    failures = int(row["failures"]) if pd.notna(row["failures"]) else 0
    clips = int(row["clips"]) if pd.notna(row["clips"]) else 0
    return f"{failures}/{failures + clips}" if row["status"] in ("ok", "unstable") else str(row["status"])


def _mode(row: pd.Series) -> str:
    return f"hybrid@{float(row['threshold_s']):g}" if row["mode"] == "hybrid" else str(row["mode"])


def _case(row: pd.Series, keys: list[str]) -> str:
    parts = []
    if "variant" in keys:
        parts.append(str(row["variant"]))
    if "mode" in keys:
        parts.append(_mode(row))
    return "/".join(parts)


def _level_id(row: pd.Series, keys: list[str]) -> str:
    return f"{row['variant']}/{_mode(row)}/{float(row['clip_s']):g}s@c{int(row['concurrency'])}"


def _knee_notes(totals: pd.DataFrame, label: str) -> list[str]:
    notes = []
    for _, levels in curves(totals.assign(kind=KIND_TOTAL)):
        knee = levels[levels["knee"].astype(str) == "yes"]
        first = levels.iloc[0]
        name = f"{first['variant']}/{_mode(first)}/{float(first['clip_s']):g}s"
        if knee.empty:
            if levels["knee_budget_ms"].notna().any():
                notes.append(f"{label}: {name}: no knee within {float(levels['knee_budget_ms'].dropna().iloc[0]):g} ms")
            continue
        k = knee.iloc[0]
        notes.append(f"{label}: {name}: knee at concurrency {int(k['concurrency'])}, "
                     f"{float(k['throughput_clips_per_s']):.4g} clips/s ({k['knee_quantile']} within "
                     f"{float(k['knee_budget_ms']):g} ms)")
    return notes
