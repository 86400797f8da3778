"""2-D parallel-beam projectors as sparse torch matrices, batched over slices.

Coordinates (mm): pixel ``[row, col]`` of an ``n x n`` image has its centre at
``x = (col - (n-1)/2) * pixel_mm`` (towards patient left) and ``y = (row - (n-1)/2) * pixel_mm``
(towards posterior); the isocentre is the image centre. A view at angle ``theta`` in ``[0, pi)``
records ``s = x cos(theta) + y sin(theta)`` in bins of ``bin_mm`` centred on ``s = 0``.

A matrix entry is the mean chord length (mm) of the pixel over the bin, so a sinogram is the
line integral of the image; with the image in kBq/mL and mu in 1/mm the sinograms are
``kBq/mL * mm`` and dimensionless respectively.

Two models are built:

* ``"pixel"``: pixel-driven, ``oversample x oversample`` sub-pixels each linearly interpolated onto
  the bins (the reconstruction model; one sample per pixel gives ~11 % angle-dependent ripple).
* ``"strip"``: exact strip integrals of square pixels (trapezoidal footprint), used on a finer grid
  to generate the data, so that data and reconstruction model are different operators.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["Geometry", "Projector", "get_projector", "system_matrix"]


@dataclass(frozen=True)
class Geometry:
    """Image grid and sinogram sampling of one transaxial plane."""

    shape: int = 128
    pixel_mm: float = 4.0
    n_angles: int = 128
    n_bins: int = 128
    bin_mm: float = 4.0

    def __post_init__(self) -> None:
        for name in ("shape", "n_angles", "n_bins"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Geometry.{name} must be a positive int, got {v!r}")
        for name in ("pixel_mm", "bin_mm"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"Geometry.{name} must be a positive finite number, got {v!r}")

    @property
    def n_pixels(self) -> int:
        return self.shape * self.shape

    @property
    def n_rows(self) -> int:
        return self.n_angles * self.n_bins

    @property
    def fov_mm(self) -> float:
        return self.shape * self.pixel_mm

    def angles(self) -> np.ndarray:
        return np.arange(self.n_angles) * (np.pi / self.n_angles)

    def pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of every pixel in row-major order, in mm."""
        c = (np.arange(self.shape) - (self.shape - 1) / 2) * self.pixel_mm
        y, x = np.meshgrid(c, c, indexing="ij")
        return x.ravel(), y.ravel()

    def fov_mask(self) -> np.ndarray:
        """Pixels whose whole footprint lies inside the circle seen by every view."""
        x, y = self.pixel_centres()
        r_max = self.n_bins * self.bin_mm / 2 - self.pixel_mm / math.sqrt(2)
        return (np.hypot(x, y) <= r_max).reshape(self.shape, self.shape)

    def fine(self, factor: int) -> Geometry:
        """Same FOV and sinogram, pixels ``factor`` times smaller."""
        return Geometry(
            self.shape * factor, self.pixel_mm / factor, self.n_angles, self.n_bins, self.bin_mm
        )


def _ramp2(u: np.ndarray) -> np.ndarray:
    u = np.maximum(u, 0.0)
    return 0.5 * u * u


def _pixel_driven(geom: Geometry, oversample: int, angles: np.ndarray):
    x, y = geom.pixel_centres()
    off = ((np.arange(oversample) + 0.5) / oversample - 0.5) * geom.pixel_mm
    ox, oy = np.meshgrid(off, off, indexing="ij")
    ox, oy = ox.ravel(), oy.ravel()
    w_sub = geom.pixel_mm**2 / oversample**2 / geom.bin_mm
    s0 = -(geom.n_bins - 1) / 2 * geom.bin_mm
    rows, cols, vals = [], [], []
    pix = np.arange(geom.n_pixels)
    for ia, th in angles:
        c, s = math.cos(th), math.sin(th)
        for dx, dy in zip(ox, oy, strict=True):
            t = ((x + dx) * c + (y + dy) * s - s0) / geom.bin_mm
            b = np.floor(t).astype(np.int64)
            f = t - b
            for bb, ww in ((b, 1.0 - f), (b + 1, f)):
                ok = (bb >= 0) & (bb < geom.n_bins) & (ww > 0)
                rows.append(ia * geom.n_bins + bb[ok])
                cols.append(pix[ok])
                vals.append(ww[ok] * w_sub)
    return rows, cols, vals


def _strip(geom: Geometry, angles: np.ndarray):
    x, y = geom.pixel_centres()
    w = geom.pixel_mm
    lo0 = -geom.n_bins / 2 * geom.bin_mm
    span = int(math.ceil(w * math.sqrt(2) / geom.bin_mm)) + 1
    rows, cols, vals = [], [], []
    pix = np.arange(geom.n_pixels)
    for ia, th in angles:
        c, s = math.cos(th), math.sin(th)
        a = max(w * abs(c), 1e-6 * w)
        b = max(w * abs(s), 1e-6 * w)
        p, q = (a + b) / 2, (a - b) / 2
        scale = w * w / (a * b) / geom.bin_mm
        centre = x * c + y * s
        first = np.floor((centre - p - lo0) / geom.bin_mm).astype(np.int64)

        def cdf(t, p=p, q=q):
            return _ramp2(t + p) - _ramp2(t + q) - _ramp2(t - q) + _ramp2(t - p)

        for k in range(span):
            bb = first + k
            lo = lo0 + bb * geom.bin_mm - centre
            ww = (cdf(lo + geom.bin_mm) - cdf(lo)) * scale
            ok = (bb >= 0) & (bb < geom.n_bins) & (ww > 1e-12 * w)
            rows.append(ia * geom.n_bins + bb[ok])
            cols.append(pix[ok])
            vals.append(ww[ok])
    return rows, cols, vals


@functools.lru_cache(maxsize=8)
def system_matrix(geom: Geometry, model: str = "pixel", oversample: int = 2) -> sp.csr_matrix:
    """Geometric system matrix (rows: ``angle * n_bins + bin``, cols: pixels), float64 CSR."""
    if model not in ("pixel", "strip"):
        raise ValueError(f"unknown projector model {model!r}; use 'pixel' or 'strip'")
    if not isinstance(oversample, int) or oversample < 1:
        raise ValueError(f"oversample must be a positive int, got {oversample!r}")
    angles = list(enumerate(geom.angles()))
    if model == "pixel":
        rows, cols, vals = _pixel_driven(geom, oversample, angles)
    else:
        rows, cols, vals = _strip(geom, angles)
    m = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(geom.n_rows, geom.n_pixels),
    ).tocsr()
    m.sum_duplicates()
    return m


def _to_torch_csr(m: sp.csr_matrix) -> torch.Tensor:
    m = m.astype(np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data),
            size=m.shape,
            check_invariants=False,
        )


class Projector:
    """Forward and back projection of a stack of slices, optionally by angle subsets.

    Images are ``(n_pixels, Z)`` or ``(Z, H, W)`` tensors; sinograms are ``(n_rows, Z)``
    (row ``angle * n_bins + bin``). Subset ``k`` of ``n_subsets`` holds angles ``k, k+S, ...``.
    Each subset's matrix and its transpose are stored as separate CSR tensors, so back projection
    is a plain sparse-dense matmul too.
    """

    def __init__(self, geom: Geometry, model: str = "pixel", oversample: int = 2,
                 n_subsets: int = 1, with_transpose: bool = True) -> None:
        if not isinstance(n_subsets, int) or not 1 <= n_subsets <= geom.n_angles:
            raise ValueError(f"n_subsets must be an int in [1, {geom.n_angles}], got {n_subsets!r}")
        if geom.n_angles % n_subsets:
            raise ValueError(
                f"n_subsets={n_subsets} must divide n_angles={geom.n_angles} (equal subsets)"
            )
        self.geom = geom
        self.model = model
        self.n_subsets = n_subsets
        full = system_matrix(geom, model, oversample)
        nb = geom.n_bins
        self.subset_rows: list[torch.Tensor] = []
        self._a: list[torch.Tensor] = []
        self._at: list[torch.Tensor] | None = [] if with_transpose else None
        for k in range(n_subsets):
            ang = np.arange(k, geom.n_angles, n_subsets)
            rows = (ang[:, None] * nb + np.arange(nb)[None, :]).ravel()
            sub = full[rows]
            self.subset_rows.append(torch.from_numpy(rows))
            self._a.append(_to_torch_csr(sub))
            if self._at is not None:
                self._at.append(_to_torch_csr(sub.T.tocsr()))

    @property
    def nnz(self) -> int:
        return int(sum(a.values().numel() for a in self._a))

    def _as_columns(self, img: torch.Tensor) -> torch.Tensor:
        n = self.geom.shape
        if img.dim() == 3 and img.shape[1:] == (n, n):
            return img.reshape(img.shape[0], -1).T.contiguous()
        if img.dim() == 2 and img.shape[0] == self.geom.n_pixels:
            return img
        raise ValueError(
            f"image must be (Z, {n}, {n}) or ({self.geom.n_pixels}, Z), got {tuple(img.shape)}"
        )

    def forward(self, img: torch.Tensor, subset: int | None = None) -> torch.Tensor:
        """Project ``img``; the full sinogram ``(n_rows, Z)`` or one subset's rows."""
        x = self._as_columns(img).to(torch.float32)
        if subset is not None:
            return torch.sparse.mm(self._a[subset], x)
        if self.n_subsets == 1:
            return torch.sparse.mm(self._a[0], x)
        out = x.new_empty((self.geom.n_rows, x.shape[1]))
        for k, a in enumerate(self._a):
            out[self.subset_rows[k]] = torch.sparse.mm(a, x)
        return out

    def back(self, sino: torch.Tensor, subset: int | None = None) -> torch.Tensor:
        """Back-project a full ``(n_rows, Z)`` sinogram, or one subset's rows; ``(n_pixels, Z)``."""
        if self._at is None:
            raise RuntimeError("this projector was built without its transpose")
        if sino.dim() != 2:
            raise ValueError(f"sinogram must be (rows, Z), got {tuple(sino.shape)}")
        y = sino.to(torch.float32)
        if subset is not None:
            return torch.sparse.mm(self._at[subset], y)
        if y.shape[0] != self.geom.n_rows:
            raise ValueError(f"full sinogram needs {self.geom.n_rows} rows, got {y.shape[0]}")
        out = None
        for k, at in enumerate(self._at):
            part = torch.sparse.mm(at, y[self.subset_rows[k]].contiguous())
            out = part if out is None else out + part
        return out


@functools.lru_cache(maxsize=16)
def get_projector(geom: Geometry, model: str = "pixel", oversample: int = 2,
                  n_subsets: int = 1, with_transpose: bool = True) -> Projector:
    """Cached :class:`Projector` (built once per geometry and options)."""
    return Projector(geom, model, oversample, n_subsets, with_transpose)
