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
                      voxel_mm: tuple[float, float, float], *, reference: np.ndarray | None = None,
                      max_fwhm_mm: float = 40.0, step_mm: float = 1.0, tol: float = 0.005
                      ) -> tuple[np.ndarray, float, bool]:
    """The single-image counterpart of :func:`gaussian_at_cov`, for data with one noisy image
    per study: ``(filtered (Z, H, W) image, FWHM mm, matched)`` whose noise in ``roi`` is
    ``target_std`` within ``tol`` relative. Noise: the standard deviation over ``roi`` of the
    filtered image minus ``reference`` (e.g. the normal-dose image), or of the filtered image
    itself without one (``roi`` must then be uniform).

    In one image that deviation is not monotonic in the width: smoothing lowers the noise, then
    raises the error as structure around the ROI blurs into it. So the widths are walked in
    ``step_mm`` steps from 0 and the first crossing of the target is refined by bisection; if
    the deviation turns up (or ``max_fwhm_mm`` is reached) first, the width of the smallest
    deviation is returned with ``matched`` False: the least noisy this filter gets."""
    img = np.asarray(image, np.float32)
    if img.ndim != 3:
        raise ValueError(f"image must be (Z, H, W), got shape {img.shape}")
    roi = np.asarray(roi, bool)
    if roi.shape != img.shape or roi.sum() < 2:
        raise ValueError("roi must be a mask of the image's shape with at least 2 voxels")
    if not np.isfinite(target_std) or target_std <= 0:
        raise ValueError(f"target_std must be a positive number, got {target_std}")
    if not (0 < step_mm <= max_fwhm_mm):
        raise ValueError(f"need 0 < step_mm <= max_fwhm_mm, got {step_mm} and {max_fwhm_mm}")
    ref = None if reference is None else np.asarray(reference, np.float32)
    if ref is not None and ref.shape != img.shape:
        raise ValueError(f"reference {ref.shape} differs in shape from the image {img.shape}")

    def filtered(fwhm):
        return gaussian_filter_ensemble(img[None], fwhm, voxel_mm)[0]

    def noise(f):
        return float((f[roi] if ref is None else (f - ref)[roi]).std())

    prev_w, prev = 0.0, noise(img)
    if prev <= target_std:
        return img.copy(), 0.0, True
    best = (prev, 0.0, img)
    w = step_mm
    while w <= max_fwhm_mm + 1e-9:
        f = filtered(w)
        n = noise(f)
        if n <= target_std:  # crossed between prev_w and w: bisection there
            lo, hi, out = prev_w, w, (f, w)
            for _ in range(30):
                if hi - lo < 1e-3:
                    break
                mid = 0.5 * (lo + hi)
                fm = filtered(mid)
                nm = noise(fm)
                if abs(nm - target_std) <= tol * target_std:
                    return fm, mid, True
                if nm > target_std:
                    lo = mid
                else:
                    hi, out = mid, (fm, mid)
            return out[0], out[1], True
        if n < best[0]:
            best = (n, w, f)
        elif n > prev:  # past the smallest deviation: the target is out of reach
            break
        prev_w, prev = w, n
        w += step_mm
    return best[2], best[1], False


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
