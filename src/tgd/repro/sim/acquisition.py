"""Emission data: expected sinograms from a phantom, Poisson counts, list-mode-like thinning.

The data are generated on the phantom's fine grid with an exact strip-integral projector and the
true system PSF, so they are not in the range of the reconstruction model (no inverse crime).
Rates are counts per second per sinogram bin; a scan of ``d`` seconds has mean ``d * rate``
(decay during the scan is neglected: 0.6 % over 600 s for F-18).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from tgd.repro.sim.phantom import Phantom
from tgd.repro.sim.projector import Geometry, get_projector
from tgd.repro.sim.recon import FWHM_TO_SIGMA, parallax_blur

__all__ = [
    "ExpectedData",
    "ScannerModel",
    "expected_data",
    "poisson_counts",
    "split_counts",
    "thin_counts",
]


# The sampling at which ScannerModel.count_scale is stated (the 128 x 128, 4-mm grid).
REF_BIN_MM, REF_VIEWS, REF_SLICE_MM = 4.0, 128, 4.0


@dataclass(frozen=True)
class ScannerModel:
    """True system: resolution, count scale and the scatter/randoms background.

    ``count_scale`` is the sinogram counts per second per unit line integral (kBq/mL x mm)
    through a non-attenuating object, for a bin of the *reference sampling*: 4-mm radial bins,
    128 views over 180 deg, 4-mm slices. A bin of another sampling collects in proportion to
    its radial width, its angular width and its slice thickness (:meth:`bin_scale`), so the
    total counts of a patient depend on the dose and duration, never on the matrix. It was
    calibrated so that a single 60-s v2 image of a low-BMI patient on the reference 128 x 128
    grid has a liver CoV of ~15 % (see docs/pet_simulator.md).

    True resolution: an isotropic Gaussian of ``psf_fwhm_mm`` (crystal size, positron range,
    acollinearity; ``axial_psf_fwhm_mm`` axially) and, along the radial direction only, the
    parallax (depth-of-interaction) error of a ring of radius ``ring_radius_mm`` whose crystals
    stop photons over an effective depth of ``doi_fwhm_mm``: a line of response at distance
    ``s`` from the centre enters the crystals obliquely and is blurred by
    ``doi_fwhm_mm * s / sqrt(R^2 - s^2)`` (FWHM), so radial resolution degrades off-centre.
    Scatter and randoms fractions (of prompts) grow with the slice's water-equivalent diameter D:
    ``SF = sf_25cm + sf_per_cm * (D - 25 cm)``, likewise RF.
    """

    psf_fwhm_mm: float = 5.0
    axial_psf_fwhm_mm: float = 5.0
    count_scale: float = 0.006
    sf_25cm: float = 0.28
    sf_per_cm: float = 0.012
    rf_25cm: float = 0.15
    rf_per_cm: float = 0.010
    scatter_fwhm_mm: float = 150.0
    doi_fwhm_mm: float = 10.0
    ring_radius_mm: float = 410.0

    def __post_init__(self) -> None:
        for k, v in self.__dict__.items():
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"ScannerModel.{k} must be finite and >= 0, got {v!r}")
        if self.count_scale <= 0:
            raise ValueError("ScannerModel.count_scale must be > 0")
        if self.doi_fwhm_mm > 0 and self.ring_radius_mm <= 0:
            raise ValueError("ScannerModel.ring_radius_mm must be > 0 when doi_fwhm_mm > 0")

    def bin_scale(self, geom: Geometry, slice_mm: float) -> float:
        """Counts per second per unit line integral in one bin of ``geom`` with slices of
        ``slice_mm``: ``count_scale`` times the bin's radial, angular and axial extent relative
        to the reference sampling (4-mm bins, 128 views over 180 deg, 4-mm slices)."""
        return self.count_scale * (geom.bin_mm / REF_BIN_MM) * (REF_VIEWS / geom.n_angles) * (
            float(slice_mm) / REF_SLICE_MM)


@dataclass
class ExpectedData:
    """Expected count rates ``(n_rows, Z)`` (per s) and the reconstruction's model factors."""

    trues: torch.Tensor
    scatter: torch.Tensor
    randoms: torch.Tensor
    multiplicative: torch.Tensor  # bin_scale x attenuation factors from the coarse mu-map
    diameter_cm: np.ndarray
    scatter_fraction: np.ndarray
    randoms_fraction: np.ndarray

    @property
    def background(self) -> torch.Tensor:
        return self.scatter + self.randoms

    @property
    def prompts(self) -> torch.Tensor:
        return self.trues + self.scatter + self.randoms


def _axial_bin(v: np.ndarray, margin: int, ov: int, nz: int) -> np.ndarray:
    inner = v[margin: margin + nz * ov]
    return inner.reshape(nz, ov, *inner.shape[1:]).mean(axis=1)


def expected_data(phantom: Phantom, geom: Geometry, scanner: ScannerModel) -> ExpectedData:
    """Project the phantom through the true system into expected trues, scatter and randoms."""
    ov, nz = phantom.oversample, phantom.activity.shape[0]
    if geom.shape != phantom.activity.shape[1] or not math.isclose(geom.pixel_mm,
                                                                    phantom.pixel_mm):
        raise ValueError(
            f"geometry {geom.shape} x {geom.pixel_mm} mm does not match the phantom "
            f"{phantom.activity.shape[1]} x {phantom.pixel_mm} mm"
        )
    fine_px, fine_sl = phantom.pixel_mm / ov, phantom.slice_mm / ov
    sig = (scanner.axial_psf_fwhm_mm * FWHM_TO_SIGMA / fine_sl,
           scanner.psf_fwhm_mm * FWHM_TO_SIGMA / fine_px,
           scanner.psf_fwhm_mm * FWHM_TO_SIGMA / fine_px)
    act = ndimage.gaussian_filter(phantom.activity_fine, sig, mode="constant", truncate=3.5)
    act = _axial_bin(act, phantom.margin, ov, nz)
    mu = _axial_bin(phantom.mu_fine, phantom.margin, ov, nz) * 0.1  # 1/cm -> 1/mm
    fine = get_projector(geom.fine(ov), "strip", 1, 1, False)
    both = torch.from_numpy(np.concatenate([act, mu]).astype(np.float32))
    sino = fine.forward(both.reshape(2 * nz, -1).T.contiguous())
    line_act, line_mu = sino[:, :nz], sino[:, nz:]
    if scanner.doi_fwhm_mm > 0:
        k = parallax_blur(geom, scanner.doi_fwhm_mm, scanner.ring_radius_mm)
        line_act = (k @ line_act.reshape(geom.n_angles, geom.n_bins, nz)).reshape(-1, nz)
    scale = scanner.bin_scale(geom, phantom.slice_mm)
    trues = scale * torch.exp(-line_mu) * line_act

    body_px = (phantom.mu > 0.05).sum(axis=(1, 2)) * phantom.pixel_mm**2
    diameter = 2.0 * np.sqrt(body_px / math.pi) / 10.0
    sf = np.clip(scanner.sf_25cm + scanner.sf_per_cm * (diameter - 25.0), 0.0, 0.8)
    rf = np.clip(scanner.rf_25cm + scanner.rf_per_cm * (diameter - 25.0), 0.0, 0.8)

    t3 = trues.T.reshape(nz, geom.n_angles, geom.n_bins).numpy()
    s_sig = scanner.scatter_fwhm_mm * FWHM_TO_SIGMA / geom.bin_mm
    shape = ndimage.gaussian_filter1d(t3, s_sig, axis=2, mode="constant", truncate=4.0)
    shape = ndimage.gaussian_filter1d(shape, max(1.0, geom.n_angles / 32), axis=1, mode="wrap")
    t_sum = t3.sum(axis=(1, 2))
    s_sum = sf / (1 - sf) * t_sum
    scatter = shape * (s_sum / np.maximum(shape.sum(axis=(1, 2)), 1e-30))[:, None, None]
    r_sum = rf / (1 - rf) * (t_sum + s_sum)
    randoms = np.broadcast_to((r_sum / geom.n_rows)[:, None, None], scatter.shape)

    coarse = get_projector(geom, "pixel", 2, 1)
    mu_c = torch.from_numpy((phantom.mu * 0.1).reshape(nz, -1).T.copy())
    mult = scale * torch.exp(-coarse.forward(mu_c))

    def cols(a):
        return torch.from_numpy(np.ascontiguousarray(a, np.float32).reshape(nz, -1).T.copy())

    return ExpectedData(
        trues=trues.contiguous(), scatter=cols(scatter), randoms=cols(randoms),
        multiplicative=mult, diameter_cm=diameter, scatter_fraction=sf, randoms_fraction=rf,
    )


def _check_counts(counts: np.ndarray) -> None:
    if not np.issubdtype(counts.dtype, np.integer):
        raise TypeError(f"counts must be an integer array, got {counts.dtype}")
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be non-negative")


def poisson_counts(rate: torch.Tensor | np.ndarray, duration_s: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Poisson counts with mean ``rate * duration_s`` (int64)."""
    lam = np.asarray(rate, np.float64) * float(duration_s)
    if not np.all(np.isfinite(lam)) or lam.min(initial=0.0) < 0:
        raise ValueError("rates must be finite and non-negative")
    if duration_s <= 0:
        raise ValueError(f"duration must be > 0 s, got {duration_s}")
    return rng.poisson(lam)


def thin_counts(counts: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Keep each count independently with probability ``fraction`` (list-mode sub-sampling).

    Thinning Poisson(m) data gives Poisson(fraction * m) data.
    """
    counts = np.asarray(counts)
    _check_counts(counts)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"thinning fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return counts.copy()
    return rng.binomial(counts, fraction)


def split_counts(counts: np.ndarray, fractions: list[float] | tuple[float, ...],
                 rng: np.random.Generator) -> list[np.ndarray]:
    """Multinomially split every bin's counts into parts with the given fractions.

    Fractions must be positive and sum to at most 1 (the rest is discarded). For Poisson input
    the parts are independent Poisson variables (the splitting theorem).
    """
    counts = np.asarray(counts)
    _check_counts(counts)
    fr = np.asarray(fractions, np.float64)
    if fr.ndim != 1 or fr.size < 1 or np.any(fr <= 0) or fr.sum() > 1 + 1e-12:
        raise ValueError(f"fractions must be positive and sum to <= 1, got {list(fractions)}")
    parts, left, p_left = [], counts.copy(), 1.0
    for f in fr:
        p = min(1.0, f / p_left) if p_left > 0 else 0.0
        part = rng.binomial(left, p)
        parts.append(part)
        left = left - part
        p_left -= f
    return parts
