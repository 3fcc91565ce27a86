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

    @property
    def is_minimum(self) -> bool:
        return _METRICS[self.metric][2]


def budgets_from_manifest(manifest: dict) -> list:
    """The suite's budgets (suite.Budget) as the run loaded them, parsed by suite.py's rules."""
    raw = ((manifest.get("suite") or {}).get("as_loaded")) or {}
    source = str((manifest.get("suite") or {}).get("path") or "manifest.json")
    return parse_budgets(raw, source)


def check_budgets(summary: pd.DataFrame, budgets: list) -> list[BudgetResult]:
    """One BudgetResult per budget (any object with metric, limit, clip_s, mode)."""
    totals = summary[summary["stage"] == TOTAL_STAGE] if not summary.empty else summary
    return [_check_one(totals, budget) for budget in budgets]


def check_run(ref: str | Path | None, results_dir: Path = Path("results")) -> tuple[Path, list[BudgetResult]]:
    """Resolve a run, read its manifest and summary.csv, check its budgets."""
    from ..store.results import read_summary
    from ..store.runs import read_manifest, resolve_run

    path = resolve_run(ref, results_dir)
    if not (path / "summary.csv").is_file():
        raise UserError(f"{path / 'summary.csv'}: summary: file not found (expected a finished or interrupted run)")
    return path, check_budgets(read_summary(path), budgets_from_manifest(read_manifest(path)))


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


def _result(budget: Any, measured: float | None, passed: bool, detail: str) -> BudgetResult:
    clip_s = None if budget.clip_s is None else float(budget.clip_s)
    return BudgetResult(budget.metric, float(budget.limit), clip_s, budget.mode, measured, passed, detail)


def _fmt(value: float) -> str:
    return f"{value:.4g}"
