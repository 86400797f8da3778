"""The Gaussian-filter baseline reaches the noise level it is asked for."""

import numpy as np
import pytest

from tgd.evaluation.baselines import gaussian_at_cov, gaussian_at_noise, gaussian_filter_ensemble
from tgd.evaluation.metrics import ensemble_cov


@pytest.fixture
def noisy():
    rng = np.random.default_rng(1)
    truth = np.ones((6, 24, 24), np.float32)
    ens = truth + rng.normal(0, 0.2, (8, 6, 24, 24)).astype(np.float32)
    roi = np.zeros((6, 24, 24), bool)
    roi[1:5, 6:18, 6:18] = True
    return ens, roi


def test_matches_the_target_cov(noisy):
    ens, roi = noisy
    c0 = ensemble_cov(ens, roi)
    out, fwhm = gaussian_at_cov(ens, roi, c0 / 3, (4.0, 4.0, 4.0))
    assert ensemble_cov(out, roi) == pytest.approx(c0 / 3, rel=0.01)
    assert 0 < fwhm < 40 and out.shape == ens.shape
    # wider filters are smoother
    assert ensemble_cov(gaussian_filter_ensemble(ens, 2 * fwhm, (4, 4, 4)), roi) < c0 / 3


def test_target_above_the_input_returns_the_input(noisy):
    ens, roi = noisy
    out, fwhm = gaussian_at_cov(ens, roi, 10.0, (4.0, 4.0, 4.0))
    assert fwhm == 0 and np.array_equal(out, ens)


def test_bad_input(noisy):
    ens, roi = noisy
    with pytest.raises(ValueError, match="target_cov"):
        gaussian_at_cov(ens, roi, float("nan"), (4, 4, 4))
    with pytest.raises(ValueError, match="does not reach"):
        gaussian_at_cov(ens, roi, 1e-6, (4, 4, 4), max_fwhm_mm=1.0)
    with pytest.raises(ValueError, match="R, Z, H, W"):
        gaussian_filter_ensemble(ens[0], 2.0, (4, 4, 4))


def test_single_image_matches_the_target_noise(noisy):
    ens, roi = noisy
    img = ens[0]
    s0 = float(img[roi].std())
    out, fwhm, matched = gaussian_at_noise(img, roi, s0 / 2, (4.0, 4.0, 4.0))
    assert matched and 0 < fwhm < 40 and out.shape == img.shape
    assert float(out[roi].std()) == pytest.approx(s0 / 2, rel=0.01)
    same, zero, ok = gaussian_at_noise(img, roi, 2 * s0, (4.0, 4.0, 4.0))
    assert ok and zero == 0 and np.array_equal(same, img)
    with pytest.raises(ValueError, match="Z, H, W"):
        gaussian_at_noise(ens, roi, s0, (4, 4, 4))
    with pytest.raises(ValueError, match="roi"):
        gaussian_at_noise(img, roi[:3], s0, (4, 4, 4))
    with pytest.raises(ValueError, match="target_std"):
        gaussian_at_noise(img, roi, -1.0, (4, 4, 4))
    with pytest.raises(ValueError, match="reference"):
        gaussian_at_noise(img, roi, s0, (4, 4, 4), reference=img[:2])


def test_single_image_against_a_reference_stops_at_the_smallest_error():
    # a bright square beside the ROI: wide filters blur it in, so the error against the truth
    # falls and then rises; a target below its minimum gives the best width, unmatched
    rng = np.random.default_rng(0)
    truth = np.ones((4, 40, 40), np.float32)
    truth[:, 5:15, 5:15] = 5.0
    img = truth + rng.normal(0, 0.3, truth.shape).astype(np.float32)
    roi = np.zeros(truth.shape, bool)
    roi[:, 18:30, 18:30] = True
    errs = {w: float((gaussian_at_noise(img, roi, 1e-9, (2, 2, 2), reference=truth,
                                        max_fwhm_mm=w)[0] - truth)[roi].std())
            for w in (2.0, 40.0)}
    out, fwhm, matched = gaussian_at_noise(img, roi, 1e-9, (2.0, 2.0, 2.0), reference=truth)
    assert not matched and 0 < fwhm < 40
    err = float((out - truth)[roi].std())
    assert err <= errs[2.0] + 1e-6 and err < float((img - truth)[roi].std())
    # a reachable target is matched on the falling branch
    target = 0.5 * (float((img - truth)[roi].std()) + err)
    out, fwhm2, matched = gaussian_at_noise(img, roi, target, (2.0, 2.0, 2.0), reference=truth)
    assert matched and fwhm2 < fwhm
    assert float((out - truth)[roi].std()) == pytest.approx(target, rel=0.01)
