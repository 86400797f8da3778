import pytest
import torch

from tgd.repro.sim.projector import Geometry, get_projector
from tgd.repro.sim.recon import ReconConfig, osem, postfilter, sinogram_psf

G = Geometry(32, 8.0, 32, 32, 8.0)


def _phantom():
    n = G.shape
    yy, xx = torch.meshgrid(torch.arange(n) - 15.5, torch.arange(n) - 15.5, indexing="ij")
    img = ((xx / 11) ** 2 + (yy / 8) ** 2 <= 1).float() * 2.0
    img += ((xx - 4) ** 2 + yy**2 <= 6).float() * 6.0
    return img[None].repeat(2, 1, 1)


def _model_forward(x, psf):
    p = get_projector(G, "pixel", 2, 1)
    sino = p.forward(x)
    if max(psf) == 0:
        return sino
    b = sinogram_psf(G, psf)
    return torch.matmul(b, sino.view(G.n_angles, G.n_bins, -1)).view(G.n_rows, -1)


@pytest.mark.parametrize("psf", [(0.0, 0.0), (12.0, 8.0)])
def test_mlem_preserves_counts_without_attenuation_or_background(psf):
    x_true = _phantom()
    y = torch.poisson(50 * _model_forward(x_true, psf), generator=torch.Generator().manual_seed(0))
    ones = torch.ones_like(y)
    cfg = ReconConfig("t", psf, iterations=4, subsets=1)
    x = osem(y, ones, torch.zeros_like(y), G, cfg)
    fx = _model_forward(x, psf)
    torch.testing.assert_close(fx.sum(0), y.sum(0), rtol=1e-4, atol=0)
    assert (x >= 0).all()
    assert (x[:, ~torch.from_numpy(G.fov_mask())] == 0).all()


def test_osem_converges_on_consistent_data_and_is_quantitative():
    x_true = _phantom()
    att = torch.exp(-0.3 * torch.rand(G.n_rows, 1)).expand(-1, 2).contiguous()
    bg = torch.full((G.n_rows, 2), 5.0)
    y = 100 * att * _model_forward(x_true, (8.0, 8.0)) + bg
    errs = []
    for it in (1, 5, 20):
        x = osem(y, 100 * att, bg, G, ReconConfig("t", (8.0, 8.0), iterations=it, subsets=4))
        errs.append(float((x - x_true).abs().sum() / x_true.sum()))
    assert errs[0] > errs[1] > errs[2]
    body = x_true > 1
    assert float(x[body].mean()) == pytest.approx(float(x_true[body].mean()), rel=0.02)


def test_osem_rejects_bad_input():
    y = torch.ones(G.n_rows, 1)
    cfg = ReconConfig("t", (5.0, 5.0), 1, 4)
    with pytest.raises(ValueError, match="prompts must be"):
        osem(torch.ones(10, 1), y, y, G, cfg)
    with pytest.raises(ValueError, match="NaN"):
        osem(y * float("nan"), y, y, G, cfg)
    with pytest.raises(ValueError, match="negative"):
        osem(y, -y, y, G, cfg)
    with pytest.raises(ValueError, match="slices"):
        osem(y, torch.ones(G.n_rows, 2), y, G, cfg)
    with pytest.raises(ValueError, match="divide"):
        osem(y, y, y, G, ReconConfig("t", (5.0, 5.0), 1, 5))
    with pytest.raises(ValueError, match="psf_fwhm_mm"):
        ReconConfig("t", (-1.0, 5.0))
    with pytest.raises(ValueError, match="postfilter_fwhm_mm"):
        ReconConfig("t", (5.0, 5.0), postfilter_fwhm_mm=-6.0)


@pytest.mark.parametrize("fwhm", [6.0, 12.0])
def test_postfilter_is_a_gaussian_of_the_requested_width_that_conserves_counts(fwhm):
    img = torch.zeros(2, 33, 33)
    img[0, 16, 16] = 1.0
    img[1, 16, 10] = 3.0
    out = postfilter(img, fwhm, 4.0)
    torch.testing.assert_close(out.sum((1, 2)), torch.tensor([1.0, 3.0]))
    u = (torch.arange(33) - 16.0) * 4.0
    var_x = float((out[0].sum(0) * u**2).sum())
    var_y = float((out[0].sum(1) * u**2).sum())
    # the sampled kernel's variance is sigma^2 up to its sampling and its 4-sigma truncation
    for var in (var_x, var_y):
        assert 2.3548 * var**0.5 == pytest.approx(fwhm, rel=0.02)
    assert torch.equal(postfilter(img, 0.0, 4.0), img)


def test_osem_applies_the_protocols_postfilter_to_its_last_update():
    x_true = _phantom()
    y = _model_forward(x_true, (0.0, 0.0)) * 50
    ones, zeros = torch.ones_like(y), torch.zeros_like(y)
    plain = osem(y, 50 * ones, zeros, G, ReconConfig("t", (0.0, 0.0), 2, 4))
    filt = osem(y, 50 * ones, zeros, G, ReconConfig("t", (0.0, 0.0), 2, 4,
                                                     postfilter_fwhm_mm=10.0))
    mask = torch.from_numpy(G.fov_mask()).reshape(G.shape, G.shape)
    torch.testing.assert_close(filt, postfilter(plain, 10.0, G.pixel_mm) * mask)
    assert float(filt.std()) < float(plain.std())
