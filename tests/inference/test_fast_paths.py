"""Fast paths against the plain ones on the CPU: bf16 autocast (training and denoising) within
a stated tolerance, and ``compile=True`` falling back to eager when compiling fails."""

import numpy as np
import pytest
import torch

from tgd.data import slices_25d
from tgd.inference import denoise_volume
from tgd.inference.fast import amp_dtype, compiled_forward
from tgd.models import DnCNN
from tgd.training import prepare, train
from tgd.training.config import TrainConfig

from ..conftest import tiny_cfg

# bf16 keeps 8 bits of mantissa: one rounding is ~4e-3 relative; through a few convs the
# denoised volume stays within 3e-2 of float32 relative to its largest value.
BF16_REL_TOL = 3e-2


def _vol(seed=1, shape=(6, 16, 16)):
    return np.random.default_rng(seed).uniform(0.5, 2, shape).astype(np.float32)


def test_denoise_bf16_within_tolerance(pretrained):
    vol = _vol()
    ref = denoise_volume(pretrained, vol, scale=0.5)
    got = denoise_volume(pretrained, vol, scale=0.5, amp="bf16")
    assert got.dtype == np.float32
    assert np.abs(got - ref).max() / np.abs(ref).max() < BF16_REL_TOL
    assert not np.array_equal(got, ref)  # autocast really ran in bf16


def test_denoise_3d_bf16_within_tolerance():
    torch.manual_seed(0)
    net = DnCNN(in_channels=1, width=8, depth=4, spatial_dims=3).eval()
    vol = _vol(2, (10, 12, 12))
    ref = denoise_volume(net, vol, scale=1.0, chunk=4)
    got = denoise_volume(net, vol, scale=1.0, chunk=4, amp="bf16")
    assert np.abs(got - ref).max() / np.abs(ref).max() < BF16_REL_TOL


def test_amp_option_is_checked(pretrained):
    with pytest.raises(ValueError, match="amp"):
        denoise_volume(pretrained, _vol(), amp="fp8")
    with pytest.raises(ValueError, match="amp"):
        amp_dtype("float16")
    with pytest.raises(ValueError, match="amp"):
        tiny_cfg("online", amp="fp16").validate()


def test_compile_falls_back_to_eager(pretrained, monkeypatch):
    vol = _vol()
    ref = denoise_volume(pretrained, vol, scale=0.5, batch_size=4)

    def broken(*a, **k):
        def fn(x):
            raise RuntimeError("no compiler here")
        return fn

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="running eagerly"):
        got = denoise_volume(pretrained, vol, scale=0.5, batch_size=4, compile=True)
    np.testing.assert_array_equal(got, ref)  # the last batch of 2 is padded to 4 and cropped

    def unavailable(*a, **k):
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(torch, "compile", unavailable)
    net = pretrained.eval()
    with pytest.warns(UserWarning, match="unavailable"):
        fwd = compiled_forward(net)
    x = slices_25d(vol)[:2]
    with torch.no_grad():
        assert torch.equal(fwd(x), net(x))


def test_online_training_with_bf16_autocast(studies, pretrained):
    """A bf16 TGD run: finite losses, frozen values kept exactly, weights change."""
    st = studies["v2"][0]
    h1, h2 = st.noise2noise("v2", 60)
    from tgd.workflows.online import adapt_online

    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    cfg = tiny_cfg("online", iterations=3, threshold=0.5, patch_size=16, amp="bf16")
    setup, res, _ = adapt_online(pretrained, h1, h2, cfg)
    assert all(np.isfinite(v) for _, v in res.metrics["loss"])
    assert setup.fingerprint_before == setup.frozen_fingerprint()
    after = setup.finish().state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_bf16_training_step_close_to_float32(v2_set, pretrained_state):
    """The first-iteration loss under bf16 autocast is within 2e-2 relative of float32's."""
    losses = {}
    for amp in (None, "bf16"):
        model = DnCNN(width=8, depth=4)
        model.load_state_dict(pretrained_state)
        cfg = TrainConfig(method="tgd", width=8, depth=4, batch_size=4, patch_size=None,
                          iterations=1, threshold=0.5, amp=amp)
        res = train(prepare("tgd", model, cfg), cfg, v2_set)
        losses[amp] = res.metrics["loss"][0][1]
    assert abs(losses["bf16"] - losses[None]) / losses[None] < 2e-2


def test_cached_crop_centres_equal_the_direct_computation():
    """Crops come from the object voxels found once per item: the same crops as computing
    them from the reference slice at every access (body voxels in row-major order, same RNG
    draw)."""
    from tgd.data.datasets import object_voxels
    from tgd.training.online import n2n_dataset

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (4, 24, 24)).astype(np.float32)
    a[:, :8] = 0
    a[1] = 0  # an empty target slice: uniform random centre
    b = rng.uniform(0, 1, (4, 24, 24)).astype(np.float32)
    ds = n2n_dataset(a, b, patch_size=8, scale=1.0)
    for epoch in (0, 3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            x, y = ds[i]
            ref = torch.from_numpy((b if i < 4 else a)[i % 4])
            r = np.random.default_rng([0, epoch, i])
            obj = object_voxels(ref.numpy())
            if len(obj):
                cy, cx = divmod(int(obj[r.integers(len(obj))]), 24)
            else:
                cy, cx = int(r.integers(24)), int(r.integers(24))
            y0, x0 = min(max(cy - 4, 0), 16), min(max(cx - 4, 0), 16)
            assert torch.equal(y[0], ref[y0:y0 + 8, x0:x0 + 8])


def test_compiled_forward_is_reused_per_net_and_not_by_copies(pretrained, monkeypatch):
    import copy

    calls = []
    monkeypatch.setattr(torch, "compile", lambda net, **k: calls.append(net) or net)
    net = pretrained.eval()
    f1 = compiled_forward(net)
    assert compiled_forward(net) is f1 and len(calls) == 1
    twin = copy.deepcopy(net)
    compiled_forward(twin)
    assert len(calls) == 2 and calls[1] is twin
