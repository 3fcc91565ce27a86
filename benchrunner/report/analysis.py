"""The report's calls into budgets, compare and tuning, each degrading to a visible note.

A report never re-measures: these read the run's samples and summary only.
"""

from __future__ import annotations

import dataclasses
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
        from ..store.throughput import read_throughput

        return Outcome("budgets", value=list(check_budgets(view.summary, recorded_budgets(view.manifest),
                                                           read_throughput(view.run_dir))))
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


RUN_METRICS = ("latency", "memory", "failure")  # run against run: every one the compare layer offers but util


def mode_pairs(view: RunView) -> list[tuple[str, str]]:
    """(A, B) pairs of one run's modes, in reading order: every hybrid@T against chunked first,
    then every mode against single (the reference the team starts from)."""
    modes = mode_labels(view)
    kinds = {m: m.split("@")[0] for m in modes}
    chunked = next((m for m in modes if kinds[m] == "chunked"), None)
    pairs = [(chunked, m) for m in modes if kinds[m] == "hybrid" and chunked is not None]
    ref = "single" if "single" in modes else (modes[0] if modes else None)
    pairs += [(ref, m) for m in modes if m != ref and (ref, m) not in pairs]
    return [(a, b) for a, b in pairs if a is not None and a != b]


def mode_labels(view: RunView) -> list[str]:
    return list(dict.fromkeys(fmt.mode_label(m, t) for m, t in zip(view.totals["mode"], view.totals["threshold_s"])))


def mode_outcomes(view: RunView) -> list[Outcome]:
    """Latency of each pair of modes of this run (mode_pairs), B against A, per clip length."""
    return [_compare(f"{b} vs {a}", lambda c, a=a, b=b: c.compare_frames(_mode_samples(view, a), _mode_samples(view, b),
                                                                          a_label=a, b_label=b))
            for a, b in mode_pairs(view)]


def run_outcomes(view: RunView, base: RunView | None, noise: dict[str, dict | None] | None = None
                 ) -> list[Outcome]:
    """This run (B) against the baseline run (A), cases matched by their full key: latency,
    peak memory and failures. ``noise`` (metric -> each case's night-to-night noise from the
    history store) sets a case's minimum effect as ``bench nightly`` does, and the notes say
    which cases are within it."""
    if base is None:
        return []
    noise = noise or {}

    def one(c, metric: str):
        result = c.compare_runs(str(base.run_dir), str(view.run_dir), metric=metric, night_noise=noise.get(metric))
        return dataclasses.replace(result, notes=[*result.notes, *filter(None, [c.noise_summary(result)])])
    return [_compare(f"{metric}: {view.run_id} vs {base.run_id}", lambda c, metric=metric: one(c, metric))
            for metric in RUN_METRICS]


def comparison_outcomes(view: RunView, base: RunView | None) -> list[Outcome]:
    """Every report compares the run's modes; with a baseline run it adds run against run."""
    return [*mode_outcomes(view), *run_outcomes(view, base)]


def pair_outcome(view: RunView, a: str, b: str, clips: list[float]) -> Outcome:
    """B against A of one run at the given clip lengths only (e.g. where two thresholds differ)."""
    def only(frame):
        return frame[frame["clip_s"].astype(float).isin(clips)]
    return _compare(f"{b} vs {a}", lambda c: c.compare_frames(only(_mode_samples(view, a)), only(_mode_samples(view, b)),
                                                              a_label=a, b_label=b))


def executed_paths(view: RunView, label: str) -> dict[float, str]:
    """clip_s -> the path a mode ran there (single or chunked), from summary.csv's executed_as."""
    rows = view.totals[view.totals["label"] == label]
    return {float(c): str(e) for c, e in zip(rows["clip_s"], rows["executed_as"]) if isinstance(e, str) and e}


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
