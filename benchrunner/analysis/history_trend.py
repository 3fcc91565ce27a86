"""Trends over the history store: level changes per case in a night series (History.series),
found with benchrunner.analysis.changepoint (segmentation plus a significance test), so a slow
drift is caught and a one-night spike is not a change; and a verdict per case. Nothing here
prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..errors import UserError
from ..store.history import History, HistoryMetric, metric_spec
from ..store.results import TOTAL_STAGE
from .changepoint import detect_changes


def trend_changes(series: pd.DataFrame, metric: str, *, min_effect: float = 0.05, alpha: float = 0.01) -> list[dict]:
    """Level changes per case in a ``series`` frame (History.series). Nights are the frame's
    runs in time order; ``night`` counts them from 1 (oldest). Each change: case_id, night,
    run_id, started_at (first night of the new level), before/after (medians of the levels),
    relative_change, p_value, test, direction ("up"/"down") and regression (the metric's bad
    direction; never for util). NaN nights are left out of a case's series."""
    spec = metric_spec(metric)
    nights = _nights(series)
    changes = []
    for case_id, rows in series.groupby("case_id", sort=False):
        rows = rows.dropna(subset=["value"])
        for change in detect_changes(rows["value"].to_numpy(), min_effect=min_effect, alpha=alpha):
            run_id = rows["run_id"].iloc[change.index]
            changes.append(_change_dict(case_id, run_id, nights[run_id], change, spec))
    return changes


def _nights(series: pd.DataFrame) -> dict[str, dict]:
    runs = series.drop_duplicates("run_id").sort_values(["started_at", "run_id"], kind="stable")
    return {r.run_id: {"night": i + 1, "started_at": r.started_at} for i, r in enumerate(runs.itertuples())}


def _change_dict(case_id: str, run_id: str, night: dict, change, spec: HistoryMetric) -> dict:
    direction = "up" if change.after_median > change.before_median else "down"
    return {"case_id": case_id, "night": night["night"], "run_id": run_id,
            "started_at": night["started_at"].isoformat(), "before": change.before_median,
            "after": change.after_median, "relative_change": change.relative_change, "p_value": change.p_value,
            "test": change.test, "direction": direction, "regression": spec.bad == direction}


@dataclass
class CaseTrend:
    case_id: str
    values: list[float | None]          # one per night of the window, None where missing
    changes: list[dict] = field(default_factory=list)
    verdict: str = "stable"             # regression | improvement | changed | recovered | stable | too few nights
    net_change: float | None = None     # last level / first level - 1, when there are changes


@dataclass
class HistoryTrend:
    suite: str
    metric: str
    stage: str
    spec: HistoryMetric
    nights: list[dict]                  # night, run_id, started_at, status, regression mark
    cases: list[CaseTrend]
    min_effect: float
    alpha: float
    db: str

    def regressions(self) -> list[CaseTrend]:
        return [c for c in self.cases if c.verdict == "regression"]


def history_trend(history: History, suite: str, *, metric: str = "latency", stage: str = TOTAL_STAGE,
                  last_n: int = 30, min_effect: float = 0.05, alpha: float = 0.01) -> HistoryTrend:
    """The trend per case of ``suite`` over its newest ``last_n`` nights, with change points
    and a verdict per case (from the net change between its first and last level)."""
    spec = metric_spec(metric, stage)
    if last_n < 1:
        raise UserError(f"--last: {last_n} is not a number of nights (expected 1 or more)")
    series = history.series(suite, metric, stage=stage, last_n=last_n)
    _check_series(history, suite, stage, series)
    night_of = _nights(series)
    marks = {r["run_id"]: r for r in history.runs(suite)}
    nights = [{"night": n["night"], "run_id": run_id, "started_at": n["started_at"].isoformat(),
               "status": marks[run_id]["status"], "regression": marks[run_id]["regression"]}
              for run_id, n in night_of.items()]
    changes = trend_changes(series, metric, min_effect=min_effect, alpha=alpha)
    cases = [_case_trend(case_id, rows, night_of, [c for c in changes if c["case_id"] == case_id], spec,
                         min_effect) for case_id, rows in series.groupby("case_id", sort=False)]
    return HistoryTrend(suite, metric, stage, spec, nights, cases, min_effect, alpha, history.url)


def _check_series(history: History, suite: str, stage: str, series: pd.DataFrame) -> None:
    if len(series):
        return
    if not history.runs(suite):
        raise UserError(f"{suite}: history: no runs of this suite recorded in {history.url} (record them with "
                        "the nightly command, or `bench history SUITE --record RESULTS_DIR`)")
    stages = history.stages(suite)
    if stage not in stages:
        raise UserError(f"--stage: {stage!r} is not a stage of suite {suite!r} (expected one of {', '.join(stages)})")
    raise UserError(f"{suite}: history: no finished or interrupted run with case summaries in {history.url}")


def _case_trend(case_id: str, rows: pd.DataFrame, night_of: dict, changes: list[dict], spec: HistoryMetric,
                min_effect: float) -> CaseTrend:
    values: list[float | None] = [None] * len(night_of)
    for run_id, value in zip(rows["run_id"], rows["value"]):
        values[night_of[run_id]["night"] - 1] = None if math.isnan(value) else float(value)
    trend = CaseTrend(case_id, values, changes)
    if sum(v is not None for v in values) < 4:
        trend.verdict = "too few nights"
    elif changes:
        trend.net_change = _ratio(changes[-1]["after"], changes[0]["before"])
        trend.verdict = _verdict(trend.net_change, spec, min_effect)
    return trend


def _ratio(after: float, before: float) -> float:
    if before == 0:
        return 0.0 if after == 0 else math.inf
    return after / before - 1.0


def _verdict(net: float, spec: HistoryMetric, min_effect: float) -> str:
    if abs(net) < min_effect:
        return "recovered"
    if spec.bad is None:
        return "changed"
    return "regression" if ("up" if net > 0 else "down") == spec.bad else "improvement"
