import math

import numpy as np
import pytest
import torch

from tgd.repro.sim.projector import Geometry, Projector, system_matrix
from tgd.repro.sim.recon import sinogram_psf

SMALL = Geometry(32, 8.0, 24, 32, 8.0)


@pytest.mark.parametrize("model,oversample", [("pixel", 1), ("pixel", 2), ("strip", 1)])
def test_adjointness(model, oversample):
    p = Projector(SMALL, model, oversample, n_subsets=4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(SMALL.n_pixels, 3, generator=g)
    y = torch.rand(SMALL.n_rows, 3, generator=g)
    lhs = float((p.forward(x) * y).sum())
    rhs = float((x * p.back(y)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)
    for s in range(4):  # each subset pair is adjoint too
        ys = y[p.subset_rows[s]]
        assert float((p.forward(x, s) * ys).sum()) == pytest.approx(
            float((x * p.back(ys, s)).sum()), rel=1e-5)


def test_subsets_reassemble_full_projection():
    full = Projector(SMALL, "pixel", 2, n_subsets=1)
    sub = Projector(SMALL, "pixel", 2, n_subsets=6)
    x = torch.rand(3, 32, 32)
    assert torch.allclose(full.forward(x), sub.forward(x), atol=1e-5)
    y = torch.rand(SMALL.n_rows, 3)
    assert torch.allclose(full.back(y), sub.back(y), atol=1e-4)


@pytest.mark.parametrize("model", ["pixel", "strip"])
def test_every_view_conserves_mass(model):
    # The integral of each projection over s equals the image integral (pixel area weighted).
    m = system_matrix(SMALL, model, 2)
    x = np.random.default_rng(1).random(SMALL.n_pixels) * SMALL.fov_mask().ravel()
    per_view = (m @ x).reshape(SMALL.n_angles, SMALL.n_bins).sum(1) * SMALL.bin_mm
    np.testing.assert_allclose(per_view, x.sum() * SMALL.pixel_mm**2, rtol=1e-9)


def test_strip_projector_exact_for_axis_aligned_pixel():
    g = Geometry(2, 4.0, 2, 4, 2.0)  # views at 0 and 90 deg; bins of 2 mm
    m = system_matrix(g, "strip").toarray()
    # Pixel (row 0, col 0) has centre (-2, -2): at 0 deg it covers s in [-4, 0] = bins 0 and 1,
    # each fully, with a 4-mm chord (up to the 1e-6 ramp that avoids a degenerate trapezoid).
    np.testing.assert_allclose(m[0:4, 0], [4.0, 4.0, 0.0, 0.0], atol=1e-5)


def _disk_ripple(oversample):
    g = Geometry(64, 4.0, 64, 64, 4.0)
    x, y = g.pixel_centres()
    disk = (np.hypot(x, y) <= 90.0).astype(float)
    sino = (system_matrix(g, "pixel", oversample) @ disk).reshape(g.n_angles, g.n_bins)
    centre = sino[:, 24:40]  # bins well inside the disk
    return float((centre.std(0) / centre.mean(0)).max())


def test_subpixel_sampling_reduces_angular_ripple():
    r1, r2 = _disk_ripple(1), _disk_ripple(2)
    assert r2 < 0.03
    assert r1 > 2 * r2


def test_geometry_and_projector_validation():
    with pytest.raises(ValueError, match="shape"):
        Geometry(0, 4.0, 8, 8, 4.0)
    with pytest.raises(ValueError, match="pixel_mm"):
        Geometry(8, float("nan"), 8, 8, 4.0)
    with pytest.raises(ValueError, match="divide"):
        Projector(SMALL, "pixel", 2, n_subsets=5)
    with pytest.raises(ValueError, match="unknown projector"):
        system_matrix(SMALL, "ray")
    p = Projector(SMALL, "pixel", 2)
    with pytest.raises(ValueError, match="image must be"):
        p.forward(torch.zeros(3, 16, 16))
    with pytest.raises(RuntimeError, match="transpose"):
        Projector(SMALL, "strip", with_transpose=False).back(torch.zeros(SMALL.n_rows, 1))


def test_sinogram_psf_is_symmetric_normalised_and_has_the_requested_width():
    g = Geometry(64, 4.0, 8, 64, 4.0)
    b = sinogram_psf(g, (9.0, 5.0)).double()
    assert torch.allclose(b, b.transpose(1, 2))
    mid = b[:, 32, :]
    assert torch.allclose(mid.sum(1), torch.ones(8, dtype=torch.float64), atol=1e-6)
    s = torch.arange(64, dtype=torch.float64) - 32
    fwhm = torch.sqrt((mid * s**2).sum(1)) * 4.0 * 2 * math.sqrt(2 * math.log(2))
    th = torch.from_numpy(g.angles())
    expect = torch.sqrt((9.0 * torch.cos(th)) ** 2 + (5.0 * torch.sin(th)) ** 2)
    assert torch.allclose(fwhm, expect, rtol=0.06)
