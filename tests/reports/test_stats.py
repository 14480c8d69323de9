"""Seed statistics against hand-computed values and SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hstu_blair.reports.stats import mean_std, paired_test, relative_gain, t_two_sided_p


def test_mean_std_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(math.sqrt(5 / 3))  # squared deviations 2.25+0.25+0.25+2.25 = 5, / (4-1)
    assert mean_std([0.3]) == (0.3, 0.0)
    with pytest.raises(ValueError, match="empty"):
        mean_std([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_std([1.0, float("nan")])


def test_t_distribution_closed_forms():
    # df=1 is the Cauchy distribution: P(|T| >= t) = 1 - (2/pi) atan(t).
    # df=2 has P(|T| >= t) = 1 - t / sqrt(t^2 + 2).
    for t in [0.0, 1e-8, 0.3, 1.0, 2.0, 10.0, 1e4]:
        assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-12, abs=1e-15)
        assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-10, abs=1e-15)
    assert t_two_sided_p(math.inf, 3) == 0.0


def test_paired_test_hand_computed():
    # Differences 1, 2, 3: mean 2, sample std 1, t = 2 / (1 / sqrt(3)) = sqrt(12), df = 2,
    # p = 1 - sqrt(12) / sqrt(12 + 2) = 0.0741799...
    assert paired_test([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-9)
    # Differences 1, 3: mean 2, std sqrt(2), t = 2, df = 1, p = 1 - (2/pi) atan(2) = 0.2951672...
    assert paired_test([1.0, 3.0], [0.0, 0.0]) == pytest.approx(1 - 2 / math.pi * math.atan(2), rel=1e-9)
    # Swapping the arguments flips the sign of t, not the two-sided p-value.
    assert paired_test([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(paired_test([2, 4, 6], [1, 2, 3]))


def test_paired_test_against_scipy_ttest_rel():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n in [2, 3, 5, 10, 30]:
        a, b = rng.normal(0.1, 0.02, n), rng.normal(0.1, 0.02, n)
        assert paired_test(a, b) == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9)
        assert t_two_sided_p(2.5, n - 1) == pytest.approx(2 * scipy_stats.t.sf(2.5, n - 1), rel=1e-9)


def test_paired_test_constant_differences_and_bad_input():
    assert paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0]) == 0.0
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_test([1.0], [2.0])
    with pytest.raises(ValueError, match="non-finite"):
        paired_test([1.0, math.inf], [1.0, 2.0])


def test_relative_gain():
    assert relative_gain(0.0416, 0.0306) == pytest.approx(35.947712, rel=1e-6)  # SPEC §7.1 item 13
    assert relative_gain(0.5, 1.0) == -50.0
    with pytest.raises(ValueError, match="baseline of 0"):
        relative_gain(0.1, 0.0)
