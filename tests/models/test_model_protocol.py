"""The model protocol (tgd.models.traits) and registry (tgd.models.registry): tgd's nets, a
user's own net found by register_model or by an entry point, through the library functions the
commands call and through `tgd denoise` / `tgd online` themselves."""

import importlib
import json
import re
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

import tgd
from tgd.cli import main
from tgd.inference import denoise_volume
from tgd.models import (
    ARCHS,
    DnCNN,
    ModelTraits,
    UNet,
    build_model,
    model_spec,
    model_traits,
    new_model,
    register_model,
    registry,
)
from tgd.models.traits import stack_radius
from tgd.training import TrainConfig, load_checkpoint, load_model, prepare, save_model, train
from tgd.training.methods import planning_input
from tgd.training.online import n2n_dataset

from ..conftest import tiny_cfg

# a user's network: neither DnCNN nor UNet, with a pooling level, so it has a size multiple
# and a receptive field tgd cannot infer; its class says both
PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        size_multiple = 2
        receptive_radius = 8  # an upper bound: 1 (enc) + 1 (pool) + 2 (mid) + 1 (up) + 1 (out)

        def __init__(self, in_channels=3, width=4, spatial_dims=2):
            super().__init__()
            conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
            pool = nn.AvgPool2d if spatial_dims == 2 else nn.AvgPool3d
            self.in_channels, self.width, self.spatial_dims = in_channels, width, spatial_dims
            self.enc = conv(in_channels, width, 3, padding=1)
            self.pool = pool(2)
            self.mid = conv(width, width, 3, padding=1)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.out = conv(2 * width, 1, 3, padding=1)

        def spec(self):
            return {"arch": "TinyNet", "in_channels": self.in_channels, "width": self.width,
                    "spatial_dims": self.spatial_dims}

        def forward(self, x):
            e = torch.relu(self.enc(x))
            m = self.up(torch.relu(self.mid(self.pool(e))))
            c = self.in_channels // 2
            return x[:, c:c + 1] - self.out(torch.cat([e, m], 1))
''')


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry as tgd ships it, restored after the test."""
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    return registry._registered


@pytest.fixture
def plugin(tmp_path, monkeypatch, clean_registry):
    """An installed package `tgd_test_plugin` that advertises TinyNet in the tgd.models entry
    point group (a .dist-info on sys.path, as pip would leave it)."""
    (tmp_path / "tgd_test_plugin.py").write_text(PLUGIN)
    info = tmp_path / "tgd_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tgd-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tgd.models]\nTinyNet = tgd_test_plugin:TinyNet\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("tgd_test_plugin")
    finally:
        sys.modules.pop("tgd_test_plugin", None)


def test_tgd_nets_state_their_traits():
    d3 = DnCNN(in_channels=1, width=4, depth=5, spatial_dims=3)
    u = UNet(widths=(4, 8, 8))
    assert model_traits(d3) == ModelTraits(3, 1, 1, 5)
    assert model_traits(u) == ModelTraits(2, 4, 3, u.receptive_radius)
    # the generic inference agrees with DnCNN's own count, and refuses a U-Net (it pools)
    assert stack_radius(d3, 3) == d3.receptive_radius
    assert stack_radius(u, 2) is None
    assert d3.example_input().shape == (1, 1, 32, 32, 32)
    assert planning_input(UNet(in_channels=1, widths=(1,) * 7)).shape == (1, 1, 64, 64)
    assert model_traits(d3).memory_format == torch.channels_last_3d
    assert model_traits(u).memory_format == torch.channels_last


def test_traits_of_other_nets_are_inferred_or_passed():
    stack = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv3d(4, 1, 5, padding=4, dilation=2))
    t = model_traits(stack)
    assert (t.spatial_dims, t.size_multiple, t.in_channels, t.receptive_radius) == (3, 1, 2, 5)
    pooled = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
    assert model_traits(pooled).receptive_radius is None
    given = model_traits(pooled, size_multiple=2, receptive_radius=7)
    assert (given.spatial_dims, given.size_multiple, given.receptive_radius) == (2, 2, 7)
    with pytest.raises(ValueError, match="no conv layer.*spatial_dims"):
        model_traits(nn.Sequential(nn.Flatten()))
    # the same under tgd.attach (parametrized convs)
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    before = model_traits(plain)
    handle = tgd.attach(plain, tgd.plan(plain, 1.0))
    assert model_traits(plain) == before == ModelTraits(2, 1, 3, 2)
    handle.detach()
    pooled.size_multiple = 0  # an attribute a user set on the instance is read, and checked
    with pytest.raises(ValueError, match="size_multiple must be an integer >= 1"):
        model_traits(pooled)


def test_unknown_receptive_field_asks_for_a_halo():
    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.AvgPool3d(2),
                        nn.Upsample(scale_factor=2), nn.Conv3d(2, 1, 3, padding=1))
    vol = np.random.default_rng(0).uniform(0.5, 2, (8, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="receptive field.*--halo.*receptive_radius"):
        denoise_volume(net, vol, scale=1.0, chunk=2)
    net.size_multiple = 2
    whole = denoise_volume(net, vol, scale=1.0, chunk=None)
    np.testing.assert_allclose(denoise_volume(net, vol, scale=1.0, chunk=2, halo=6), whole,
                               rtol=1e-5, atol=1e-6)


def test_checkpoints_written_before_the_registry_still_load(tmp_path):
    # specs exactly as tgd wrote them before (and before 3-D support: no spatial_dims)
    specs = [
        {"arch": "DnCNN", "in_channels": 3, "out_channels": 1, "width": 8, "depth": 4,
         "kernel_size": 3, "spatial_dims": 2},
        {"arch": "UNet", "in_channels": 1, "out_channels": 1, "widths": [4, 8],
         "spatial_dims": 3},
        {"arch": "DnCNN", "in_channels": 3, "out_channels": 1, "width": 8, "depth": 4,
         "kernel_size": 3},
    ]
    for spec in specs[:2]:
        assert json.dumps(model_spec(build_model(spec))) == json.dumps(spec)
    assert build_model(specs[2]).spatial_dims == 2
    torch.manual_seed(0)
    net = new_model("unet", 4, 2, spatial_dims=3)
    save_model(tmp_path / "u", net, {})
    assert json.loads((tmp_path / "u.json").read_text())["model"] == specs[1]
    back, _ = load_model(tmp_path / "u")
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_registry_errors_name_the_problem(clean_registry):
    with pytest.raises(ValueError, match="unknown model architecture 'Nope'.*register_model"):
        build_model({"arch": "Nope"})
    with pytest.raises(ValueError, match="bad model settings"):
        build_model({"arch": "DnCNN", "colour": 1})
    with pytest.raises(ValueError, match="spec\\(\\) method"):
        model_spec(nn.Conv2d(1, 1, 3))

    class DnCNNLookalike(DnCNN):
        pass

    with pytest.raises(ValueError, match="loads as tgd.models.dncnn.DnCNN"):
        model_spec(DnCNNLookalike())
    with pytest.raises(ValueError, match="taken by"):
        register_model(DnCNNLookalike, "DnCNN")
    with pytest.raises(ValueError, match=re.escape(f"arch must be one of {tuple(ARCHS)}")):
        TrainConfig(arch="nope", iterations=1).validate()


def test_a_registered_user_net_trains_with_tgd_and_denoises(tmp_path, clean_registry):
    ns: dict = {}
    exec(PLUGIN, ns)  # noqa: S102 - the test's own source
    TinyNet = register_model(ns["TinyNet"])
    torch.manual_seed(0)
    net = TinyNet()
    save_model(tmp_path / "mine", net, {})
    model, _ = load_model(tmp_path / "mine")
    assert type(model) is TinyNet
    # TGD-N2N on it, as `tgd online` runs it (prepare + train), then 2.5-D denoising of a
    # slice size that is not a multiple of 2 (padded to it, cropped back)
    rng = np.random.default_rng(1)
    h1, h2 = rng.uniform(0.5, 2, (2, 4, 16, 16)).astype(np.float32)
    cfg = tiny_cfg("online", iterations=2, threshold=0.5, patch_size=8)
    setup = prepare("online", model, cfg)
    train(setup, cfg, n2n_dataset(h1, h2, patch_size=8, seed=0))
    assert setup.frozen_fingerprint() == setup.fingerprint_before
    out = denoise_volume(setup.finish(), rng.uniform(0.5, 2, (3, 15, 13)), scale=1.0)
    assert out.shape == (3, 15, 13) and np.isfinite(out).all()


def _nifti(path, vol):
    nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)), np.diag([2.0, 2.0, 3.0, 1.0])), path)


def test_tgd_denoise_and_online_run_a_net_from_an_entry_point(tmp_path, plugin, clean_registry,
                                                              halves):
    torch.manual_seed(0)
    net3 = plugin.TinyNet(in_channels=1, spatial_dims=3)
    save_model(tmp_path / "net3", net3, {})
    save_model(tmp_path / "net2", plugin.TinyNet(), {})
    clean_registry.pop("TinyNet")  # the commands must find it through the entry point
    vol = np.random.default_rng(2).uniform(0.5, 2, (11, 12, 10)).astype(np.float32)
    _nifti(tmp_path / "in.nii.gz", vol)
    outs = {}
    for name, chunk in (("whole", ["--chunk", "none"]), ("chunked", ["--chunk", "2"])):
        assert main(["denoise", str(tmp_path / "in.nii.gz"), str(tmp_path / f"{name}.nii.gz"),
                     "-c", str(tmp_path / "net3"), "--no-progress", *chunk]) == 0
        outs[name] = np.asarray(nib.load(tmp_path / f"{name}.nii.gz").dataobj)
    assert outs["whole"].shape == (10, 12, 11)
    # the class's receptive_radius is the default halo: chunking changes nothing
    np.testing.assert_allclose(outs["chunked"], outs["whole"], rtol=1e-5, atol=1e-6)

    study = halves(0)  # a simulated study of 4 slices of 32 x 32
    rc = main(["online", "-c", str(tmp_path / "net2"), "--half1", study["half1"], "--half2",
               study["half2"], "--threshold", "0.5", "--out", str(tmp_path / "on"),
               "--batch-size", "4", "--patch-size", "16", "--no-progress", "--iterations", "2"])
    assert rc == 0
    meta = load_checkpoint(tmp_path / "on").meta
    assert meta["model"] == plugin.TinyNet().spec()
    assert meta["frozen_fingerprint"]["preserved"]
    assert nib.load(tmp_path / "on" / "denoised.nii.gz").shape == (32, 32, 4)
    adapted, _ = load_model(tmp_path / "on")
    assert type(adapted).__name__ == "TinyNet"
