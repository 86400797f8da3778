"""The 2.5-D datasets of tgd.data (PairedVolumes -> slices, Noise2Noise pairs, ensembles) and
the intensity normalisation they apply, on simulated studies; the reproduction's own
normalisations of studies (study_pairs): tests/repro/test_datasets.py."""

import numpy as np
import pytest
import torch

from tgd.data import (
    EnsembleDataset,
    Noise2NoiseDataset,
    NoiseAdaptiveDataset,
    PairedVolumes,
    intensity_scale,
    otsu_body_mask,
    slices_25d,
)
from tgd.repro.datasets import study_pairs
from tgd.repro.sim import simulate_study

KW = dict(n_slices=4, shape=64, versions=("v2",))


@pytest.fixture(scope="module")
def studies():
    return [simulate_study(s, **KW) for s in (10, 11)]


def test_slices_25d_padding():
    v = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 3), np.float32)
    rep = slices_25d(v)
    assert rep.shape == (4, 3, 2, 3) and rep.dtype == torch.float32
    assert rep[0, :, 0, 0].tolist() == [0, 0, 1]
    assert rep[2, :, 0, 0].tolist() == [1, 2, 3]
    assert rep[3, :, 0, 0].tolist() == [2, 3, 3]
    ref = slices_25d(v, pad="reflect")
    assert ref[0, :, 0, 0].tolist() == [1, 0, 1] and ref[3, :, 0, 0].tolist() == [2, 3, 2]
    assert slices_25d(v[:1])[0, :, 0, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="pad"):
        slices_25d(v, pad="zeros")
    with pytest.raises(ValueError, match=r"\(Z, H, W\)"):
        slices_25d(v[0])
    with pytest.raises(ValueError, match="NaN"):
        slices_25d(v * np.nan)


def test_noise_adaptive_pairs_normalised_from_each_input(studies):
    ds = NoiseAdaptiveDataset(study_pairs(studies, "v2", normalize="input"))
    assert len(ds) == 2 * 6 * 4
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and y.shape == (1, 64, 64)
    assert x.dtype == y.dtype == torch.float32
    st = studies[1]
    # Item (study 1, duration 90 s = level 3, slice 2): input slices 1..3 of the 90-s image,
    # input and target times 1 / the mean of the 90-s image over its estimated body (what
    # tgd denoise applies to an image it has never seen).
    i = 1 * 24 + 3 * 4 + 2
    scale = intensity_scale(st.images[("v2", 90)])
    x, y = ds[i]
    torch.testing.assert_close(x, torch.from_numpy(st.images[("v2", 90)][1:4]) * scale)
    torch.testing.assert_close(y[0], torch.from_numpy(st.images[("v2", 600)][2]) * scale)
    assert len(ds.targets[1]) == 6  # one target per level, each at its input's scale
    assert float(ds.targets[1][3].sum() / ds.targets[1][0].sum()) == pytest.approx(
        scale / intensity_scale(st.images[("v2", 30)]), rel=1e-5)
    # a given scale instead: one for all levels of a study, one target tensor shared by them
    pair = PairedVolumes([st.images[("v2", 30)], st.images[("v2", 60)]],
                         st.images[("v2", 600)], scales=0.25)
    fixed = NoiseAdaptiveDataset([pair])
    assert fixed.targets[0][0] is fixed.targets[0][1]
    torch.testing.assert_close(fixed[4][1][0], torch.from_numpy(st.images[("v2", 600)][0]) / 4)


def test_patches_are_deterministic_and_change_with_epoch(studies):
    a = NoiseAdaptiveDataset(study_pairs(studies, "v2"), patch_size=24, seed=3)
    b = NoiseAdaptiveDataset(study_pairs(studies, "v2"), patch_size=24, seed=3)
    xa, ya = a[5]
    assert xa.shape == (3, 24, 24) and ya.shape == (1, 24, 24)
    assert torch.equal(xa, b[5][0])
    crops = {tuple(a[i][1].flatten()[:5].tolist()) for i in range(8)}
    a.set_epoch(1)
    assert not all(torch.equal(a[i][1], b[i][1]) for i in range(8))
    assert len(crops) > 1
    assert float(ya.max()) > 0  # crops are centred on the body, not on air


def test_noise2noise_both_directions(studies):
    img1, img2 = studies[0].noise2noise("v2", 120)
    ds = Noise2NoiseDataset(img1, img2, scale=2.0)
    assert len(ds) == 8
    x, y = ds[1]
    torch.testing.assert_close(x[1], torch.from_numpy(img1[1]) * 2)
    torch.testing.assert_close(y[0], torch.from_numpy(img2[1]) * 2)
    x, y = ds[4 + 1]
    torch.testing.assert_close(x[1], torch.from_numpy(img2[1]) * 2)
    torch.testing.assert_close(y[0], torch.from_numpy(img1[1]) * 2)
    assert Noise2NoiseDataset(img1, img2, patch_size=16)[0][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="differ in shape"):
        Noise2NoiseDataset(img1, img2[:2])
    with pytest.raises(IndexError):
        ds[8]


def test_ensemble_dataset(studies):
    r = studies[0].realizations("v2", 60, 3)
    ds = EnsembleDataset(r, scale=0.5)
    assert len(ds) == 12
    x, ri, z = ds[5]
    assert (ri, z) == (1, 1)
    torch.testing.assert_close(x, torch.from_numpy(r[1, 0:3]) * 0.5)
    with pytest.raises(ValueError, match="R, Z, H, W"):
        EnsembleDataset(r[0])


def test_dataset_errors(studies):
    pairs = study_pairs(studies, "v2")
    with pytest.raises(ValueError, match="patch_size"):
        NoiseAdaptiveDataset(pairs, patch_size=65)
    with pytest.raises(ValueError, match="at least one study"):
        NoiseAdaptiveDataset([])
    with pytest.raises(TypeError, match="PairedVolumes"):
        NoiseAdaptiveDataset(studies)  # studies themselves are not the library's data
    img = studies[0].images[("v2", 600)]
    with pytest.raises(ValueError, match="in-plane shape"):
        NoiseAdaptiveDataset([PairedVolumes([img], img), PairedVolumes([img[:, :32]], img[:, :32])])
    with pytest.raises(ValueError, match="differ in shape"):
        NoiseAdaptiveDataset([PairedVolumes([img[:2]], img)])
    with pytest.raises(ValueError, match="positive and finite"):
        NoiseAdaptiveDataset([PairedVolumes([img], img, scales=0.0)])
    with pytest.raises(ValueError, match="NaN"):
        NoiseAdaptiveDataset([PairedVolumes([img * np.nan], img)])
    with pytest.raises(ValueError, match="no positive"):
        intensity_scale(np.zeros((2, 4, 4)))


def test_otsu_body_mask_ignores_a_very_hot_bladder():
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:8, :64, :64]
    body = (y - 32) ** 2 / 24**2 + (x - 32) ** 2 / 16**2 < 1
    hot = body & ((y - 32) ** 2 + (x - 32) ** 2 < 6**2)  # ~9 % of the body at 80x tissue
    img = np.where(body, rng.gamma(20, 1 / 20, body.shape), rng.exponential(0.01, body.shape))
    img[hot] *= 80
    img = img.astype(np.float32)
    est = otsu_body_mask(img)
    assert (est == body).mean() > 0.99
    assert intensity_scale(img) == pytest.approx(1 / img[body].mean(), rel=0.02)
    # a threshold relative to the image's top values would cut out the soft tissue
    assert (img > 0.05 * np.percentile(img, 99.5))[body & ~hot].mean() < 0.05
