import numpy as np
import pytest

from tgd.repro.sim.acquisition import poisson_counts, split_counts, thin_counts

N = 200_000
LAM = 20.0


def _poisson(seed=0):
    return np.random.default_rng(seed).poisson(LAM, size=N)


def _assert_mean(x, mean):
    # 5 standard errors of a Poisson sample mean: fails by chance with p ~ 6e-7.
    assert abs(x.mean() - mean) < 5 * np.sqrt(mean / x.size)


def _assert_uncorrelated(a, b):
    r = np.corrcoef(a, b)[0, 1]
    assert abs(r) < 5 / np.sqrt(a.size)


def test_binomial_thinning_gives_poisson_with_scaled_mean():
    y = _poisson()
    for p in (0.05, 0.1, 0.3):
        t = thin_counts(y, p, np.random.default_rng(1))
        assert (t <= y).all() and (t >= 0).all()
        _assert_mean(t, p * LAM)
        # Poisson: variance equals mean (SE of a sample variance ~ sqrt(2/N) var for large mean)
        assert abs(t.var() / t.mean() - 1) < 5 * np.sqrt(2 / N) + 5 * np.sqrt(1 / (p * LAM * N))
    assert np.array_equal(thin_counts(y, 1.0, np.random.default_rng(0)), y)


def test_half_split_is_two_independent_poisson_halves():
    y = _poisson()
    a, b = split_counts(y, [0.5, 0.5], np.random.default_rng(2))
    assert np.array_equal(a + b, y)
    _assert_mean(a, LAM / 2)
    _assert_mean(b, LAM / 2)
    _assert_uncorrelated(a, b)  # independent although they sum to the same data


def test_multinomial_split_into_ten_realizations():
    y = _poisson()
    parts = split_counts(y, [0.1] * 10, np.random.default_rng(3))
    assert np.array_equal(sum(parts), y)
    for p in parts:
        _assert_mean(p, LAM / 10)
    for i in range(3):
        _assert_uncorrelated(parts[i], parts[i + 1])
    # Fractions summing to < 1 discard the rest: 5 x 60 s from 600 s.
    parts = split_counts(y, [0.1] * 5, np.random.default_rng(4))
    _assert_mean(sum(parts), LAM / 2)


def test_poisson_counts_mean_and_determinism():
    rate = np.full(N, 0.1)
    c = poisson_counts(rate, 60, np.random.default_rng(5))
    _assert_mean(c, 6.0)
    assert np.array_equal(c, poisson_counts(rate, 60, np.random.default_rng(5)))


def test_counting_functions_reject_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="fraction"):
        thin_counts(np.ones(3, int), 1.5, rng)
    with pytest.raises(ValueError, match="fraction"):
        thin_counts(np.ones(3, int), 0.0, rng)
    with pytest.raises(TypeError, match="integer"):
        thin_counts(np.ones(3), 0.5, rng)
    with pytest.raises(ValueError, match="non-negative"):
        thin_counts(-np.ones(3, int), 0.5, rng)
    with pytest.raises(ValueError, match="sum to <= 1"):
        split_counts(np.ones(3, int), [0.6, 0.6], rng)
    with pytest.raises(ValueError, match="positive"):
        split_counts(np.ones(3, int), [0.5, -0.1], rng)
    with pytest.raises(ValueError, match="finite"):
        poisson_counts(np.array([1.0, np.nan]), 10, rng)
    with pytest.raises(ValueError, match="duration"):
        poisson_counts(np.ones(3), 0, rng)
