"""Validity warnings about a run's numbers, each with its fix."""

from __future__ import annotations

import pandas as pd

from .measure.environment import ValidityWarning
from .results import TOTAL_STAGE
from .stats import min_samples_for

CV_LIMIT = 0.10


def run_warnings(summary: pd.DataFrame) -> list[ValidityWarning]:
    """Noisy cases (coefficient of variation over 10%) and percentiles the sample size cannot support."""
    if summary.empty:
        return []
    totals = summary[summary["stage"] == TOTAL_STAGE]
    found = []
    noisy = totals[pd.to_numeric(totals["latency_cv"], errors="coerce") > CV_LIMIT]
    if len(noisy):
        worst = noisy.sort_values("latency_cv", ascending=False).iloc[0]
        found.append(ValidityWarning(
            "high_cv",
            f"{len(noisy)} case(s) vary by more than {CV_LIMIT:.0%} between repeats "
            f"(worst: {worst['case_id']}, CV {float(worst['latency_cv']):.0%})",
            "add repeats (repeats = 20) or warm-up (warmup = 3), and keep other work off the machine"))
    n_min = int(pd.to_numeric(totals["n"], errors="coerce").min()) if len(totals) else 0
    if n_min < min_samples_for(0.99):
        found.append(ValidityWarning(
            "too_few_samples",
            f"p99 needs at least {min_samples_for(0.99)} samples per case and the smallest case has {n_min}; "
            "p99 is left blank" + (" and so is p90" if n_min < min_samples_for(0.90) else ""),
            f"set repeats >= {min_samples_for(0.99)} where tail latency matters"))
    return found
