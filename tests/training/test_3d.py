"""3-D networks in the library: model setup, planning input, shape checks, chunked inference."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from tgd.inference import denoise_volume
from tgd.models import DnCNN, UNet, model_traits, new_model
from tgd.training import TrainConfig, prepare, train
from tgd.training.methods import planning_input

from ..conftest import tiny_cfg


def _random_bn(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_new_model_3d_takes_one_channel():
    d = new_model("dncnn", 4, 3, spatial_dims=3)
    u = new_model("unet", 4, 2, spatial_dims=3)
    assert (d.in_channels, d.spatial_dims) == (1, 3) and (u.in_channels, u.spatial_dims) == (1, 3)
    x = torch.rand(1, 1, 4, 8, 8)
    assert d(x).shape == u(x).shape == x.shape
    assert new_model("dncnn", 4, 3).in_channels == 3  # 2.5-D default unchanged


def test_planning_input_matches_the_net():
    assert planning_input(new_model("dncnn", 4, 3, spatial_dims=3)).shape == (1, 1, 32, 32, 32)
    assert planning_input(new_model("unet", 4, 2)).shape == (1, 3, 32, 32)
    deep = UNet(in_channels=1, widths=(1,) * 7, spatial_dims=2)  # needs multiples of 64
    assert planning_input(deep).shape == (1, 1, 64, 64)
    assert planning_input(torch.nn.Conv2d(1, 1, 3)) is None


def test_config_and_model_dims_must_agree():
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        TrainConfig(spatial_dims=1, iterations=1).validate()
    with pytest.raises(ValueError, match="3-D networks only"):
        TrainConfig(patch_depth=4, iterations=1).validate()
    with pytest.raises(ValueError, match="the model is 3-D but the training settings say"):
        prepare("scratch", new_model("dncnn", 4, 3, spatial_dims=3), tiny_cfg())


def test_2d_shaped_data_for_a_3d_net_is_a_clear_error():
    model = new_model("dncnn", 4, 3, spatial_dims=3)
    cfg = tiny_cfg(spatial_dims=3, iterations=1)
    slices = TensorDataset(torch.rand(4, 3, 16, 16), torch.rand(4, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(batch, 1, D, H, W\) 3-D volume patches"):
        train(prepare("scratch", model, cfg), cfg, slices)
    vols = TensorDataset(torch.rand(4, 1, 4, 8, 8), torch.rand(4, 1, 4, 8, 6))
    with pytest.raises(ValueError, match="targets"):
        train(prepare("scratch", model, cfg), cfg, vols)
    with pytest.raises(ValueError, match=r"\(Z, H, W\)"):
        denoise_volume(model, np.ones((16, 16), np.float32))


def test_unet_sizes_are_checked_before_training():
    model = new_model("unet", 4, 3, spatial_dims=3)  # sizes must be multiples of 4
    cfg = tiny_cfg(arch="unet", depth=3, spatial_dims=3, iterations=2, batch_size=2)
    ok = TensorDataset(torch.rand(2, 1, 8, 8, 8), torch.rand(2, 1, 8, 8, 8))
    odd = TensorDataset(torch.rand(2, 1, 6, 8, 8), torch.rand(2, 1, 6, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"training items of spatial size \(6, 8, 8\).*by 4"):
        train(prepare("scratch", model, cfg), cfg, odd)
    with pytest.raises(ValueError, match=r"validation items .* divisible by 4"):
        train(prepare("scratch", model, cfg), cfg, ok, val_set=odd, val_every=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no step


def test_3d_tgd_keeps_frozen_weights():
    model = _random_bn(new_model("dncnn", 4, 3, spatial_dims=3)).train()
    cfg = tiny_cfg("tgd", spatial_dims=3, iterations=2, threshold=0.9)
    data = TensorDataset(torch.rand(4, 1, 4, 8, 8), torch.rand(4, 1, 4, 8, 8))
    setup = prepare("tgd", model, cfg)
    train(setup, cfg, data)
    assert setup.fingerprint_before == setup.frozen_fingerprint()


@pytest.mark.parametrize("net", [
    DnCNN(in_channels=1, width=4, depth=4, spatial_dims=3),
    UNet(in_channels=1, widths=(4, 8, 8), spatial_dims=3),
], ids=["dncnn", "unet"])
def test_chunked_3d_denoising_equals_the_whole_volume(net):
    net = _random_bn(net)
    vol = np.random.default_rng(1).uniform(0.5, 2, (21, 14, 10)).astype(np.float32)
    whole = denoise_volume(net, vol, scale=0.5, chunk=None)
    assert whole.shape == vol.shape and whole.dtype == np.float32
    np.testing.assert_allclose(denoise_volume(net, vol, scale=0.5, chunk=4), whole,
                               rtol=1e-5, atol=1e-5)
    no_halo = denoise_volume(net, vol, scale=0.5, chunk=4, halo=0)
    assert np.abs(no_halo - whole).max() > 1e-3  # the halo is what makes it exact
    if isinstance(net, DnCNN):
        assert model_traits(net).receptive_radius == net.receptive_radius == 4
        with torch.no_grad():
            ref = net(torch.from_numpy(vol)[None, None] * 0.5)[0, 0].numpy() / 0.5
        np.testing.assert_allclose(whole, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="chunk"):
        denoise_volume(net, vol, chunk=0)
