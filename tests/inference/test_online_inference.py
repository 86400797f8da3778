"""Noise2Noise pairing of TGD-N2N, online adaptation, and fast inference equivalence."""

import numpy as np
import pytest
import torch

from tgd.data import slices_25d
from tgd.inference import denoise_volume, fold_batchnorm, prepare_for_inference
from tgd.training.online import n2n_dataset
from tgd.workflows.online import online_denoise

from ..conftest import tiny_cfg


def test_n2n_pairs_are_swapped_both_ways():
    rng = np.random.default_rng(0)
    a = rng.uniform(1, 2, (5, 12, 12)).astype(np.float32)
    b = rng.uniform(3, 4, (5, 12, 12)).astype(np.float32)
    ds = n2n_dataset(a, b, scale=1.0)
    assert len(ds) == 10
    sa, sb = slices_25d(a), slices_25d(b)
    for z in range(5):
        x, y = ds[z]
        assert torch.equal(x, sa[z]) and torch.equal(y[0], torch.from_numpy(b[z]))
        x, y = ds[5 + z]
        assert torch.equal(x, sb[z]) and torch.equal(y[0], torch.from_numpy(a[z]))


def test_online_adapts_with_tgd_and_denoises(studies, pretrained):
    st = studies["v2"][0]
    h1, h2 = st.noise2noise("v2", 60)
    cfg = tiny_cfg("online", iterations=4, threshold=0.5, patch_size=16)
    den, setup, res = online_denoise(pretrained, h1, h2, cfg)
    assert den.shape == h1.shape and np.isfinite(den).all()
    assert setup.fingerprint_before == setup.frozen_fingerprint()
    assert res.iterations == 4


@pytest.fixture
def bn_model(pretrained):
    torch.manual_seed(3)
    for m in pretrained.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return pretrained.eval()


def test_batchnorm_folding_is_exact_to_rounding(bn_model):
    folded = fold_batchnorm(bn_model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(3, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn_model(x), rtol=1e-5, atol=1e-5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn_model.modules())  # copy


def test_denoise_volume_matches_eager_forward(bn_model):
    vol = np.random.default_rng(1).uniform(0.5, 2, (6, 16, 16)).astype(np.float32)
    fast = denoise_volume(bn_model, vol, scale=0.5, batch_size=4)
    with torch.no_grad():
        ref = bn_model(slices_25d(vol) * 0.5)[:, 0].numpy() / 0.5
    np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-5)
    net = prepare_for_inference(bn_model, channels_last=False)
    np.testing.assert_allclose(denoise_volume(net, vol, scale=0.5, prepared=True,
                                              channels_last=False), ref, rtol=1e-4, atol=1e-5)


def test_denoise_pads_a_2d_unet_to_its_size_multiple():
    from tgd.models import UNet

    torch.manual_seed(0)
    net = UNet(widths=(4, 8, 8)).eval()  # sizes must be multiples of 4
    vol = np.random.default_rng(2).uniform(0.5, 2, (3, 18, 13)).astype(np.float32)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(slices_25d(vol))
    out = denoise_volume(net, vol, scale=1.0)
    assert out.shape == vol.shape
    padded = torch.nn.functional.pad(slices_25d(vol), (0, 3, 0, 2), mode="replicate")
    with torch.no_grad():
        ref = net(padded)[:, 0, :18, :13].numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_denoise_refuses_bad_volumes(bn_model):
    with pytest.raises(ValueError, match="Z, H, W"):
        denoise_volume(bn_model, np.ones((16, 16), np.float32))
    vol = np.ones((3, 8, 8), np.float32)
    vol[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        denoise_volume(bn_model, vol)
