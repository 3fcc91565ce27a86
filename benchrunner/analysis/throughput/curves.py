"""Latency-throughput curves read from throughput.csv: one curve per variant, mode and clip
length, one point per concurrency level; the knee of each (knee.py). pandas, no torch.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .knee import Knee, LevelPoint, find_knee
from ...store.throughput import KIND_TOTAL, level_totals

CURVE_KEY = ["pipeline", "variant", "mode", "threshold_s", "clip_s"]
USABLE_STATUSES = ("ok", "unstable")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def level_point(row: pd.Series) -> LevelPoint:
    return LevelPoint(
        concurrency=int(row["concurrency"]), clips_per_s=_number(row["throughput_clips_per_s"]),
        latency_p90_ms=_number(row["latency_p90_ms"]), latency_p99_ms=_number(row["latency_p99_ms"]),
        failures=int(_number(row["failures"]) or 0), usable=str(row["status"]) in USABLE_STATUSES)


def curves(frame: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """(curve key, its total rows in concurrency order), in the order the curves ran."""
    totals = frame[frame["kind"] == KIND_TOTAL] if not frame.empty else frame
    if totals.empty:
        return []
    found = []
    for key, group in totals.groupby(CURVE_KEY, dropna=False, sort=False):
        found.append((key, group.sort_values("concurrency", kind="stable")))
    return found


def curve_knee(levels: pd.DataFrame, budget_ms: float) -> Knee:
    return find_knee([level_point(row) for _, row in levels.iterrows()], budget_ms)


def mark_knees(frame: pd.DataFrame, budget_ms: float | None) -> pd.DataFrame:
    """throughput.csv with the knee marked: on every total row of a curve ``knee_budget_ms``
    and ``knee_quantile``; ``knee = yes`` on the knee's level (``no`` on the others). Without a
    budget the columns stay blank."""
    out = frame.copy()
    for column in ("knee", "knee_quantile"):
        out[column] = out[column].astype(object)
    if budget_ms is None or out.empty:
        return out
    for _, levels in curves(out):
        knee = curve_knee(levels, budget_ms)
        for index, row in levels.iterrows():
            out.at[index, "knee_budget_ms"] = budget_ms
            out.at[index, "knee_quantile"] = knee.quantile
            out.at[index, "knee"] = "yes" if knee.concurrency == int(row["concurrency"]) else "no"
    return out


def bottleneck_share(levels: pd.DataFrame) -> str:
    """The stage named bottleneck at the highest measured level (where load is greatest)."""
    usable = levels[levels["status"].isin(USABLE_STATUSES)]
    if usable.empty:
        return ""
    return str(usable.iloc[-1]["bottleneck"] or "")


__all__ = ["CURVE_KEY", "curves", "curve_knee", "mark_knees", "level_point", "level_totals", "bottleneck_share"]
