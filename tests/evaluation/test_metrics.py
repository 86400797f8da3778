"""Metrics on synthetic arrays with known answers."""

import numpy as np
import pytest

from tgd.evaluation.metrics import ensemble_bias, ensemble_cov, nrmse, psnr, roi_error, ssim


def test_constant_biased_ensemble_gives_that_bias():
    rng = np.random.default_rng(0)
    truth = 5.0
    mask = np.zeros((4, 16, 16), bool)
    mask[1:3, 4:9, 4:9] = True
    # zero-mean noise per realization inside the ROI, plus a constant -6.3 % bias
    noise = rng.normal(0, 1, (10, 4, 16, 16))
    noise -= noise[:, mask].mean(axis=1)[:, None, None, None]
    ens = truth * (1 - 0.063) + noise
    assert ensemble_bias(ens, mask, truth) == pytest.approx(-0.063, abs=1e-12)
    assert ensemble_bias(np.full((3, 4, 16, 16), 6.0), mask, 5.0) == pytest.approx(0.2)


def test_pure_gaussian_noise_gives_its_cov():
    rng = np.random.default_rng(1)
    mean, sd = 10.0, 1.5
    ens = rng.normal(mean, sd, (400, 2, 32, 32))
    mask = np.ones((2, 32, 32), bool)
    # E[sample sd] is slightly below sd (c4 factor ~ 1 - 1/(4R)), so 0.5 % tolerance
    assert ensemble_cov(ens, mask) == pytest.approx(sd / mean, rel=5e-3)
    assert ensemble_cov(np.full((5, 2, 32, 32), 3.0), mask) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        ensemble_cov(ens[:1], mask)


def test_psnr_nrmse_known_values():
    ref = np.zeros((8, 8))
    ref[0, 0] = 2.0  # peak 2
    x = ref + 0.1  # MSE 0.01 everywhere
    assert psnr(x, ref) == pytest.approx(10 * np.log10(4 / 0.01))
    assert psnr(ref, ref) == float("inf")
    r = np.full((4, 4), 2.0)
    assert nrmse(r * 1.1, r) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="differs"):
        nrmse(r, r[:2])
    with pytest.raises(ValueError, match="NaN"):
        psnr(r * np.nan, r)


def test_ssim_identity_noise_and_contrast():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:48, :48]
    ref = 1 + np.sin(xx / 4.0) * np.cos(yy / 5.0)
    assert ssim(ref, ref) == pytest.approx(1.0)
    low = ssim(ref + rng.normal(0, 0.5, ref.shape), ref)
    high = ssim(ref + rng.normal(0, 0.05, ref.shape), ref)
    assert 0 < low < high < 1
    # a pure mean shift keeps structure and contrast: only the luminance term drops
    assert 0.9 < ssim(ref + 0.1, ref) < 1
    vol = np.stack([ref, ref])
    assert ssim(vol, vol) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="data range"):
        ssim(np.ones((8, 8)), np.ones((8, 8)))


def test_roi_error_hallucination():
    ref = np.full((2, 10, 10), 1.0)
    roi = np.zeros_like(ref, bool)
    roi[:, 2:4, 2:4] = True
    ref[roi] = 50.0
    x = ref.copy()
    x[roi] = 40.0  # the net flattens the hot unseen feature by 20 %
    x[~roi] = 7.0  # errors outside the ROI do not count
    e = roi_error(x, ref, roi)
    assert e["mean_error"] == pytest.approx(-0.2)
    assert e["nrmse"] == pytest.approx(0.2)
    assert e["mae"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="empty"):
        roi_error(x, ref, np.zeros_like(roi))


def _pairs():
    """(noisy, reference) pairs: smooth structure plus noise, a blocky image with an offset
    and gain error, and a noisy 3-D stack."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :40]
    ref = 10 + 5 * np.sin(xx / 6.0) * np.cos(yy / 9.0)
    yield ref + rng.normal(0, 0.8, ref.shape), ref
    blocks = np.kron(rng.uniform(0, 4, (6, 5)), np.ones((8, 8)))
    yield 1.1 * blocks + 0.3, blocks
    vol = rng.gamma(4.0, 1.0, (3, 32, 36))
    yield vol + rng.normal(0, 0.5, vol.shape), vol


@pytest.mark.parametrize("case", range(3))
def test_psnr_and_ssim_agree_with_scikit_image(case):
    """tgd's PSNR and SSIM are the textbook ones: scikit-image's, with its Gaussian-window
    settings (sigma 1.5, population covariance) and its border crop (5 pixels) as the mask."""
    metrics = pytest.importorskip("skimage.metrics")
    x, ref = list(_pairs())[case]
    peak = float(ref.max())
    assert psnr(x, ref) == pytest.approx(
        metrics.peak_signal_noise_ratio(ref, x, data_range=peak), rel=1e-12)
    rng_ = float(ref.max() - ref.min())
    interior = np.zeros(x.shape, bool)
    interior[..., 5:-5, 5:-5] = True
    theirs = np.mean([metrics.structural_similarity(
        a, b, data_range=rng_, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for a, b in zip(x.reshape(-1, *x.shape[-2:]), ref.reshape(-1, *ref.shape[-2:]),
                        strict=True)])
    assert ssim(x, ref, mask=interior) == pytest.approx(theirs, abs=1e-9)
    assert theirs < 0.99  # the pairs differ: the comparison is not between two ones
