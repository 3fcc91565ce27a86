"""Statistics for benchmark samples: pure functions, no I/O, no printing.

Every function names the method it uses so a reviewer can check it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import fisher_exact, mannwhitneyu, wilcoxon


def min_samples_for(q: float) -> int:
    """Smallest n for which the q-quantile (0 < q < 1) is supported by the data.

    Rule: a q-quantile needs at least ceil(1 / (1 - q)) samples, so that at least
    one sample lies at or above it (p50: 2, p90: 10, p99: 100). With fewer samples
    the "p99" would just be the maximum, and we say so by returning nothing.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    return math.ceil(round(1.0 / (1.0 - q), 9))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation (numpy's default, Hyndman-Fan type 7).

    Returns None when len(values) < min_samples_for(q), for q > 0.5; the median
    is returned for any non-empty sample.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    if q > 0.5 and data.size < min_samples_for(q):
        return None
    return float(np.quantile(data, q))


@dataclass(frozen=True)
class Description:
    """Summary of one sample; percentiles are None where n cannot support them."""

    n: int
    mean: float | None
    std: float | None
    minimum: float | None
    maximum: float | None
    p10: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    cv: float | None


def describe(values: Sequence[float]) -> Description:
    """Mean, sample standard deviation (ddof=1), min, max, percentiles, and the
    coefficient of variation (std / mean) of a sample. NaNs are dropped."""
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    n = int(data.size)
    if n == 0:
        return Description(0, None, None, None, None, None, None, None, None, None)
    mean = float(data.mean())
    std = float(data.std(ddof=1)) if n > 1 else None
    cv = std / mean if (std is not None and mean > 0) else None
    return Description(
        n=n,
        mean=mean,
        std=std,
        minimum=float(data.min()),
        maximum=float(data.max()),
        p10=percentile(data, 0.10) if n >= min_samples_for(0.90) else None,
        p50=percentile(data, 0.50),
        p90=percentile(data, 0.90),
        p99=percentile(data, 0.99),
        cv=cv,
    )


# --- comparing two samples -------------------------------------------------

FASTER = "faster"
SLOWER = "slower"
NO_CHANGE = "no significant change"
INSUFFICIENT = "insufficient data"
MORE_FAILURES = "more failures"
FEWER_FAILURES = "fewer failures"

_STATS = {"median": np.median, "mean": np.mean}


def _finite(values: Sequence[float]) -> np.ndarray:
    """The sample as a float array with NaNs dropped."""
    data = np.asarray(values, dtype=float).ravel()
    return data[~np.isnan(data)]


def _positive(values: Sequence[float], name: str) -> np.ndarray:
    data = _finite(values)
    if data.size < 2:
        raise ValueError(f"{name} needs at least 2 values, got {data.size}")
    if not np.all(np.isfinite(data)) or np.any(data <= 0):
        raise ValueError(f"{name} must hold finite positive values for a ratio")
    return data


def _boot(rng: np.random.Generator, data: np.ndarray, n_boot: int, stat) -> np.ndarray:
    """stat of n_boot resamples with replacement of data, one row per resample."""
    idx = rng.integers(0, data.size, size=(n_boot, data.size))
    return stat(data[idx], axis=1)


def _interval(draws: np.ndarray, conf: float) -> tuple[float, float]:
    if not 0.0 < conf < 1.0:
        raise ValueError(f"conf must be in (0, 1), got {conf}")
    tail = (1.0 - conf) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_ratio_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    stat: str = "median",
    n_boot: int = 2000,
    conf: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(ratio, ci_low, ci_high) for stat(b) / stat(a), stat "median" or "mean".

    Method: percentile bootstrap of the ratio; each of n_boot resamples draws
    len(a) values from a and len(b) values from b independently, with
    replacement, from numpy.random.default_rng(seed); the interval is the
    (1 - conf)/2 and (1 + conf)/2 quantiles (numpy type 7) of the resampled
    ratios. NaNs are dropped; each side needs >= 2 finite positive values.
    """
    fn = _STATS[stat]
    xa, xb = _positive(a, "a"), _positive(b, "b")
    rng = np.random.default_rng(seed)
    draws = _boot(rng, xb, n_boot, fn) / _boot(rng, xa, n_boot, fn)
    return (float(fn(xb) / fn(xa)), *_interval(draws, conf))


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the Mann-Whitney U test (scipy.stats.mannwhitneyu).

    The exact null distribution is used when there are no ties and the smaller
    side has <= 8 values; otherwise the normal approximation with tie correction
    and continuity correction. (This is scipy's "auto" rule, made explicit so
    the method does not change with the scipy version.) None when a side has
    < 2 values or every value ties. NaNs are dropped.
    """
    xa, xb = _finite(a), _finite(b)
    if xa.size < 2 or xb.size < 2:
        return None
    pooled = np.concatenate([xa, xb])
    if np.all(pooled == pooled[0]):
        return None
    ties = np.unique(pooled).size < pooled.size
    method = "exact" if (not ties and min(xa.size, xb.size) <= 8) else "asymptotic"
    return float(mannwhitneyu(xa, xb, alternative="two-sided", method=method).pvalue)


def fisher_exact_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided p-value of Fisher's exact test (scipy.stats.fisher_exact) on the
    2x2 table [[k_a, n_a - k_a], [k_b, n_b - k_b]]: k failures out of n runs."""
    for k, n in ((k_a, n_a), (k_b, n_b)):
        if not 0 <= k <= n:
            raise ValueError(f"need 0 <= failures <= runs, got {k} of {n}")
    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    return float(fisher_exact(table, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class Comparison:
    """B against A; ratio is median(b) / median(a). None fields: insufficient data."""

    n_a: int
    n_b: int
    median_a: float | None
    median_b: float | None
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    verdict: str
    min_effect: float
    design: str = "unpaired"  # UNPAIRED or PAIRED: which statistics gave the ratio and interval


UNPAIRED = "unpaired"
PAIRED = "paired"


def compare_samples(
    a: Sequence[float],
    b: Sequence[float],
    *,
    min_effect: float = 0.02,
    conf: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    higher_is_better: bool = False,
    verdict_words: tuple[str, str] = (FASTER, SLOWER),
) -> Comparison:
    """Compare sample b (new) against sample a (baseline).

    ratio and [ci_low, ci_high]: median(b) / median(a) with the percentile
    bootstrap interval of bootstrap_ratio_ci (stat="median", n_boot, conf, seed).
    p_value: two-sided Mann-Whitney U (mann_whitney_p); reported, not used in
    the verdict.

    Verdict rule: INSUFFICIENT when a side has < 2 values (NaNs dropped).
    Otherwise the change is significant only if the interval excludes 1
    (ci_low > 1 or ci_high < 1) AND |ratio - 1| >= min_effect; if not,
    NO_CHANGE. Values must be positive (the ratio needs median(a) > 0).
    A significant change is an improvement when ratio < 1 (lower is
    better, e.g. latency) or, with higher_is_better=True, when ratio > 1
    (e.g. throughput). verdict_words = (word for improvement, word for
    regression): ("faster", "slower") by default; memory can pass
    ("lower", "higher").
    """
    _check_verdict_words(verdict_words)
    xa, xb = _finite(a), _finite(b)
    med_a = float(np.median(xa)) if xa.size else None
    med_b = float(np.median(xb)) if xb.size else None
    if xa.size < 2 or xb.size < 2:
        return Comparison(xa.size, xb.size, med_a, med_b, None, None, None, None,
                          INSUFFICIENT, min_effect)
    ratio, low, high = bootstrap_ratio_ci(xa, xb, n_boot=n_boot, conf=conf, seed=seed)
    verdict = _verdict(ratio, low, high, min_effect, higher_is_better, verdict_words)
    return Comparison(xa.size, xb.size, med_a, med_b, ratio, low, high,
                      mann_whitney_p(xa, xb), verdict, min_effect)


def _check_verdict_words(verdict_words: tuple[str, str]) -> None:
    good, bad = verdict_words
    if good == bad or {good, bad} & {NO_CHANGE, INSUFFICIENT}:
        raise ValueError(f"verdict_words must be two distinct new words, got {verdict_words}")


def _verdict(ratio: float, low: float, high: float, min_effect: float, higher_is_better: bool,
             verdict_words: tuple[str, str]) -> str:
    """The rule both designs share: a change only when the interval excludes 1 and the ratio
    is at least ``min_effect`` away from 1; then the improvement's or the regression's word."""
    if not ((low > 1.0 or high < 1.0) and abs(ratio - 1.0) >= min_effect):
        return NO_CHANGE
    good, bad = verdict_words
    return good if (ratio > 1.0) == higher_is_better else bad


def _pairs(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The rounds where both sides have a finite value (a[i] and b[i] measured in round i)."""
    xa, xb = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples need one value per round on each side, got {xa.size} and {xb.size}")
    keep = np.isfinite(xa) & np.isfinite(xb)
    return xa[keep], xb[keep]


def paired_ratio_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 2000,
    conf: float = 0.95,
    seed: int = 0,
    blocks: Sequence | None = None,
) -> tuple[float, float, float]:
    """(ratio, ci_low, ci_high) for a paired (block) design: a[i] and b[i] were measured in
    the same round i, close in time, so a drift of the machine over the run multiplies both.

    Method: the per-round ratios r_i = b[i] / a[i]; ratio = median(r). Interval: percentile
    bootstrap over rounds (n_boot resamples of the rounds with replacement, from
    numpy.random.default_rng(seed); the median of each resample's ratios; the (1 - conf)/2
    and (1 + conf)/2 quantiles, numpy type 7). Rounds with a NaN on either side are dropped;
    >= 2 rounds with positive finite values are needed. The same block design as
    ``bench selfcheck``'s alternating rounds.

    ``blocks`` (one label per round, e.g. which pair of worker processes measured it): when
    there are several, the interval comes from a two-stage bootstrap (blocks resampled with
    replacement, then rounds within each), so a difference between processes widens the
    interval instead of reading as an effect.
    """
    xa, xb, groups = _pairs_in_blocks(a, b, blocks)
    if xa.size < 2:
        raise ValueError(f"paired samples need at least 2 complete rounds, got {xa.size}")
    if np.any(xa <= 0) or np.any(xb <= 0):
        raise ValueError("paired samples must hold positive values for a ratio")
    ratios = xb / xa
    rng = np.random.default_rng(seed)
    if groups is None:
        return (float(np.median(ratios)), *_interval(_boot(rng, ratios, n_boot, np.median), conf))
    return (float(np.median(ratios)), *_interval(_block_boot(rng, ratios, groups, n_boot), conf))


def _pairs_in_blocks(a, b, blocks):
    """Complete rounds, and their block labels as integer groups (None without blocks, or with one)."""
    if blocks is None:
        return (*_pairs(a, b), None)
    xa, xb = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    labels = np.asarray(blocks).ravel()
    if not xa.shape == xb.shape == labels.shape:
        raise ValueError("blocks need one label per round")
    keep = np.isfinite(xa) & np.isfinite(xb)
    _, groups = np.unique(labels[keep], return_inverse=True)
    return xa[keep], xb[keep], (groups if np.unique(groups).size > 1 else None)


def _block_boot(rng: np.random.Generator, ratios: np.ndarray, groups: np.ndarray, n_boot: int) -> np.ndarray:
    """Two-stage bootstrap: resample the blocks with replacement, then the rounds within each
    chosen block; the median of the pooled ratios of each resample."""
    members = [ratios[groups == g] for g in range(groups.max() + 1)]
    draws = np.empty(n_boot)
    for i in range(n_boot):
        chosen = rng.integers(0, len(members), len(members))
        draws[i] = np.median(np.concatenate([m[rng.integers(0, m.size, m.size)] for m in (members[c] for c in chosen)]))
    return draws


def contiguous_blocks(rounds: int, blocks: int) -> list[int]:
    """Block label of each of ``rounds`` rounds split into ``blocks`` contiguous, near-equal
    segments (round r is in block r * blocks // rounds)."""
    blocks = max(1, min(blocks, rounds))
    return [r * blocks // rounds for r in range(rounds)]


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the Wilcoxon signed-rank test (scipy.stats.wilcoxon) on the
    per-round log ratios log(b[i] / a[i]); zero differences are dropped ("wilcox"). None with
    fewer than 2 non-zero rounds."""
    xa, xb = _pairs(a, b)
    logs = np.log(xb[(xa > 0) & (xb > 0)] / xa[(xa > 0) & (xb > 0)])
    logs = logs[logs != 0]
    if logs.size < 2:
        return None
    return float(wilcoxon(logs, zero_method="wilcox", alternative="two-sided").pvalue)


def compare_paired(
    a: Sequence[float],
    b: Sequence[float],
    *,
    min_effect: float = 0.02,
    conf: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    higher_is_better: bool = False,
    verdict_words: tuple[str, str] = (FASTER, SLOWER),
    blocks: Sequence | None = None,
) -> Comparison:
    """Compare b against a measured in alternating rounds (a[i], b[i] in round i; ``blocks``
    labels the rounds' blocks, see paired_ratio_ci).

    ratio and interval: paired_ratio_ci (median of per-round ratios, bootstrap over rounds);
    p_value: wilcoxon_p (reported, not used in the verdict). The verdict rule is that of
    compare_samples: significant only when the interval excludes 1 AND |ratio - 1| >=
    min_effect. INSUFFICIENT with < 2 complete rounds. medians are those of each side's
    values in the complete rounds."""
    _check_verdict_words(verdict_words)
    xa, xb = _pairs(a, b)
    med_a = float(np.median(xa)) if xa.size else None
    med_b = float(np.median(xb)) if xb.size else None
    if xa.size < 2:
        return Comparison(xa.size, xb.size, med_a, med_b, None, None, None, None, INSUFFICIENT, min_effect, PAIRED)
    ratio, low, high = paired_ratio_ci(a, b, n_boot=n_boot, conf=conf, seed=seed, blocks=blocks)
    verdict = _verdict(ratio, low, high, min_effect, higher_is_better, verdict_words)
    return Comparison(xa.size, xb.size, med_a, med_b, ratio, low, high, wilcoxon_p(xa, xb), verdict,
                      min_effect, PAIRED)


def paired_geometric_mean_ratio(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    n_boot: int = 2000,
    conf: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(ratio, ci_low, ci_high): geometric mean over clip lengths of each length's paired
    ratio (median of per-round ratios, as paired_ratio_ci). Interval: joint percentile
    bootstrap resampling the rounds of every length (one default_rng(seed) stream, lengths
    in order)."""
    if not pairs:
        raise ValueError("paired_geometric_mean_ratio needs at least one (a, b) pair")
    rng = np.random.default_rng(seed)
    point, draws = 0.0, np.zeros(n_boot)
    for a, b in pairs:
        xa, xb = _pairs(a, b)
        if xa.size < 2 or np.any(xa <= 0) or np.any(xb <= 0):
            raise ValueError("each length needs >= 2 complete rounds of positive values")
        ratios = xb / xa
        point += math.log(np.median(ratios))
        draws += np.log(_boot(rng, ratios, n_boot, np.median))
    n = len(pairs)
    return (math.exp(point / n), *_interval(np.exp(draws / n), conf))


def noise_floor(ratios: Sequence[float], *, q: float = 0.9) -> float | None:
    """The typical size of a change between measurements that should be identical: the
    q-quantile (numpy type 7) of |log r| over ratios r (e.g. one night against the night
    before, or B/A of an A/A comparison), returned as a fraction (exp(.) - 1). None with
    fewer than 3 ratios."""
    data = _finite(ratios)
    data = data[data > 0]
    if data.size < 3:
        return None
    return float(math.exp(np.quantile(np.abs(np.log(data)), q)) - 1.0)


@dataclass(frozen=True)
class FailureComparison:
    """Failure counts of B against A; rates are None when there were no runs."""

    k_a: int
    n_a: int
    k_b: int
    n_b: int
    rate_a: float | None
    rate_b: float | None
    p_value: float | None
    verdict: str
    alpha: float


def compare_failures(
    k_a: int, n_a: int, k_b: int, n_b: int, *, alpha: float = 0.05
) -> FailureComparison:
    """Compare failure rates k/n of B against A by Fisher's exact test
    (fisher_exact_p, two-sided). Verdict: INSUFFICIENT when a side has no runs;
    MORE_FAILURES / FEWER_FAILURES when p < alpha, by the sign of
    rate_b - rate_a; otherwise NO_CHANGE."""
    if n_a == 0 or n_b == 0:
        rate_a = k_a / n_a if n_a else None
        rate_b = k_b / n_b if n_b else None
        return FailureComparison(k_a, n_a, k_b, n_b, rate_a, rate_b, None, INSUFFICIENT, alpha)
    p = fisher_exact_p(k_a, n_a, k_b, n_b)
    rate_a, rate_b = k_a / n_a, k_b / n_b
    if p >= alpha or rate_a == rate_b:
        verdict = NO_CHANGE
    else:
        verdict = MORE_FAILURES if rate_b > rate_a else FEWER_FAILURES
    return FailureComparison(k_a, n_a, k_b, n_b, rate_a, rate_b, p, verdict, alpha)


def geometric_mean_ratio(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    n_boot: int = 2000,
    conf: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(ratio, ci_low, ci_high): geometric mean over clip lengths of the
    per-length ratio median(b) / median(a), i.e. exp(mean_i log(med b_i / med a_i)).

    Method: joint percentile bootstrap; each of n_boot resamples draws every
    length's a and b independently with replacement (one
    numpy.random.default_rng(seed) stream, lengths in order, b before a) and
    recomputes the geometric mean; the interval is the (1 - conf)/2 and
    (1 + conf)/2 quantiles. Each side of each length needs >= 2 finite positive
    values.
    """
    if not pairs:
        raise ValueError("geometric_mean_ratio needs at least one (a, b) pair")
    rng = np.random.default_rng(seed)
    point, draws = 0.0, np.zeros(n_boot)
    for i, (a, b) in enumerate(pairs):
        xa, xb = _positive(a, f"pairs[{i}] a"), _positive(b, f"pairs[{i}] b")
        point += math.log(np.median(xb) / np.median(xa))
        draws += np.log(_boot(rng, xb, n_boot, np.median) / _boot(rng, xa, n_boot, np.median))
    n = len(pairs)
    return (math.exp(point / n), *_interval(np.exp(draws / n), conf))


# --- memory model --------------------------------------------------------------

@dataclass(frozen=True)
class PowerFit:
    """y = c + a * x**p fitted to (x, y); residuals are y - predict(x)."""

    c: float
    a: float
    p: float
    residuals: tuple[float, ...]
    r_squared: float | None

    def predict(self, x):
        """c + a * x**p, a float for a scalar x, an array for an array."""
        y = self.c + self.a * np.asarray(x, dtype=float) ** self.p
        return float(y) if np.ndim(y) == 0 else y

    def solve_for_x(self, y_max: float) -> float | None:
        """Largest x >= 0 with predict(x) <= y_max.

        The curve is non-decreasing on x >= 0 (a >= 0, p > 0), so this is the
        closed-form inverse x = ((y_max - c) / a) ** (1 / p). None when even
        x = 0 exceeds y_max (c > y_max); math.inf when a == 0 and c <= y_max.
        """
        if self.c > y_max:
            return None
        if self.a == 0.0:
            return math.inf
        return float(((y_max - self.c) / self.a) ** (1.0 / self.p))


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerFit:
    """Fit y = c + a * x**p by bounded nonlinear least squares
    (scipy.optimize.curve_fit, method "trf") with a >= 0, 0.5 <= p <= 3, c free.

    x and y are scaled by their maximum absolute values before fitting and the
    parameters scaled back. Needs >= 3 distinct x >= 0 and finite y.
    r_squared = 1 - SS_res / SS_tot; None when y is constant.
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("x and y must be 1-D sequences of the same length")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))) or np.any(xs < 0):
        raise ValueError("x must be finite and >= 0, y finite")
    if np.unique(xs).size < 3:
        raise ValueError("need at least 3 distinct x values to fit c, a and p")
    sx, sy = float(xs.max()), float(np.abs(ys).max()) or 1.0
    xn, yn = xs / sx, ys / sy
    p0 = [yn.min(), max(yn.max() - yn.min(), 1e-6), 1.0]
    bounds = ([-np.inf, 0.0, 0.5], [np.inf, np.inf, 3.0])
    (c, a, p), _ = curve_fit(_power, xn, yn, p0=p0, bounds=bounds, method="trf")
    fit = PowerFit(float(c * sy), float(a * sy / sx**p), float(p), (), None)
    resid = ys - fit.predict(xs)
    ss_tot = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else None
    return PowerFit(fit.c, fit.a, fit.p, tuple(float(r) for r in resid), r2)


def _power(x: np.ndarray, c: float, a: float, p: float) -> np.ndarray:
    return c + a * x**p
