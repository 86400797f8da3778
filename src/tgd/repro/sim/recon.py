"""Ordinary-Poisson OSEM with an optional resolution (PSF) model and post-filter, batched over
slices.

Forward model of one slice: ``ybar = n * B(P x) + r``, with ``P`` the pixel-driven projector,
``B`` the version's *model* of the system resolution, ``n`` the multiplicative factors
(sensitivity x attenuation x duration) and ``r`` the expected scatter + randoms counts. Update
per subset ``S``: ``x <- x / (A_S^T n_S) * A_S^T (n_S y_S / (n_S A_S x + r_S))`` with
``A = B P``.

``B`` acts in sinogram space, per view: a spatially invariant Gaussian PSF (the equivalent
radial blur of its projection, ``sinogram_psf``), optionally followed by the radially variant
parallax (depth-of-interaction) blur of the bins (``parallax_blur``), which makes the modelled
resolution position-dependent. ``B`` is then not symmetric; the back projection uses ``B^T``.
A protocol without resolution modelling has ``B = I``.

The protocol's in-plane Gaussian post-filter (``postfilter_fwhm_mm``, 0 = none) is part of the
reconstruction: it is applied to every image the protocol produces, so a noiseless reference
(the expected counts reconstructed by the same protocol) is filtered as its noisy images are.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from tgd.repro.sim.projector import Geometry, get_projector

__all__ = [
    "RECON_VERSIONS",
    "ReconConfig",
    "osem",
    "parallax_blur",
    "parallax_fwhm_mm",
    "postfilter",
    "resolution_model",
    "sinogram_psf",
]

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass(frozen=True)
class ReconConfig:
    """One reconstruction protocol: the modelled resolution and the OSEM settings.

    ``psf_fwhm_mm``: the spatially invariant Gaussian PSF (FWHM along x and y, mm);
    ``doi_fwhm_mm`` / ``ring_radius_mm``: the modelled parallax blur (0 = not modelled, so the
    modelled resolution is the same everywhere); ``postfilter_fwhm_mm``: the in-plane Gaussian
    applied to the final image (0 = none).
    """

    name: str
    psf_fwhm_mm: tuple[float, float]
    iterations: int = 3
    subsets: int = 8
    doi_fwhm_mm: float = 0.0
    ring_radius_mm: float = 410.0
    postfilter_fwhm_mm: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "psf_fwhm_mm", tuple(self.psf_fwhm_mm))  # hashable (cached)
        if len(self.psf_fwhm_mm) != 2 or any(
            not math.isfinite(f) or f < 0 for f in self.psf_fwhm_mm
        ):
            raise ValueError(f"psf_fwhm_mm must be two finite values >= 0, got {self.psf_fwhm_mm}")
        if self.iterations < 1 or self.subsets < 1:
            raise ValueError("iterations and subsets must be >= 1")
        for k in ("doi_fwhm_mm", "ring_radius_mm", "postfilter_fwhm_mm"):
            v = getattr(self, k)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{k} must be finite and >= 0, got {v!r}")
        if self.doi_fwhm_mm > 0 and self.ring_radius_mm <= 0:
            raise ValueError("ring_radius_mm must be > 0 when doi_fwhm_mm > 0")


# The true system (acquisition.ScannerModel) has a 5-mm isotropic PSF plus the parallax blur of
# a 410-mm-radius ring with a 10-mm effective interaction depth (radial FWHM 5.6 mm at 10 cm,
# 7.5 mm at 20 cm from the centre).
# The two protocols are an older and a newer clinical reconstruction of the same counts:
# v1 models no resolution, runs 3 iterations x 8 subsets and smooths with a 6-mm Gaussian
# post-filter; v2 models the true, position-dependent resolution, runs 3 iterations x 16
# subsets and is not filtered. v1 images are smoother with a coarser noise grain and lower
# lesion recovery (numbers in docs/pet_simulator.md).
RECON_VERSIONS = {
    "v1": ReconConfig("v1", (0.0, 0.0), iterations=3, subsets=8, postfilter_fwhm_mm=6.0),
    "v2": ReconConfig("v2", (5.0, 5.0), iterations=3, subsets=16, doi_fwhm_mm=10.0,
                      ring_radius_mm=410.0),
}


def parallax_fwhm_mm(s_mm, doi_fwhm_mm: float, ring_radius_mm: float):
    """Radial FWHM (mm) of the parallax blur of a line of response at distance ``s_mm`` from
    the centre: ``doi * s / sqrt(R^2 - s^2)`` (the depth spread times the tangent of the angle at
    which the line enters the crystals)."""
    s = torch.as_tensor(s_mm, dtype=torch.float64).abs()
    r = float(ring_radius_mm)
    s = s.clamp(max=0.99 * r)
    return float(doi_fwhm_mm) * s / torch.sqrt(r * r - s * s)


def parallax_blur(geom: Geometry, doi_fwhm_mm: float, ring_radius_mm: float) -> torch.Tensor:
    """Radially variant blur of the bins, the same for every view: ``(n_bins, n_bins)`` with
    column ``j`` the distribution over detected bins of counts whose true bin is ``j`` (a
    Gaussian of ``parallax_fwhm_mm(s_j)``, counts uniform within a bin, so an exact double
    integral over both bins). Columns sum to 1 except where the blur leaves the sinogram."""
    nb, d = geom.n_bins, geom.bin_mm
    s = (torch.arange(nb, dtype=torch.float64) - (nb - 1) / 2) * d
    sig = (parallax_fwhm_mm(s, doi_fwhm_mm, ring_radius_mm) * FWHM_TO_SIGMA).clamp_min(1e-9)
    u = s[:, None] - s[None, :]  # detected bin i (row) minus true bin j (column)
    sj = sig[None, :]

    def anti(v):  # antiderivative of the Gaussian CDF: v Phi(v / sigma) + sigma phi(v / sigma)
        z = v / sj
        return v * 0.5 * (1 + torch.erf(z / math.sqrt(2))) + sj * torch.exp(-0.5 * z * z) / (
            math.sqrt(2 * math.pi))

    k = (anti(u + d) - 2 * anti(u) + anti(u - d)) / d
    return k.clamp_min(0).to(torch.float32)


def sinogram_psf(geom: Geometry, fwhm_mm: tuple[float, float]) -> torch.Tensor:
    """Per-view radial blur matrices ``(n_angles, n_bins, n_bins)`` equivalent to an image-space
    Gaussian with FWHM ``(x, y)``: its projection on view ``theta`` is a Gaussian with
    ``FWHM^2 = fx^2 cos^2(theta) + fy^2 sin^2(theta)``. Zero-padded, symmetric (self-adjoint)."""
    th = torch.from_numpy(geom.angles())
    fwhm = torch.sqrt((fwhm_mm[0] * torch.cos(th)) ** 2 + (fwhm_mm[1] * torch.sin(th)) ** 2)
    sigma = (fwhm * FWHM_TO_SIGMA / geom.bin_mm).clamp_min(1e-6)[:, None, None]
    b = torch.arange(geom.n_bins, dtype=torch.float64)
    d = b[None, :, None] - b[None, None, :]
    k = torch.exp(-0.5 * (d / sigma) ** 2) * (d.abs() <= torch.ceil(4 * sigma))
    half = torch.ceil(4 * sigma).squeeze()
    # Normalise by the full (untruncated-by-edges) kernel sum so edge bins are not boosted.
    t = torch.arange(-geom.n_bins, geom.n_bins + 1, dtype=torch.float64)
    full = (torch.exp(-0.5 * (t[None, :] / sigma[:, 0]) ** 2) * (t.abs()[None] <= half[:, None]))
    return (k / full.sum(1)[:, None, None]).to(torch.float32)


def resolution_model(geom: Geometry, config: ReconConfig) -> torch.Tensor | None:
    """The per-view sinogram blur ``B`` of ``config``: ``(n_angles, n_bins, n_bins)``, or None
    when it models no blur at all."""
    b = sinogram_psf(geom, tuple(config.psf_fwhm_mm)) if max(config.psf_fwhm_mm) > 0 else None
    if config.doi_fwhm_mm > 0:
        k = parallax_blur(geom, config.doi_fwhm_mm, config.ring_radius_mm)
        b = k.expand(geom.n_angles, -1, -1) if b is None else torch.matmul(k, b)
    return b


def postfilter(images: torch.Tensor, fwhm_mm: float, pixel_mm: float) -> torch.Tensor:
    """In-plane Gaussian filter of ``(Z, n, n)`` images (FWHM in mm, kernel truncated at 4
    sigma and normalised to 1, zero outside the image), as a scanner's post-filter."""
    if fwhm_mm <= 0:
        return images
    sigma = fwhm_mm * FWHM_TO_SIGMA / pixel_mm
    half = max(1, math.ceil(4 * sigma))
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(images.dtype)
    x = images[:, None]
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1), padding=(0, half))
    x = torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1), padding=(half, 0))
    return x[:, 0]


@functools.lru_cache(maxsize=16)
def _subset_psf(geom: Geometry, config: ReconConfig):
    full = resolution_model(geom, config)
    if full is None:
        return None
    s = config.subsets
    fwd = [full[k::s].contiguous() for k in range(s)]
    return fwd, [f.transpose(1, 2).contiguous() for f in fwd]


def osem(
    prompts: torch.Tensor,
    multiplicative: torch.Tensor,
    additive: torch.Tensor,
    geom: Geometry,
    config: ReconConfig,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reconstruct ``(n_rows, Z)`` sinograms into ``(Z, shape, shape)`` float32 images.

    ``prompts``: measured counts; ``multiplicative``: n (counts per unit line integral);
    ``additive``: expected background counts. Pixels outside ``mask`` (default: the FOV
    circle) are kept at zero. The resolution model acts in sinogram space
    (``resolution_model``); the post-filter (``postfilter``) follows the last update.
    """
    rows, nz = geom.n_rows, None
    for name, t in (("prompts", prompts), ("multiplicative", multiplicative),
                    ("additive", additive)):
        if t.dim() != 2 or t.shape[0] != rows:
            raise ValueError(f"{name} must be ({rows}, Z), got {tuple(t.shape)}")
        nz = t.shape[1] if nz is None else nz
        if t.shape[1] != nz:
            raise ValueError(f"{name} has {t.shape[1]} slices, expected {nz}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if (t < 0).any():
            raise ValueError(f"{name} has negative values")
    if geom.n_angles % config.subsets:
        raise ValueError(f"subsets={config.subsets} must divide n_angles={geom.n_angles}")
    proj = get_projector(geom, "pixel", 2, config.subsets)
    psf = _subset_psf(geom, config)
    n, nb = geom.shape, geom.n_bins
    if mask is None:
        mask = torch.from_numpy(geom.fov_mask())
    maskc = mask.reshape(-1, 1).to(torch.float32)

    def blur(sino, s, adjoint=False):
        if psf is None:
            return sino
        return torch.matmul(psf[adjoint][s], sino.view(-1, nb, nz)).view(-1, nz)

    subsets = range(config.subsets)
    split = [(prompts[r].to(torch.float32), multiplicative[r].to(torch.float32),
              additive[r].to(torch.float32)) for r in proj.subset_rows]
    inv_sens, total_sens = [], torch.zeros(n * n, nz)
    for s in subsets:
        sens = proj.back(blur(split[s][1], s, True), s) * maskc
        total_sens += sens
        inv_sens.append(torch.where(sens > 0, 1.0 / sens.clamp_min(1e-30), 0.0))
    # Start from the uniform image that matches the net trues of each slice.
    net = (prompts.to(torch.float32) - additive.to(torch.float32)).clamp_min(0).sum(0)
    x = maskc * (net / total_sens.sum(0).clamp_min(1e-20)).clamp_min(1e-6)
    for _ in range(config.iterations):
        for s in subsets:
            ys, ms, rs = split[s]
            q = torch.addcmul(rs, ms, blur(proj.forward(x, s), s)).clamp_min_(1e-30)
            ratio = ms * ys / q
            x = x * proj.back(blur(ratio, s, True), s) * inv_sens[s]
    img = x.T.reshape(nz, n, n)
    if config.postfilter_fwhm_mm > 0:
        img = postfilter(img, config.postfilter_fwhm_mm, geom.pixel_mm) * mask.reshape(n, n).to(
            img.dtype)
    return img.contiguous()
