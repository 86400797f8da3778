import numpy as np
import pytest
import torch

from tgd.data import Noise2NoiseDataset3D, NoiseAdaptiveDataset3D
from tgd.repro.datasets import study_pairs
from tgd.repro.sim import simulate_study

KW = dict(n_slices=8, shape=32, durations=(30, 60, 600), versions=("v2",))


@pytest.fixture(scope="module")
def studies():
    return [simulate_study(s, **KW) for s in (10, 11)]


def _find(big: torch.Tensor, patch: torch.Tensor) -> tuple[int, int, int]:
    """Offset of ``patch`` (D, P, P) inside ``big`` (Z, H, W) (unique for noisy data)."""
    d, p, q = patch.shape
    hits = [(z, y, x) for z in range(big.shape[0] - d + 1) for y in range(big.shape[1] - p + 1)
            for x in range(big.shape[2] - q + 1)
            if torch.equal(big[z:z + d, y:y + p, x:x + q], patch)]
    assert len(hits) == 1
    return hits[0]


def _pairs(studies, durations=(30, 60)):
    return study_pairs(studies, "v2", durations)


def test_noise_adaptive_3d_shapes_order_and_scale(studies):
    ds = NoiseAdaptiveDataset3D(_pairs(studies))
    assert ds.patch_depth is None and ds.patches_per_volume == 1 and len(ds) == 2 * 2
    x, y = ds[3]  # study 1, 60 s, whole volume
    assert x.shape == y.shape == (1, 8, 32, 32) and x.dtype == y.dtype == torch.float32
    st = studies[1]
    body = torch.from_numpy(st.labels > 0)
    assert float(y[0][body].mean()) == pytest.approx(1.0, rel=1e-5)
    scale = float(y.sum() / torch.from_numpy(st.images[("v2", 600)]).sum())
    torch.testing.assert_close(x[0], torch.from_numpy(st.images[("v2", 60)]) * scale)


def test_noise_adaptive_3d_patches_are_aligned_in_bounds_and_on_the_object(studies):
    ds = NoiseAdaptiveDataset3D(_pairs(studies), patch_size=16, seed=3)
    # depth defaults to the patch size clipped to the 8 slices; 1 x 2 x 2 tiles per volume
    assert ds.patch_depth == 8 and ds.patches_per_volume == 4 and len(ds) == 2 * 2 * 4
    for idx in range(len(ds)):
        i, j = ds.index[idx]
        x, y = ds[idx]
        assert x.shape == y.shape == (1, 8, 16, 16)
        z, r, c = _find(ds.targets[i][j], y[0])
        torch.testing.assert_close(x[0], ds.inputs[i][j][z:z + 8, r:r + 16, c:c + 16])
        assert float(y.max()) > 0.05 * float(ds.targets[i][j].max())
    deeper = NoiseAdaptiveDataset3D(_pairs(studies, (30,)), patch_size=8,
                                    patch_depth=4, patches_per_volume=3)
    assert len(deeper) == 2 * 3 and deeper[0][0].shape == (1, 4, 8, 8)
    slab = NoiseAdaptiveDataset3D(_pairs(studies, (30,)), patch_depth=2)
    assert slab[0][0].shape == (1, 2, 32, 32) and slab.patches_per_volume == 4


def test_3d_crops_depend_on_seed_epoch_and_index_only(studies):
    def make(seed):
        return NoiseAdaptiveDataset3D(_pairs(studies), patch_size=8, patch_depth=4, seed=seed)

    a, b = make(0), make(0)
    first = [a[i][1] for i in range(len(a))]
    for i in reversed(range(len(b))):  # another access order: same crops
        assert torch.equal(b[i][1], first[i])
    a.set_epoch(1)
    assert any(not torch.equal(a[i][1], first[i]) for i in range(len(a)))
    a.set_epoch(0)
    assert all(torch.equal(a[i][1], first[i]) for i in range(len(a)))
    c = make(1)
    assert any(not torch.equal(c[i][1], first[i]) for i in range(len(c)))


def test_noise2noise_3d_directions_and_crops():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, (6, 12, 10)).astype(np.float32)
    b = rng.uniform(0.5, 2.0, (6, 12, 10)).astype(np.float32)
    ds = Noise2NoiseDataset3D(a, b, scale=2.0)
    assert len(ds) == 2 and ds.scale == 2.0
    x, y = ds[0]
    assert x.shape == (1, 6, 12, 10)
    torch.testing.assert_close(x[0], torch.from_numpy(a) * 2)
    torch.testing.assert_close(y[0], torch.from_numpy(b) * 2)
    x, y = ds[-1]
    torch.testing.assert_close(x[0], torch.from_numpy(b) * 2)
    p = Noise2NoiseDataset3D(a, b, patch_size=4, seed=1)
    assert p.patch_depth == 4 and p.patches_per_volume == 2 * 3 * 3 and len(p) == 36
    for idx in range(len(p)):
        x, y = p[idx]
        src, dst = (a, b) if idx < 18 else (b, a)
        z, r, c = _find(torch.from_numpy(dst) * p.scale, y[0])
        torch.testing.assert_close(x[0], torch.from_numpy(src[z:z + 4, r:r + 4, c:c + 4])
                                   * p.scale)
    with pytest.raises(IndexError):
        p[36]


def test_3d_dataset_errors(studies):
    pairs = _pairs(studies, (30,))
    with pytest.raises(ValueError, match="patch_depth 9 exceeds the slice count 8"):
        NoiseAdaptiveDataset3D(pairs, patch_size=8, patch_depth=9)
    with pytest.raises(ValueError, match="patch_size 33 exceeds"):
        NoiseAdaptiveDataset3D(pairs, patch_size=33)
    with pytest.raises(ValueError, match="patch_depth must be a positive int"):
        NoiseAdaptiveDataset3D(pairs, patch_depth=0)
    with pytest.raises(ValueError, match="at least one study"):
        NoiseAdaptiveDataset3D([])
    with pytest.raises(ValueError, match="differ in shape"):
        Noise2NoiseDataset3D(np.ones((4, 8, 8)), np.ones((5, 8, 8)))
    with pytest.raises(ValueError, match=r"\(Z, H, W\)"):
        Noise2NoiseDataset3D(np.ones((8, 8)), np.ones((8, 8)))


def test_one_crop_for_slices_and_volumes():
    """2.5-D and 3-D datasets share one object-centred crop: a 3-D crop of a one-slice volume,
    one slice deep, is the 2-D crop of that slice for the same (seed, epoch, item)."""
    from tgd.data import Noise2NoiseDataset

    rng = np.random.default_rng(1)
    a = rng.gamma(2.0, 1.0, (1, 24, 20)).astype(np.float32)
    a[:, :6] = 0  # air, so the crops are centred on the object
    b = rng.gamma(2.0, 1.0, a.shape).astype(np.float32)
    d2 = Noise2NoiseDataset(a, b, patch_size=8, scale=1.0, seed=7)
    d3 = Noise2NoiseDataset3D(a, b, patch_size=8, patch_depth=1, patches_per_volume=1,
                              scale=1.0, seed=7)
    for epoch in (0, 2):
        d2.set_epoch(epoch)
        d3.set_epoch(epoch)
        for i in range(2):
            (x2, y2), (x3, y3) = d2[i], d3[i]
            assert torch.equal(y3[0, 0], y2[0]) and torch.equal(x3[0, 0], x2[1])
    with pytest.raises(ValueError, match="positive int"):
        Noise2NoiseDataset(a, b, patch_size=True)
