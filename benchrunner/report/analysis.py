"""The report's calls into budgets, compare and tuning, each degrading to a visible note.

A report never re-measures: these read the run's samples and summary only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import BenchError
from . import fmt
from .model import RunView

DEFAULT_MIN_SNR_DB = 30.0


@dataclass(frozen=True)
class Outcome:
    """What an analysis gave, or why it could not run (note)."""

    title: str
    value: Any = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.value is not None


def _missing(module: str, exc: ImportError) -> str:
    return f"not available: benchrunner.{module} could not be imported ({exc})"


@dataclass(frozen=True)
class RecordedBudget:
    """A budget as the manifest recorded it (check_budgets takes any object of this shape)."""

    metric: str
    limit: float
    clip_s: float | None = None
    mode: str | None = None


def recorded_budgets(manifest: dict) -> list[RecordedBudget]:
    """The budgets of the suite as loaded, already validated by suite.py when the run started
    (budgets_from_manifest re-validates them but imports suite.py, and with it torch: seconds
    that a report does not need)."""
    raw = ((manifest.get("suite") or {}).get("as_loaded") or {}).get("budgets") or {}
    found = []
    for metric, value in raw.items():
        spec = value if isinstance(value, dict) else {"limit": value}
        found.append(RecordedBudget(metric, float(spec["limit"]), spec.get("clip_s"), spec.get("mode")))
    return found


def budget_outcome(view: RunView) -> Outcome:
    try:
        from ..analysis.budgets import check_budgets
    except ImportError as exc:
        return Outcome("budgets", note=_missing("analysis.budgets", exc))
    try:
        return Outcome("budgets", value=list(check_budgets(view.summary, recorded_budgets(view.manifest))))
    except (BenchError, KeyError, TypeError, ValueError) as exc:
        return Outcome("budgets", note=f"not available: {exc}")


def memory_budget_bytes(budgets: Outcome) -> float | None:
    """The run-wide peak_memory_gb budget (GiB, as budgets.py reads it) in bytes, if any."""
    for b in budgets.value or []:
        if b.metric == "peak_memory_gb" and b.clip_s is None and b.mode is None:
            return b.limit * fmt.GIB
    return None


def _mode_samples(view: RunView, label: str) -> pd.DataFrame:
    s = view.samples
    labels = [fmt.mode_label(m, t) for m, t in zip(s["mode"], s["threshold_s"])]
    return s[[x == label for x in labels]]


def _compare(title: str, call) -> Outcome:
    try:
        from ..analysis import compare
    except ImportError as exc:
        return Outcome(title, note=_missing("analysis.compare", exc))
    try:
        return Outcome(title, value=call(compare))
    except BenchError as exc:
        return Outcome(title, note=f"not available: {exc}")


def comparison_outcomes(view: RunView, base: RunView | None) -> list[Outcome]:
    """Run against baseline when one is given; otherwise every mode against the first
    mode of the run (single, when the suite has it)."""
    if base is not None:
        return [_compare(f"{view.run_id} vs {base.run_id}",
                         lambda c: c.compare_runs(str(base.run_dir), str(view.run_dir)))]
    modes = list(dict.fromkeys(fmt.mode_label(m, t) for m, t in zip(view.totals["mode"], view.totals["threshold_s"])))
    if len(modes) < 2:
        return []
    ref = "single" if "single" in modes else modes[0]
    a = _mode_samples(view, ref)
    return [_compare(f"{m} vs {ref}", lambda c, m=m: c.compare_frames(a, _mode_samples(view, m), a_label=ref,
                                                                      b_label=m))
            for m in modes if m != ref]


def sweep_outcome(view: RunView, memory_budget: float | None) -> Outcome | None:
    """The threshold sweep, when the run measured hybrid at two thresholds or more."""
    hybrid = view.totals[view.totals["mode"] == "hybrid"]
    if pd.to_numeric(hybrid["threshold_s"], errors="coerce").dropna().nunique() < 2:
        return None
    criteria = {"memory_budget_bytes": memory_budget, "min_snr_db": DEFAULT_MIN_SNR_DB}
    try:
        from ..analysis.tuning import tune_threshold
    except ImportError as exc:
        return Outcome("threshold sweep", note=_missing("analysis.tuning", exc), extra=criteria)
    try:
        result = tune_threshold(view.samples, view.summary, **criteria, gpu_memory_gb=_gpu_memory_gb(view.manifest))
    except BenchError as exc:
        return Outcome("threshold sweep", note=f"not available: {exc}", extra=criteria)
    return Outcome("threshold sweep", value=result, extra=criteria)


def _gpu_memory_gb(manifest: dict) -> float | None:
    gpus = (manifest.get("environment") or {}).get("gpus") or []
    total = fmt.number(gpus[0].get("memory_total_bytes")) if gpus else None
    return None if total is None else total / fmt.GIB
