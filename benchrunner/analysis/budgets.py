"""bench check: the suite's budgets against a run's summary.csv (pure apart from load).

Each budget is checked on the end-to-end rows of the cases it names (all cases, or one
clip length and/or one mode). The measured value is the worst of those cases (the largest,
or the smallest for throughput, which is a minimum). A case whose value is blank (a
percentile the sample size cannot support, memory not measured, every repeat failed)
cannot show that the budget holds, so it fails the check, with the fix in the detail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..store.results import TOTAL_STAGE
from ..suite import parse_budgets

GIB = 2.0**30

# budget metric -> (summary.csv column, scale to the budget's unit, the limit is a minimum)
_METRICS = {
    "p50_latency_ms": ("latency_p50_ms", 1.0, False),
    "p90_latency_ms": ("latency_p90_ms", 1.0, False),
    "p99_latency_ms": ("latency_p99_ms", 1.0, False),
    "peak_memory_gb": ("peak_mem_bytes", 1.0 / GIB, False),
    "throughput_clips_per_s": ("throughput_clips_per_s", 1.0, True),
    "failure_rate": ("failure_rate", 1.0, False),
}
_MIN_SAMPLES = {"p90_latency_ms": 10, "p99_latency_ms": 100}  # stats.min_samples_for(0.9 / 0.99)


@dataclass(frozen=True)
class BudgetResult:
    metric: str
    limit: float
    clip_s: float | None
    mode: str | None
    measured: float | None   # worst over the cases checked, in the budget's unit
    passed: bool
    detail: str
    scenario: str = "latency"  # which rows were checked: latency (summary.csv) or throughput (throughput.csv)

    @property
    def is_minimum(self) -> bool:
        return _METRICS[self.metric][2]


def budgets_from_manifest(manifest: dict) -> list:
    """The suite's budgets (suite.Budget) as the run loaded them, parsed by suite.py's rules."""
    raw = ((manifest.get("suite") or {}).get("as_loaded")) or {}
    source = str((manifest.get("suite") or {}).get("path") or "manifest.json")
    return parse_budgets(raw, source)


def check_budgets(summary: pd.DataFrame, budgets: list, throughput: pd.DataFrame | None = None) -> list[BudgetResult]:
    """One BudgetResult per budget (any object with metric, limit, clip_s, mode), plus one per
    throughput-scenario budget (THROUGHPUT_METRICS) when ``throughput`` (throughput.csv) has
    rows; a run of the throughput scenario alone checks those on throughput.csv only."""
    totals = summary[summary["stage"] == TOTAL_STAGE] if not summary.empty else summary
    has_throughput = throughput is not None and not throughput.empty
    results = []
    for budget in budgets:
        if not (has_throughput and budget.metric in THROUGHPUT_METRICS and totals.empty):
            results.append(_check_one(totals, budget))
        if has_throughput and budget.metric in THROUGHPUT_METRICS:
            results.append(_check_throughput(throughput, budget))
    return results


def check_run(ref: str | Path | None, results_dir: Path = Path("results")) -> tuple[Path, list[BudgetResult]]:
    """Resolve a run, read its manifest and summary.csv, check its budgets."""
    from ..store.results import read_summary
    from ..store.runs import read_manifest, resolve_run

    from ..store.throughput import read_throughput

    path = resolve_run(ref, results_dir)
    if not (path / "summary.csv").is_file():
        raise UserError(f"{path / 'summary.csv'}: summary: file not found (expected a finished or interrupted run)")
    return path, check_budgets(read_summary(path), budgets_from_manifest(read_manifest(path)), read_throughput(path))


def _check_one(totals: pd.DataFrame, budget: Any) -> BudgetResult:
    column, scale, is_minimum = _METRICS[budget.metric]
    cases = _cases_for(totals, budget) if not totals.empty else totals
    scope = _scope(budget)
    if cases.empty:
        return _result(budget, None, False, f"no measured case matches ({scope}): nothing shows the budget holds")
    values = pd.to_numeric(cases[column], errors="coerce") * scale
    blank = cases.loc[values.isna(), "case_id"].astype(str).tolist()
    if blank:
        return _result(budget, None, False, _blank_detail(budget.metric, blank, cases))
    worst_at = values.idxmin() if is_minimum else values.idxmax()
    measured = float(values[worst_at])
    passed = measured >= budget.limit if is_minimum else measured <= budget.limit
    sign = (">=" if passed else "<") if is_minimum else ("<=" if passed else ">")
    detail = (f"worst {cases.loc[worst_at, 'case_id']}: {_fmt(measured)} {sign} {_fmt(budget.limit)} "
              f"({len(cases)} case(s), {scope})")
    return _result(budget, measured, passed, detail)


def _cases_for(totals: pd.DataFrame, budget: Any) -> pd.DataFrame:
    cases = totals
    if budget.clip_s is not None:
        cases = cases[[math.isclose(float(c), float(budget.clip_s)) for c in cases["clip_s"]]]
    if budget.mode is not None:
        cases = cases[[_mode_matches(m, t, budget.mode) for m, t in zip(cases["mode"], cases["threshold_s"])]]
    return cases


def _mode_matches(kind: str, threshold_s: Any, wanted: str) -> bool:
    """"hybrid" matches every hybrid@T; "hybrid@32" only that threshold."""
    if "@" not in wanted:
        return kind == wanted
    label = f"{kind}@{float(threshold_s):g}" if kind == "hybrid" and pd.notna(threshold_s) else kind
    want_kind, _, want_t = wanted.partition("@")
    try:
        return label == f"{want_kind}@{float(want_t):g}"
    except ValueError:
        return False


def _blank_detail(metric: str, blank: list[str], cases: pd.DataFrame) -> str:
    shown = ", ".join(blank[:3]) + (f" and {len(blank) - 3} more" if len(blank) > 3 else "")
    if metric in _MIN_SAMPLES:
        n_min = int(pd.to_numeric(cases["n"], errors="coerce").min())
        need = _MIN_SAMPLES[metric]
        return (f"not measured for {shown}: {metric.split('_')[0]} needs >= {need} successful repeats, "
                f"smallest case has {n_min} (fix: repeats = {need})")
    if metric == "peak_memory_gb":
        return f"not measured for {shown}: no memory reading (fix: check mem_source in samples.csv)"
    return f"not measured for {shown}: no successful repeat (see bench compare --metric failure)"


def _scope(budget: Any) -> str:
    clip = "all clip lengths" if budget.clip_s is None else f"{float(budget.clip_s):g} s clips"
    mode = "all modes" if budget.mode is None else f"mode {budget.mode}"
    return f"{clip}, {mode}"


def _result(budget: Any, measured: float | None, passed: bool, detail: str, scenario: str = "latency") -> BudgetResult:
    clip_s = None if budget.clip_s is None else float(budget.clip_s)
    return BudgetResult(budget.metric, float(budget.limit), clip_s, budget.mode, measured, passed, detail, scenario)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# -- the throughput scenario (throughput.csv) ----------------------------------------------

THROUGHPUT_METRICS = ("throughput_clips_per_s", "p99_latency_ms")


def _check_throughput(frame: pd.DataFrame, budget: Any) -> BudgetResult:
    """A budget against the latency-throughput curves (one per variant, mode and clip length).

    Per curve the level that counts is its knee (the most clips/s whose p99, or p90, stays
    within the knee budget, marked in throughput.csv): ``throughput_clips_per_s`` is the knee's
    clips/s (without a knee budget: the most clips/s of a level without failures), and
    ``p99_latency_ms`` the knee's p99. The worst curve is reported; a curve with no knee, or a
    knee measured on p90 because the levels had too few clips for a p99, fails with its fix.
    """
    from .throughput.curves import curves

    scope = _scope(budget)
    found = [(key, levels) for key, levels in curves(frame) if _curve_matches(levels.iloc[0], budget)]
    if not found:
        return _result(budget, None, False, f"throughput: no level matches ({scope})", "throughput")
    values, problems = [], []
    for _, levels in found:
        value, problem = _curve_value(levels, budget.metric)
        name = _curve_name(levels.iloc[0])
        if problem:
            problems.append(f"{name}: {problem}")
        else:
            values.append((value, name))
    if problems:
        return _result(budget, None, False, "throughput: " + "; ".join(problems[:3]), "throughput")
    is_minimum = _METRICS[budget.metric][2]
    measured, worst = (min if is_minimum else max)(values)
    passed = measured >= budget.limit if is_minimum else measured <= budget.limit
    sign = (">=" if passed else "<") if is_minimum else ("<=" if passed else ">")
    return _result(budget, measured, passed, f"throughput: worst {worst}: {_fmt(measured)} {sign} "
                                             f"{_fmt(budget.limit)} ({len(values)} curve(s), {scope})", "throughput")


def _curve_value(levels: pd.DataFrame, metric: str) -> tuple[float | None, str]:
    knee = levels[levels["knee"].astype(str) == "yes"]
    budgeted = levels["knee_budget_ms"].notna().any()
    if metric == "throughput_clips_per_s" and not budgeted:
        usable = levels[levels["status"].isin(("ok", "unstable")) & (levels["failures"].fillna(0) == 0)]
        values = pd.to_numeric(usable["throughput_clips_per_s"], errors="coerce").dropna()
        return (float(values.max()), "") if len(values) else (None, "no level without failures")
    if knee.empty:
        if not budgeted:
            return None, "no knee: set throughput.knee_latency_ms (or a p99_latency_ms budget)"
        budget_ms = float(levels["knee_budget_ms"].dropna().iloc[0])
        return None, f"no level keeps its tail latency within {budget_ms:g} ms without failures"
    row = knee.iloc[0]
    if metric == "throughput_clips_per_s":
        return float(row["throughput_clips_per_s"]), ""
    if pd.isna(row["latency_p99_ms"]):
        return None, (f"p99 needs >= 100 clips per level, the knee (concurrency {int(row['concurrency'])}) has "
                      f"{int(row['clips'])} (fix: longer windows, throughput.window_s)")
    return float(row["latency_p99_ms"]), ""


def _curve_matches(row: pd.Series, budget: Any) -> bool:
    if budget.clip_s is not None and not math.isclose(float(row["clip_s"]), float(budget.clip_s)):
        return False
    return budget.mode is None or _mode_matches(row["mode"], row["threshold_s"], budget.mode)


def _curve_name(row: pd.Series) -> str:
    mode = f"hybrid@{float(row['threshold_s']):g}" if row["mode"] == "hybrid" else str(row["mode"])
    return f"{row['variant']}/{mode}/{float(row['clip_s']):g}s"
