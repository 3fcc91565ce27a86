"""Tests for level-change detection in nightly series (seeded)."""

import math

import numpy as np
import pytest

from benchrunner.analysis.changepoint import MANN_WHITNEY, MEDIAN_Z, Change, detect_changes, noise_sigma


def _nights(n: int, seed: int, noise: float = 0.005) -> np.ndarray:
    """n nightly values around 100 with relative Gaussian noise."""
    return 100.0 * (1 + noise * np.random.default_rng(seed).standard_normal(n))


def test_ten_percent_step_at_night_six_is_one_change_at_index_5():
    values = _nights(10, seed=1)
    values[5:] *= 1.10
    changes = detect_changes(values)
    assert [c.index for c in changes] == [5]
    change = changes[0]
    assert change.relative_change == pytest.approx(0.10, abs=0.01)
    assert change.before_median == pytest.approx(100, abs=1)
    assert change.p_value < 0.01
    assert change.test == MANN_WHITNEY  # 5 v 5 nights: exact MWU can reach p = 2/252


def test_step_is_found_whatever_the_noise_draw():
    for seed in range(50):
        values = _nights(10, seed)
        values[5:] *= 1.10
        assert [c.index for c in detect_changes(values)] == [5], seed


def test_flat_series_has_no_change():
    for seed in range(50):
        assert detect_changes(_nights(10, seed)) == [], seed
        assert detect_changes(_nights(30, seed)) == [], seed


@pytest.mark.parametrize("night", range(10))
@pytest.mark.parametrize("factor", [1.15, 0.85])
def test_one_night_spike_that_reverts_is_not_a_change(night, factor):
    for seed in range(20):
        values = _nights(10, seed)
        values[night] *= factor
        assert detect_changes(values) == [], seed


def test_spike_at_night_5_is_not_a_change():
    values = _nights(10, seed=1)
    values[4] *= 1.15  # night 5, 0-based index 4
    assert detect_changes(values) == []


def test_slow_drift_is_flagged():
    # +1.5% a night, compounded, for 10 nights (about +14% overall). Whatever
    # pieces PELT cuts the ramp into are merged until neighbouring pieces
    # differ by >= min_effect (5%); at least one such step is reported, upwards.
    for seed in range(50):
        values = _nights(10, seed) * 1.015 ** np.arange(10)
        changes = detect_changes(values)
        assert changes, seed
        assert all(c.relative_change >= 0.05 for c in changes), seed


def test_two_steps_in_thirty_nights_are_both_found():
    for seed in range(20):
        values = _nights(30, seed)
        values[10:] *= 1.10
        values[20:] *= 0.92
        changes = detect_changes(values)
        assert [c.index for c in changes] == [10, 20], seed
        assert changes[0].relative_change > 0 > changes[1].relative_change
        assert changes[0].after_median == changes[1].before_median


def test_step_in_the_last_two_nights_uses_the_median_z_test():
    values = _nights(10, seed=2)
    values[8:] *= 1.10
    (change,) = detect_changes(values)
    assert (change.index, change.test) == (8, MEDIAN_Z)  # 8 v 2: MWU cannot reach 0.01


def test_noiseless_step():
    changes = detect_changes([100.0] * 5 + [110.0] * 5)
    expected = Change(5, 100.0, 110.0, pytest.approx(0.1), pytest.approx(2 / 252), MANN_WHITNEY)
    assert changes == [expected]


def test_small_step_below_min_effect_is_ignored():
    values = _nights(20, seed=3, noise=0.001)
    values[10:] *= 1.03
    assert detect_changes(values) == []
    assert [c.index for c in detect_changes(values, min_effect=0.02)] == [10]


def test_short_or_constant_series():
    assert detect_changes([]) == []
    assert detect_changes([100.0, 101.0, 99.0]) == []
    assert detect_changes([100.0] * 10) == []
    assert detect_changes([0.0] * 10) == []


def test_gaps_are_rejected():
    with pytest.raises(ValueError):
        detect_changes([100.0, math.nan, 100.0, 100.0])


def test_huge_penalty_finds_no_candidates():
    values = _nights(10, seed=1)
    values[5:] *= 1.10
    assert detect_changes(values, penalty=1e9) == []


def test_noise_sigma_ignores_steps_and_drift():
    rng = np.random.default_rng(4)
    noise = rng.standard_normal(200)
    assert noise_sigma(noise) == pytest.approx(1.0, rel=0.15)
    stepped = noise + np.where(np.arange(200) >= 100, 50.0, 0.0)
    assert noise_sigma(stepped) == pytest.approx(noise_sigma(noise), rel=0.05)
    assert noise_sigma(noise + 0.3 * np.arange(200)) == pytest.approx(noise_sigma(noise), rel=0.05)
