"""Trivial baselines every result is shown beside: a Gaussian filter at matched noise.

A denoising net is only worth its training if it beats linear smoothing at the same noise
level. :func:`gaussian_at_cov` filters an ensemble of noisy images with the isotropic Gaussian
(FWHM in mm, same physical width in-plane and axially) whose ensemble CoV in ``roi`` equals a
target CoV (e.g. the v2-net's), found by bisection on the width; the ensemble CoV falls
monotonically with the width for any non-degenerate noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tgd.evaluation.metrics import ensemble_cov

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def gaussian_filter_ensemble(ensemble: np.ndarray, fwhm_mm: float,
                             voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """Each ``(Z, H, W)`` image of ``(R, Z, H, W)`` filtered with a Gaussian of ``fwhm_mm``
    (``voxel_mm``: slice thickness, row and column spacing)."""
    ens = np.asarray(ensemble, np.float32)
    if ens.ndim != 4:
        raise ValueError(f"ensemble must be (R, Z, H, W), got shape {ens.shape}")
    if fwhm_mm < 0 or not np.isfinite(fwhm_mm):
        raise ValueError(f"fwhm_mm must be finite and >= 0, got {fwhm_mm}")
    if fwhm_mm == 0:
        return ens.copy()
    sigma = [0.0] + [fwhm_mm / FWHM_PER_SIGMA / float(v) for v in voxel_mm]
    return ndimage.gaussian_filter(ens, sigma, mode="nearest")


def gaussian_at_cov(ensemble: np.ndarray, roi: np.ndarray, target_cov: float,
                    voxel_mm: tuple[float, float, float], *, max_fwhm_mm: float = 40.0,
                    tol: float = 0.005) -> tuple[np.ndarray, float]:
    """``(filtered ensemble, FWHM mm)`` whose ensemble CoV in ``roi`` is ``target_cov``
    (a fraction, as :func:`tgd.evaluation.metrics.ensemble_cov`) within ``tol`` relative.

    A target at or above the input's CoV returns the input (FWHM 0); one below what
    ``max_fwhm_mm`` reaches raises ValueError.
    """
    ens = np.asarray(ensemble, np.float32)
    if not np.isfinite(target_cov) or target_cov <= 0:
        raise ValueError(f"target_cov must be a positive number, got {target_cov}")
    if ensemble_cov(ens, roi) <= target_cov:
        return ens.copy(), 0.0
    hi_img = gaussian_filter_ensemble(ens, max_fwhm_mm, voxel_mm)
    if ensemble_cov(hi_img, roi) > target_cov:
        raise ValueError(f"a Gaussian of {max_fwhm_mm} mm FWHM does not reach CoV {target_cov}")
    lo, hi, best = 0.0, max_fwhm_mm, (hi_img, max_fwhm_mm)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        img = gaussian_filter_ensemble(ens, mid, voxel_mm)
        cov = ensemble_cov(img, roi)
        if abs(cov - target_cov) <= tol * target_cov:
            return img, mid
        if cov > target_cov:
            lo = mid
        else:
            hi, best = mid, (img, mid)
    return best
