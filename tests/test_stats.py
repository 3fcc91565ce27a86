"""Tests for the comparison statistics in benchrunner.analysis.stats (seeded simulations)."""

import math
import time
from collections import Counter

import numpy as np
import pytest

from benchrunner.analysis import stats

from benchrunner.analysis.stats import (
    FASTER,
    FEWER_FAILURES,
    INSUFFICIENT,
    MORE_FAILURES,
    NO_CHANGE,
    SLOWER,
    bootstrap_ratio_ci,
    compare_failures,
    compare_samples,
    fisher_exact_p,
    fit_power_law,
    geometric_mean_ratio,
    mann_whitney_p,
)

TRIALS = 200


def _verdicts(shift: float, noise: float, n: int = 30, seed: int = 1, **kwargs) -> Counter:
    """Verdicts over TRIALS simulated A/B pairs: A ~ N(100, noise*100), B scaled by shift."""
    rng = np.random.default_rng(seed)
    counts = Counter()
    for _ in range(TRIALS):
        a = 100.0 * (1 + noise * rng.standard_normal(n))
        b = 100.0 * shift * (1 + noise * rng.standard_normal(n))
        counts[compare_samples(a, b, **kwargs).verdict] += 1
    return counts


# --- acceptance: simulated comparisons -------------------------------------------

def test_identical_distributions_give_no_change_in_95_percent_of_trials():
    counts = _verdicts(shift=1.0, noise=0.01)
    assert counts[NO_CHANGE] >= 0.95 * TRIALS, counts


def test_five_percent_slowdown_is_found_in_95_percent_of_trials():
    counts = _verdicts(shift=1.05, noise=0.01, seed=2)
    assert counts[SLOWER] >= 0.95 * TRIALS, counts


def test_one_percent_shift_below_min_effect_is_no_change_even_with_low_noise():
    counts = _verdicts(shift=1.01, noise=0.001, seed=3, min_effect=0.02)
    assert counts[NO_CHANGE] == TRIALS, counts


def test_one_percent_shift_is_resolved_by_the_interval_but_held_back_by_min_effect():
    rng = np.random.default_rng(4)
    a = 100.0 * (1 + 0.001 * rng.standard_normal(30))
    b = 101.0 * (1 + 0.001 * rng.standard_normal(30))
    result = compare_samples(a, b, min_effect=0.02)
    assert result.ci_low > 1.0
    assert result.verdict == NO_CHANGE
    assert compare_samples(a, b, min_effect=0.005).verdict == SLOWER


def test_interval_alone_is_calibrated_without_min_effect():
    # With min_effect=0 the verdict depends on the 95% interval only, so
    # identical distributions should be called a change in roughly 5% of trials.
    counts = _verdicts(shift=1.0, noise=0.01, seed=5, min_effect=0.0)
    assert counts[NO_CHANGE] >= 0.90 * TRIALS, counts


# --- compare_samples -------------------------------------------------------------

def test_faster_when_b_is_lower():
    rng = np.random.default_rng(6)
    result = compare_samples(rng.normal(100, 1, 30), rng.normal(90, 1, 30))
    assert result.verdict == FASTER
    assert result.ratio == pytest.approx(0.9, abs=0.01)
    assert result.ci_low <= result.ratio <= result.ci_high < 1.0
    assert result.p_value < 1e-6
    assert (result.n_a, result.n_b, result.min_effect) == (30, 30, 0.02)


def test_higher_is_better_flips_the_words():
    rng = np.random.default_rng(7)
    a, b = rng.normal(100, 1, 30), rng.normal(110, 1, 30)
    assert compare_samples(a, b).verdict == SLOWER
    assert compare_samples(a, b, higher_is_better=True).verdict == FASTER


def test_verdict_words_for_memory():
    rng = np.random.default_rng(8)
    a, b = rng.normal(1000, 5, 10), rng.normal(1100, 5, 10)
    words = ("lower", "higher")
    assert compare_samples(a, b, verdict_words=words).verdict == "higher"
    assert compare_samples(b, a, verdict_words=words).verdict == "lower"
    assert compare_samples(a, a, verdict_words=words).verdict == NO_CHANGE


def test_verdict_words_must_be_distinct_and_new():
    with pytest.raises(ValueError):
        compare_samples([1, 2], [1, 2], verdict_words=("same", "same"))
    with pytest.raises(ValueError):
        compare_samples([1, 2], [1, 2], verdict_words=(NO_CHANGE, "worse"))


@pytest.mark.parametrize(
    "a, b", [([], [1.0, 2.0]), ([1.0], [1.0, 2.0]), ([1.0, 2.0], [3.0, math.nan])]
)
def test_insufficient_data(a, b):
    result = compare_samples(a, b)
    assert result.verdict == INSUFFICIENT
    assert result.ratio is None and result.ci_low is None and result.p_value is None


def test_insufficient_data_keeps_what_it_knows():
    result = compare_samples([5.0], [4.0, 6.0, math.nan])
    assert (result.n_a, result.n_b, result.median_a, result.median_b) == (1, 2, 5.0, 5.0)


# --- bootstrap_ratio_ci ----------------------------------------------------------

def test_same_data_and_seed_give_the_same_interval():
    rng = np.random.default_rng(9)
    a, b = rng.normal(100, 2, 30), rng.normal(103, 2, 30)
    assert bootstrap_ratio_ci(a, b, seed=42) == bootstrap_ratio_ci(list(a), list(b), seed=42)
    assert bootstrap_ratio_ci(a, b, seed=42)[1:] != bootstrap_ratio_ci(a, b, seed=43)[1:]


def test_ratio_of_means_and_wider_interval_at_higher_confidence():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]
    ratio, low, high = bootstrap_ratio_ci(a, b, stat="mean")
    assert ratio == pytest.approx(21.0 / 10.0)
    _, low99, high99 = bootstrap_ratio_ci(a, b, stat="mean", conf=0.99)
    assert low99 <= low <= ratio <= high <= high99


def test_bootstrap_rejects_what_has_no_ratio():
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([0.0, 1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([1.0, 2.0], [1.0, 2.0], conf=1.0)


@pytest.mark.alone
def test_bootstrap_is_vectorised():
    rng = np.random.default_rng(10)
    a, b = rng.normal(100, 1, 30), rng.normal(100, 1, 30)
    best = min(_timed(bootstrap_ratio_ci, a, b) for _ in range(5))
    assert best < 0.05  # a few ms in practice; generous for loaded CI machines


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# --- rank and count tests ----------------------------------------------------------

def test_mann_whitney_exact_and_none_cases():
    assert mann_whitney_p([1, 2], [3, 4]) == pytest.approx(1 / 3)  # 2 of C(4, 2) orderings
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert mann_whitney_p([1], [2, 3]) is None
    assert mann_whitney_p([2, 2], [2, 2, 2]) is None


def test_mann_whitney_large_samples_use_the_normal_approximation():
    rng = np.random.default_rng(11)
    p = mann_whitney_p(rng.normal(0, 1, 40), rng.normal(0, 1, 40))
    assert 0.0 < p <= 1.0


def test_fisher_zero_of_ten_against_five_of_ten():
    # Two-sided: 2 * C(10,0) C(10,5) / C(20,5) = 504 / 15504.
    assert fisher_exact_p(0, 10, 5, 10) == pytest.approx(504 / 15504)
    assert fisher_exact_p(3, 10, 3, 10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fisher_exact_p(11, 10, 0, 10)


def test_compare_failures_verdicts():
    worse = compare_failures(0, 10, 5, 10)
    assert (worse.rate_a, worse.rate_b, worse.verdict) == (0.0, 0.5, MORE_FAILURES)
    assert compare_failures(5, 10, 0, 10).verdict == FEWER_FAILURES
    assert compare_failures(0, 10, 1, 10).verdict == NO_CHANGE
    assert compare_failures(0, 10, 5, 10, alpha=0.01).verdict == NO_CHANGE
    empty = compare_failures(0, 0, 1, 10)
    assert (empty.verdict, empty.rate_a, empty.p_value) == (INSUFFICIENT, None, None)


# --- geometric_mean_ratio ----------------------------------------------------------

def test_geometric_mean_of_known_ratios():
    flat = [10.0, 10.0, 10.0]
    pairs = [(flat, [20.0] * 3), (flat, [80.0] * 3)]  # ratios 2 and 8
    assert geometric_mean_ratio(pairs) == pytest.approx((4.0, 4.0, 4.0))
    halves = [(flat, [20.0] * 3), (flat, [5.0] * 3)]  # ratios 2 and 0.5
    assert geometric_mean_ratio(halves)[0] == pytest.approx(1.0)


def test_geometric_mean_interval_covers_the_point_and_is_seeded():
    rng = np.random.default_rng(12)
    pairs = [(rng.normal(100 * k, k, 20), rng.normal(110 * k, k, 20)) for k in (1, 2, 4)]
    ratio, low, high = geometric_mean_ratio(pairs, seed=3)
    assert low < ratio < high
    assert 1.08 < low and high < 1.12
    assert geometric_mean_ratio(pairs, seed=3) == (ratio, low, high)


def test_geometric_mean_needs_pairs():
    with pytest.raises(ValueError):
        geometric_mean_ratio([])
    with pytest.raises(ValueError):
        geometric_mean_ratio([([1.0, 2.0], [1.0])])


# --- fit_power_law -----------------------------------------------------------------

def test_power_law_recovers_known_parameters():
    clip_s = np.linspace(10, 600, 12)
    peak_mem_bytes = 2e9 + 3e6 * clip_s**1.5
    fit = fit_power_law(clip_s, peak_mem_bytes)
    assert fit.c == pytest.approx(2e9, rel=1e-4)
    assert fit.a == pytest.approx(3e6, rel=1e-4)
    assert fit.p == pytest.approx(1.5, rel=1e-4)
    assert fit.r_squared == pytest.approx(1.0)
    assert len(fit.residuals) == 12


def test_power_law_with_noise_fits_well():
    rng = np.random.default_rng(13)
    x = np.linspace(5, 300, 15)
    y = (1.0 + 0.02 * x**2) * (1 + 0.01 * rng.standard_normal(15))
    fit = fit_power_law(x, y)
    assert fit.p == pytest.approx(2.0, abs=0.1)
    assert fit.r_squared > 0.99


def test_solve_for_x_inverts_predict():
    x = np.array([10.0, 50.0, 100.0, 200.0, 400.0])
    fit = fit_power_law(x, 1 + 0.1 * x**1.2)
    for x in (1.0, 75.0, 1000.0):
        assert fit.solve_for_x(fit.predict(x)) == pytest.approx(x, rel=1e-6)
    assert fit.predict(np.array([1.0, 2.0])).shape == (2,)
    assert fit.solve_for_x(fit.c - 1.0) is None  # nothing fits below the fixed cost


def test_power_law_rejects_too_few_points():
    with pytest.raises(ValueError):
        fit_power_law([1, 1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        fit_power_law([-1, 1, 2], [1, 2, 3])


# --- paired (block) design ---------------------------------------------------------------

def _drifting_rounds(rng, rounds: int, drift: float, effect: float = 1.0, noise: float = 0.02):
    """A and B alternating in rounds on a machine that slows linearly by ``drift`` over the run."""
    t = np.arange(rounds) / max(rounds - 1, 1)
    level = 100.0 * (1.0 + drift * t)
    a = level * np.exp(rng.normal(0, noise, rounds))
    b = level * (1 + drift / (2 * rounds)) * effect * np.exp(rng.normal(0, noise, rounds))  # B runs just after A
    return a, b


def test_paired_verdicts_of_identical_variants_under_5pct_drift_read_no_change_in_95pct_of_trials():
    rng = np.random.default_rng(20261130)
    trials = 300
    no_change = 0
    for trial in range(trials):
        a, b = _drifting_rounds(rng, rounds=20, drift=0.05)
        no_change += stats.compare_paired(a, b, seed=trial).verdict == stats.NO_CHANGE
    assert no_change / trials >= 0.95, no_change


def test_sequential_blocks_under_drift_give_false_verdicts_that_alternation_avoids():
    """The same drift, with A measured in the first half of the run and B in the second (the
    old sequential variants): the unpaired comparison calls identical code slower."""
    rng = np.random.default_rng(7)
    false_verdicts = 0
    for trial in range(100):
        level = 100.0 * (1.0 + 0.05 * np.arange(40) / 39)
        values = level * np.exp(rng.normal(0, 0.01, 40))
        false_verdicts += stats.compare_samples(values[:20], values[20:], seed=trial).verdict != stats.NO_CHANGE
    assert false_verdicts > 50


def test_paired_comparison_sees_a_5pct_change_through_drift():
    rng = np.random.default_rng(3)
    a, b = _drifting_rounds(rng, rounds=20, drift=0.05, effect=1.05)
    result = stats.compare_paired(a, b)
    assert result.verdict == stats.SLOWER and result.design == stats.PAIRED
    assert 1.03 < result.ratio < 1.07 and result.ci_low > 1.0
    assert result.p_value is not None and result.p_value < 0.01


def test_paired_ratio_drops_incomplete_rounds_and_needs_two():
    ratio, low, high = stats.paired_ratio_ci([10, 20, float("nan"), 40], [11, 22, 5, 44])
    assert ratio == pytest.approx(1.1) and low == pytest.approx(1.1) and high == pytest.approx(1.1)
    assert stats.compare_paired([1.0, float("nan")], [1.0, 2.0]).verdict == stats.INSUFFICIENT
    with pytest.raises(ValueError):
        stats.paired_ratio_ci([1, 2, 3], [1, 2])


def test_noise_floor_is_the_90th_percentile_of_absolute_log_changes():
    ratios = [1.01, 0.99, 1.02, 0.98, 1.03, 1 / 1.03, 1.0, 1.0, 1.0, 1.05]
    assert stats.noise_floor(ratios) == pytest.approx(np.exp(np.quantile(np.abs(np.log(ratios)), 0.9)) - 1)
    assert stats.noise_floor([1.0, 1.1]) is None


def test_processes_as_blocks_widen_the_interval_to_cover_a_per_process_offset():
    """Identical code in four pairs of processes, each pair with its own offset (the process
    effect): per round the ratio is steady, so rounds alone make a narrow, wrong interval;
    with the process pair as the block, the interval covers 1."""
    rng = np.random.default_rng(11)
    offsets = [1.05, 1.01, 1.04, 0.985]
    a = 100 * np.exp(rng.normal(0, 0.003, 24))
    b = a * np.repeat(offsets, 6) * np.exp(rng.normal(0, 0.003, 24))
    blocks = stats.contiguous_blocks(24, 4)
    assert blocks == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6
    _, low, high = stats.paired_ratio_ci(a, b)
    assert low > 1.0  # rounds only: a false "slower"
    ratio, low, high = stats.paired_ratio_ci(a, b, blocks=blocks)
    assert low < 1.0 < high
    assert stats.compare_paired(a, b, blocks=blocks).verdict == stats.NO_CHANGE
