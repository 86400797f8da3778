"""Image-quality measures used to characterise the simulator (and the paper's bias / CoV)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "ensemble_bias",
    "ensemble_cov",
    "interior",
    "neighbour_correlation",
    "pair_noise_cov",
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
