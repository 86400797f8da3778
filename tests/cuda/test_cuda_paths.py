"""The same paths on CUDA: fused TGD backward, attach + training, denoising (eager, compiled,
bf16). Skipped without a GPU; ``bench/gpu/run_all.sh`` runs them on one."""

import copy

import numpy as np
import pytest
import torch

import tgd
from tgd.inference import denoise_volume
from tgd.models import DnCNN
from tgd.training import TrainConfig, prepare, train
from tgd.training.distributed import DistContext
from tgd.training.online import n2n_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def full_float32():
    """cuDNN convolutions default to TF32 (10-bit mantissa, ~1e-3 relative); these tests
    compare against float32 CPU results, so TF32 is off while they run."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
FORMATS = {2: torch.channels_last, 3: torch.channels_last_3d}


def _net(dims=2, width=24, seed=0):
    torch.manual_seed(seed)
    net = DnCNN(in_channels=3 if dims == 2 else 1, width=width, depth=4, spatial_dims=dims)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", ["activation", "parameter"])
def test_fused_backward_on_cuda_matches_cpu(dims, channels_last, mode):
    """Weight gradients of the attached net on CUDA equal those on the CPU (float tolerance);
    non-targeted rows are exactly zero."""
    net = _net(dims).train()
    plan = tgd.plan(net, 0.5)
    size = [12] * dims
    x = torch.randn(2, net.in_channels, *size)
    y = torch.randn(2, 1, *size)
    grads = {}
    for dev in ("cpu", "cuda"):
        m = copy.deepcopy(net).to(dev)
        xd, yd = x.to(dev), y.to(dev)
        if channels_last:
            m = m.to(memory_format=FORMATS[dims])
            xd = xd.contiguous(memory_format=FORMATS[dims])
        with tgd.attach(m, plan, mode=mode):
            ((m(xd) - yd) ** 2).mean().backward()
            mods = dict(m.named_modules())
            grads[dev] = {n: mods[n].parametrizations.weight.original.grad
                          for n, lp in plan.layers.items() if lp.role == "targeted"}
    for n, g in grads["cpu"].items():
        gc = grads["cuda"][n].cpu()
        torch.testing.assert_close(gc, g, rtol=1e-3, atol=1e-5)
        assert torch.all(gc[~plan.layers[n].mask] == 0)


def test_training_on_cuda_preserves_frozen_values():
    net = _net(2, width=32)
    plan = tgd.plan(net, 0.4)
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2, (6, 32, 32)).astype(np.float32)
    b = rng.uniform(0.5, 2, (6, 32, 32)).astype(np.float32)
    ds = n2n_dataset(a, b, patch_size=16, min_items=4)
    for amp in (None, "bf16"):
        model = copy.deepcopy(net)
        cfg = TrainConfig(method="online", width=32, depth=4, batch_size=4, patch_size=16,
                          iterations=4, amp=amp, channels_last=True)
        setup = prepare("online", model, cfg, plan=plan)
        res = train(setup, cfg, ds, ctx=DistContext(device=CUDA))
        assert next(setup.model.parameters()).is_cuda
        assert all(np.isfinite(v) for _, v in res.metrics["loss"])
        assert setup.fingerprint_before == setup.frozen_fingerprint()


@pytest.mark.parametrize("dims", [2, 3])
def test_denoise_on_cuda_matches_cpu_eager(dims):
    net = _net(dims, width=16).eval()
    vol = np.random.default_rng(1).uniform(0.5, 2, (10, 24, 24)).astype(np.float32)
    ref = denoise_volume(net, vol, scale=1.0, channels_last=False, chunk=None)
    gpu = net.to(CUDA)
    got = denoise_volume(gpu, vol, scale=1.0, chunk=4)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)
    bf = denoise_volume(gpu, vol, scale=1.0, amp="bf16", chunk=4)
    assert np.abs(bf - ref).max() / np.abs(ref).max() < 3e-2


@pytest.mark.parametrize("dims", [2, 3])
def test_compiled_denoise_on_cuda_matches_eager(dims):
    """torch.compile (inductor) output within float tolerance of eager."""
    net = _net(dims, width=16).eval()
    vol = np.random.default_rng(2).uniform(0.5, 2, (10, 24, 24)).astype(np.float32)
    ref = denoise_volume(net, vol, scale=1.0, channels_last=False, chunk=None)
    got = denoise_volume(net.to(CUDA), vol, scale=1.0, compile=True, batch_size=4, chunk=None)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)


def test_plan_of_a_cuda_model_equals_cpu_plan():
    net = _net(2, width=24)
    p_cpu = tgd.plan(net, 0.4)
    p_gpu = tgd.plan(copy.deepcopy(net).to(CUDA), 0.4)
    assert all(torch.equal(p_cpu.masks[k], p_gpu.masks[k].cpu()) for k in p_cpu.masks)
