"""Trivial baselines every result is shown beside: a Gaussian filter at matched noise.

A denoising net is only worth its training if it beats linear smoothing at the same noise
level. :func:`gaussian_at_cov` filters an ensemble of noisy images with the isotropic Gaussian
(FWHM in mm, same physical width in-plane and axially) whose ensemble CoV in ``roi`` equals a
target CoV (e.g. the v2-net's), found by bisection on the width; the ensemble CoV falls
monotonically with the width for any non-degenerate noise. :func:`gaussian_at_noise` does
the same for one image per study, matching the spatial standard deviation in a uniform region.
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
    return _matched_fwhm(ens, lambda e: ensemble_cov(e, roi), target_cov, "CoV", voxel_mm,
                         max_fwhm_mm, tol)


def gaussian_at_noise(image: np.ndarray, roi: np.ndarray, target_std: float,
                      voxel_mm: tuple[float, float, float], *, max_fwhm_mm: float = 40.0,
                      tol: float = 0.005) -> tuple[np.ndarray, float]:
    """The single-image counterpart of :func:`gaussian_at_cov`: ``(filtered (Z, H, W) image,
    FWHM mm)`` whose standard deviation over the voxels of ``roi`` (a uniform region, where
    that deviation is noise) is ``target_std`` within ``tol`` relative; for data with one
    noisy image per study (no ensemble of realizations)."""
    img = np.asarray(image, np.float32)
    if img.ndim != 3:
        raise ValueError(f"image must be (Z, H, W), got shape {img.shape}")
    roi = np.asarray(roi, bool)
    if roi.shape != img.shape or roi.sum() < 2:
        raise ValueError("roi must be a mask of the image's shape with at least 2 voxels")
    if not np.isfinite(target_std) or target_std <= 0:
        raise ValueError(f"target_std must be a positive number, got {target_std}")
    filtered, fwhm = _matched_fwhm(img[None], lambda e: float(e[0][roi].std()), target_std,
                                   "standard deviation", voxel_mm, max_fwhm_mm, tol)
    return filtered[0], fwhm


def _matched_fwhm(ens: np.ndarray, measure, target: float, what: str,
                  voxel_mm: tuple[float, float, float], max_fwhm_mm: float,
                  tol: float) -> tuple[np.ndarray, float]:
    """Bisection on the FWHM until ``measure`` of the filtered ensemble is ``target``."""
    if measure(ens) <= target:
        return ens.copy(), 0.0
    hi_img = gaussian_filter_ensemble(ens, max_fwhm_mm, voxel_mm)
    if measure(hi_img) > target:
        raise ValueError(f"a Gaussian of {max_fwhm_mm} mm FWHM does not reach {what} {target}")
    lo, hi, best = 0.0, max_fwhm_mm, (hi_img, max_fwhm_mm)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        img = gaussian_filter_ensemble(ens, mid, voxel_mm)
        value = measure(img)
        if abs(value - target) <= tol * target:
            return img, mid
        if value > target:
            lo = mid
        else:
            hi, best = mid, (img, mid)
    return best
