"""Image-quality metrics: the paper's ensemble bias and CoV, PSNR, SSIM, NRMSE, ROI errors.

Formulas (``R`` realizations ``x_r``, ROI voxels ``i``; see the paper's section 4 and slides):

- ensemble bias ``BIAS = ((1/R) sum_r mu_r - T) / T`` with ``mu_r`` the ROI mean of ``x_r`` and
  ``T`` the true value (:func:`ensemble_bias`; ``x 100`` for %);
- ensemble CoV ``CoV = ((1/N) sum_{i in B} sigma_i) / mean_B`` with ``sigma_i`` the standard
  deviation across realizations (``ddof=1``) of voxel ``i`` and ``mean_B`` the ROI mean of the
  ensemble-mean image (:func:`ensemble_cov`);
- ``PSNR = 10 log10(peak^2 / MSE)`` with ``peak`` the reference's maximum (:func:`psnr`);
- SSIM (Wang et al. 2004) with an 11-tap Gaussian window (sigma 1.5) per 2-D slice,
  ``K1 = 0.01``, ``K2 = 0.03``, data range = reference max - min (:func:`ssim`);
- ``NRMSE = ||x - ref|| / ||ref||`` over a mask (:func:`nrmse`);
- ROI error (hallucination): ``(mean_ROI(x) - mean_ROI(ref)) / mean_ROI(ref)`` and the ROI
  NRMSE (:func:`roi_error`).

Every function checks shapes and finiteness and raises ``ValueError`` with the reason.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "ensemble_bias",
    "ensemble_cov",
    "interior",
    "neighbour_correlation",
    "nrmse",
    "pair_noise_cov",
    "psnr",
    "roi_error",
    "ssim",
]


def _check(a: np.ndarray, mask: np.ndarray, lead: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, np.float64)
    mask = np.asarray(mask, bool)
    if a.shape[lead:] != mask.shape:
        raise ValueError(f"image shape {a.shape} does not end with mask shape {mask.shape}")
    if not mask.any():
        raise ValueError("mask is empty")
    if not np.isfinite(a).all():
        raise ValueError("images contain NaN or infinite values")
    return a, mask


def interior(mask: np.ndarray, erode: int = 1, exclude: np.ndarray | None = None) -> np.ndarray:
    """``mask`` eroded in-plane by ``erode`` voxels, minus ``exclude`` dilated by 2 voxels."""
    st = np.zeros((1, 3, 3), bool)
    st[0] = ndimage.generate_binary_structure(2, 1)
    m = ndimage.binary_erosion(mask, st, iterations=erode) if erode else mask.copy()
    if exclude is not None:
        m &= ~ndimage.binary_dilation(exclude, st, iterations=2)
    return m


def neighbour_correlation(residuals: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Pearson correlation of noise between x- and y-adjacent pixels inside ``mask``.

    ``residuals``: ``(Z, H, W)`` or ``(R, Z, H, W)`` noise images (e.g. realization minus the
    ensemble mean, or the difference of two independent images). Returns ``(corr_x, corr_y)``.
    """
    res = np.asarray(residuals)
    if res.ndim == 3:
        res = res[None]
    res, mask = _check(res, mask, 1)
    out = []
    for axis in (2, 1):  # x (columns), then y (rows) of (Z, H, W)
        n = mask.shape[axis]
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(0, n - 1), slice(1, n)
        pair = mask[tuple(a)] & mask[tuple(b)]
        u = res[(slice(None), *a)][:, pair].ravel()
        v = res[(slice(None), *b)][:, pair].ravel()
        out.append(float(np.corrcoef(u, v)[0, 1]))
    return out[0], out[1]


def ensemble_cov(realizations: np.ndarray, mask: np.ndarray) -> float:
    """Ensemble CoV (fraction): mean over ROI voxels of the std across realizations, divided
    by the ROI mean of the ensemble mean (the slides' definition). Needs ``R >= 2``."""
    r, mask = _check(realizations, mask, 1)
    if r.shape[0] < 2:
        raise ValueError("ensemble CoV needs at least 2 realizations")
    sd = r.std(axis=0, ddof=1)[mask].mean()
    return float(sd / r.mean(axis=0)[mask].mean())


def ensemble_bias(realizations: np.ndarray, mask: np.ndarray, truth: float) -> float:
    """Ensemble bias (fraction): ``(mean_r ROI-mean_r - T) / T``."""
    r, mask = _check(realizations, mask, 1)
    if not np.isfinite(truth) or truth == 0:
        raise ValueError(f"truth must be finite and non-zero, got {truth}")
    return float((r[:, mask].mean(axis=1).mean() - truth) / truth)


def pair_noise_cov(img1: np.ndarray, img2: np.ndarray, mask: np.ndarray) -> float:
    """Noise CoV of one image from two independent, equally noisy images of the same object:
    ``std(img1 - img2) / sqrt(2) / mean``, free of the object's own structure."""
    a, mask = _check(img1, mask, 0)
    b, _ = _check(img2, mask, 0)
    return float((a - b)[mask].std() / np.sqrt(2) / (0.5 * (a + b))[mask].mean())


def _pair(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None):
    x = np.asarray(x, np.float64)
    ref = np.asarray(ref, np.float64)
    if x.shape != ref.shape:
        raise ValueError(f"image shape {x.shape} differs from reference shape {ref.shape}")
    if x.size == 0:
        raise ValueError("images are empty")
    if not (np.isfinite(x).all() and np.isfinite(ref).all()):
        raise ValueError("images contain NaN or infinite values")
    if mask is None:
        mask = np.ones(x.shape, bool)
    mask = np.asarray(mask, bool)
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {x.shape}")
    if not mask.any():
        raise ValueError("mask is empty")
    return x, ref, mask


def nrmse(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``sqrt(sum (x - ref)^2) / sqrt(sum ref^2)`` over ``mask`` (default: everywhere)."""
    x, ref, mask = _pair(x, ref, mask)
    den = np.sqrt((ref[mask] ** 2).sum())
    if den == 0:
        raise ValueError("reference is zero inside the mask")
    return float(np.sqrt(((x - ref)[mask] ** 2).sum()) / den)


def psnr(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None,
         peak: float | None = None) -> float:
    """``10 log10(peak^2 / MSE)`` in dB, MSE over ``mask``; ``peak`` defaults to ``ref.max()``.
    Identical images give ``inf``."""
    x, ref, mask = _pair(x, ref, mask)
    peak = float(ref.max()) if peak is None else float(peak)
    if not peak > 0:
        raise ValueError(f"peak must be positive, got {peak}")
    mse = float(((x - ref)[mask] ** 2).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def ssim(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None,
         data_range: float | None = None, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) of 2-D images or per slice of ``(Z, H, W)``
    volumes: Gaussian-weighted local means, variances and covariance (``sigma`` 1.5, truncated
    at 3.5 sigma: the 11-tap window), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L`` =
    ``data_range`` (default ``ref.max() - ref.min()``); the SSIM map is averaged over ``mask``.
    """
    x, ref, mask = _pair(x, ref, mask)
    if x.ndim not in (2, 3):
        raise ValueError(f"ssim takes (H, W) or (Z, H, W) images, got shape {x.shape}")
    rng = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if not rng > 0:
        raise ValueError(f"data range must be positive, got {rng}")
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    sig = (sigma, sigma) if x.ndim == 2 else (0, sigma, sigma)  # in-plane only

    def f(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sig, mode="reflect", truncate=3.5)

    mx, my = f(x), f(ref)
    vx = f(x * x) - mx * mx
    vy = f(ref * ref) - my * my
    cxy = f(x * ref) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(smap[mask].mean())


def roi_error(x: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Error of ``x`` against ``ref`` inside an ROI (e.g. an unseen feature: hallucination).

    ``mean_error``: ``(mean_ROI(x) - mean_ROI(ref)) / mean_ROI(ref)`` (signed, fraction);
    ``nrmse``: :func:`nrmse` inside the ROI; ``mae``: ``mean_ROI |x - ref| / mean_ROI(ref)``.
    """
    x, ref, mask = _pair(x, ref, mask)
    m = float(ref[mask].mean())
    if m == 0:
        raise ValueError("reference mean inside the ROI is zero")
    return {
        "mean_error": float((x[mask].mean() - m) / m),
        "nrmse": nrmse(x, ref, mask),
        "mae": float(np.abs(x - ref)[mask].mean() / abs(m)),
    }
