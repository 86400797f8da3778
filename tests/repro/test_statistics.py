"""Replicate statistics: t intervals, paired differences and verdicts on known inputs."""

import math

import numpy as np
import pytest

from tgd.repro.statistics import mean_ci, paired_ci, verdict


def test_mean_ci_matches_the_t_interval_by_hand():
    x = [1.0, 2.0, 3.0, 4.0]
    m, lo, hi = mean_ci(x)
    # mean 2.5, sd 1.2910, se 0.6455, t(0.975, 3) = 3.1824
    assert m == 2.5
    assert lo == pytest.approx(2.5 - 3.182446 * 0.645497, rel=1e-5)
    assert hi == pytest.approx(2.5 + 3.182446 * 0.645497, rel=1e-5)
    m, lo, hi = mean_ci([5.0, 5.0, 5.0])
    assert (m, lo, hi) == (5.0, 5.0, 5.0)
    assert mean_ci([1.0, 3.0], level=0.5)[2] < mean_ci([1.0, 3.0])[2]


def test_single_value_has_no_interval_and_bad_input_is_refused():
    m, lo, hi = mean_ci([3.0])
    assert m == 3.0 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=1.5)


def test_paired_ci_is_the_interval_of_the_differences():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 10, 5)   # a large shared replicate effect ...
    b = a - 1.0 + rng.normal(0, 0.01, 5)  # ... cancels in the paired difference
    m, lo, hi = paired_ci(a, b)
    assert m == pytest.approx(1.0, abs=0.02) and 0.9 < lo < 1.0 < hi < 1.1
    with pytest.raises(ValueError, match="differ in count"):
        paired_ci([1.0, 2.0], [1.0])


@pytest.mark.parametrize("lo, hi, claim, bound, want", [
    (0.5, 2.0, "greater", 0.0, "holds"),
    (-2.0, -0.5, "greater", 0.0, "does not hold"),
    (-0.5, 2.0, "greater", 0.0, "inconclusive"),
    (10.0, 40.0, "less", 50.0, "holds"),
    (55.0, 70.0, "less", 50.0, "does not hold"),
    (40.0, 60.0, "less", 50.0, "inconclusive"),
    (-5.0, 5.0, "within", 15.0, "holds"),
    (20.0, 30.0, "within", 15.0, "does not hold"),
    (-30.0, -20.0, "within", 15.0, "does not hold"),
    (10.0, 20.0, "within", 15.0, "inconclusive"),
    (float("nan"), float("nan"), "greater", 0.0, "inconclusive"),
])
def test_verdicts(lo, hi, claim, bound, want):
    assert verdict(lo, hi, claim, bound) == want


def test_verdict_rejects_bad_claims():
    with pytest.raises(ValueError, match="claim"):
        verdict(0, 1, "bigger")
    with pytest.raises(ValueError, match="out of order"):
        verdict(2, 1, "greater")
    with pytest.raises(ValueError, match="non-negative"):
        verdict(0, 1, "within", -1)
