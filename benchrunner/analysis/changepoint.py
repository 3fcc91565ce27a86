"""Level changes in a nightly series (one value per night): pure math, no I/O.

Candidates come from ruptures (PELT, "l1" cost); each is then kept only if
the nights on either side of it differ by a statistical test and by at least
min_effect. See detect_changes for the exact rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import ruptures
from scipy.stats import mannwhitneyu, norm

MANN_WHITNEY = "mann-whitney"
MEDIAN_Z = "median z"


@dataclass(frozen=True)
class Change:
    """A level change; index is the first night (0-based) of the new level.

    test names the test that gave p_value: MANN_WHITNEY or MEDIAN_Z.
    """

    index: int
    before_median: float
    after_median: float
    relative_change: float
    p_value: float
    test: str


def noise_sigma(values: Sequence[float]) -> float:
    """Robust noise standard deviation from first differences:
    MAD(diff(values)) / 0.6745 / sqrt(2), where MAD is the median absolute
    deviation from the median. Steps and linear drift barely move it."""
    diffs = np.diff(np.asarray(values, dtype=float))
    if diffs.size == 0:
        return 0.0
    mad = np.median(np.abs(diffs - np.median(diffs)))
    return float(mad / 0.6745 / math.sqrt(2.0))


def detect_changes(
    values: Sequence[float],
    *,
    min_effect: float = 0.05,
    alpha: float = 0.01,
    min_size: int = 2,
    penalty: float | None = None,
) -> list[Change]:
    """Level changes in values (finite, one per night, in order).

    1. Candidates: ruptures.Pelt(model="l1", min_size=min_size, jump=1) with
       penalty pen = 2 * sigma * ln(n) unless given, sigma = noise_sigma(values)
       (floored at 1e-9 * median |value| so a noiseless series still works).
       The l1 cost (sum of absolute deviations from the segment median) is
       in units of the data, hence sigma rather than sigma**2 in the BIC-like
       penalty; unlike l2, it gains nothing by cutting out a one-night spike.
    2. Test: each candidate compares the nights from the previous kept
       breakpoint to it against the nights from it to the next. Two-sided
       Mann-Whitney U (scipy.stats.mannwhitneyu; exact null distribution when
       the smaller side has <= 8 nights, ties or not, else the normal
       approximation with tie and continuity corrections) when the exact test
       can reach alpha on those sizes (2 / C(n1 + n2, n1) <= alpha); else a
       z-test on medians, z = (med_after - med_before) /
       (s * sqrt(pi/2) * sqrt(1/n1 + 1/n2)), p = 2 * (1 - Phi(|z|)), with
       s = max(sigma, sample SD of any side of exactly 2 nights).
       sqrt(pi/2) * s / sqrt(n) is the large-sample standard error of a
       normal median. A two-night side's median is the mean of its nights, so
       a spike next to a normal night would look like a new level; its own
       spread is what tells them apart (a genuine level has two close nights).
       A candidate passes when p < alpha and
       |med_after / med_before - 1| >= min_effect.
    3. Pruning: while any candidate fails, drop the failing one with the
       largest p-value (then smallest effect) and retest the rest with their
       new neighbours, so segments merge until every kept change passes.
    A slow drift is therefore reported where the pieces PELT cut it into
    differ by >= min_effect after merging; a spike lasting one night is not.
    """
    data = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(data)):
        raise ValueError("values must be finite (one value per night, no gaps)")
    n = data.size
    if n < 2 * min_size:
        return []
    floor = 1e-9 * max(float(np.median(np.abs(data))), 1e-300)
    sigma = max(noise_sigma(data), floor)
    pen = 2.0 * sigma * math.log(n) if penalty is None else penalty
    algo = ruptures.Pelt(model="l1", min_size=min_size, jump=1).fit(data)
    cuts = [c for c in algo.predict(pen=pen) if c < n]
    while cuts:
        tests = [_test(data, cuts, i, sigma, alpha) for i in range(len(cuts))]
        failing = [i for i, t in enumerate(tests) if not _passes(t, alpha, min_effect)]
        if not failing:
            return tests
        worst = max(failing, key=lambda i: (tests[i].p_value, -abs(tests[i].relative_change)))
        del cuts[worst]
    return []


def _passes(change: Change, alpha: float, min_effect: float) -> bool:
    return change.p_value < alpha and abs(change.relative_change) >= min_effect


def _test(data: np.ndarray, cuts: list[int], i: int, sigma: float, alpha: float) -> Change:
    """Test the candidate cuts[i] against its neighbouring breakpoints."""
    start = cuts[i - 1] if i > 0 else 0
    end = cuts[i + 1] if i + 1 < len(cuts) else data.size
    before, after = data[start:cuts[i]], data[cuts[i]:end]
    med_b, med_a = float(np.median(before)), float(np.median(after))
    rel = 0.0 if med_a == med_b else (med_a - med_b) / abs(med_b) if med_b else math.inf
    n1, n2 = before.size, after.size
    if 2.0 / math.comb(n1 + n2, n1) <= alpha:
        method = "exact" if min(n1, n2) <= 8 else "asymptotic"
        p = mannwhitneyu(before, after, alternative="two-sided", method=method).pvalue
        test = MANN_WHITNEY
    else:
        scale = max([sigma] + [float(np.std(x, ddof=1)) for x in (before, after) if x.size == 2])
        z = (med_a - med_b) / (scale * math.sqrt(math.pi / 2) * math.sqrt(1 / n1 + 1 / n2))
        p, test = 2.0 * norm.sf(abs(z)), MEDIAN_Z
    return Change(cuts[i], med_b, med_a, float(rel), float(p), test)

