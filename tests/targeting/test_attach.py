import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import tgd
from tgd.models import DnCNN
from tgd.targeting.geometry import output_channel_entries

OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.5),
}


def make_dncnn(seed=0, width=16):
    torch.manual_seed(seed)
    m = DnCNN(width=width)
    # Give the batch-norm layers non-trivial running statistics and affine values.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
    return m


def train(model, opt, steps=4, seed=1, size=12):
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        x = torch.randn(4, 3, size, size, generator=g)
        target = torch.randn(4, 1, size, size, generator=g)
        opt.zero_grad()
        loss = (model(x) - target).square().mean()
        loss.backward()
        opt.step()


def assert_preserved(before: nn.Module, after: nn.Module, plan, expect_change=True):
    """Every non-targeted value bit-identical; targeted values changed somewhere."""
    mods_b, mods_a = dict(before.named_modules()), dict(after.named_modules())
    changed = False
    for name, lp in plan.layers.items():
        keep = ~lp.mask
        cb, ca = mods_b[name], mods_a[name]
        wk = output_channel_entries(cb, keep).expand_as(cb.weight)
        assert torch.equal(ca.weight[wk], cb.weight[wk]), f"{name}.weight moved"
        changed |= not torch.equal(ca.weight[~wk], cb.weight[~wk])
        if cb.bias is not None:
            assert torch.equal(ca.bias[keep], cb.bias[keep]), f"{name}.bias moved"
        for n in lp.norms:
            for attr in ("weight", "bias", "running_mean", "running_var"):
                tb, ta = getattr(mods_b[n], attr, None), getattr(mods_a[n], attr, None)
                if tb is None:
                    continue
                assert torch.equal(ta[keep], tb[keep]), f"{n}.{attr} moved"
                if lp.mask.any() and attr == "running_mean":
                    changed |= not torch.equal(ta[lp.mask], tb[lp.mask])
    if expect_change:
        assert changed, "nothing was trained: the test would not notice a broken TGD"


@pytest.mark.parametrize("mode", ["activation", "parameter"])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_exact_preservation(mode, opt_name):
    model = make_dncnn()
    before = copy.deepcopy(model)
    plan = tgd.plan(model, 0.5)
    assert any(lp.mask.any() for lp in plan.layers.values())
    handle = tgd.attach(model, plan, mode=mode)
    train(model, OPTIMIZERS[opt_name](model.parameters()))
    assert_preserved(before, model, plan)  # while attached (effective values)
    handle.detach()
    assert_preserved(before, model, plan)
    assert torch.equal(model.body[-1].weight, before.body[-1].weight)  # frozen last layer


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    threshold=st.floats(0.05, 0.95),
    width=st.sampled_from([4, 8, 12]),
    opt_name=st.sampled_from(list(OPTIMIZERS)),
    mode=st.sampled_from(["activation", "parameter"]),
    seed=st.integers(0, 2**16),
    channels_last=st.booleans(),
)
def test_exact_preservation_property(threshold, width, opt_name, mode, seed, channels_last):
    model = make_dncnn(seed, width)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    before = copy.deepcopy(model)
    plan = tgd.plan(model, threshold)
    opt = OPTIMIZERS[opt_name](model.parameters())  # built before attach: must keep working
    with tgd.attach(model, plan, mode=mode):
        train(model, opt, steps=2, seed=seed, size=8)
    assert_preserved(before, model, plan, expect_change=False)


@pytest.mark.parametrize("mode", ["activation", "parameter"])
def test_forward_identical_before_first_step(mode):
    model = make_dncnn()
    ref = copy.deepcopy(model)
    x = torch.randn(3, 3, 16, 16)
    with tgd.attach(model, tgd.plan(model, 0.4), mode=mode):
        for train_mode in (False, True):  # eval first: a training forward moves running stats
            model.train(train_mode)
            ref.train(train_mode)
            assert torch.equal(model(x), ref(x))


def masked_reference_grads(model, plan, x, target, mode):
    """The paper's formulation on a plain copy: multiply dL/dY by the mask after each conv."""
    ref = copy.deepcopy(model)
    modules = dict(ref.named_modules())
    hooks = []

    def mask_output_grad(m):
        def hook(mod, args, out):
            out.register_hook(lambda g: g * m)

        return hook

    if mode == "activation":
        for name, lp in plan.layers.items():
            if lp.role == "targeted":
                m = lp.mask.float().view(1, -1, 1, 1)
                hooks.append(modules[name].register_forward_hook(mask_output_grad(m)))
    loss = (ref(x) - target).square().mean()
    loss.backward()
    for h in hooks:
        h.remove()
    grads = {}
    for name, lp in plan.layers.items():
        w = modules[name].weight
        grads[name] = w.grad * output_channel_entries(modules[name], lp.mask).float()
    return grads


@pytest.mark.parametrize("mode", ["activation", "parameter"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradients_match_masked_formulation(mode, channels_last):
    model = make_dncnn(3)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    plan = tgd.plan(model, 0.5)
    x, target = torch.randn(2, 3, 10, 10), torch.randn(2, 1, 10, 10)
    ref = masked_reference_grads(model, plan, x, target, mode)
    with tgd.attach(model, plan, mode=mode):
        (model(x) - target).square().mean().backward()
        modules = dict(model.named_modules())
        for name, lp in plan.layers.items():
            conv = modules[name]
            if lp.role == "frozen":
                assert conv.parametrizations.weight.original.grad is None
                continue
            got = conv.parametrizations.weight.original.grad
            torch.testing.assert_close(got, ref[name], rtol=1e-4, atol=1e-6)
            assert torch.all(got[~lp.mask] == 0)


def test_activation_mode_cuts_gradient_to_earlier_layers():
    model = make_dncnn(4)
    plan = tgd.plan(model, 0.5)
    x, target = torch.randn(2, 3, 10, 10), torch.randn(2, 1, 10, 10)
    g = {}
    for mode in ("activation", "parameter"):
        m = copy.deepcopy(model)
        with tgd.attach(m, plan, mode=mode):
            (m(x) - target).square().mean().backward()
            g[mode] = m.body[0].parametrizations.weight.original.grad.clone()
    assert not torch.allclose(g["activation"], g["parameter"])


class GenericNet(nn.Module):
    """Grouped, transposed and 1-D convs take the hook-based TGD layer path."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1),
            nn.GroupNorm(2, 8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=4),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 6, 2, stride=2, groups=2),
            nn.InstanceNorm2d(6, affine=True, track_running_stats=True),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding="same", padding_mode="reflect"),
            nn.ReLU(),
            nn.Conv2d(6, 1, 1),
        )

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("mode", ["activation", "parameter"])
def test_generic_layers_preserved(mode):
    torch.manual_seed(5)
    model = GenericNet()
    before = copy.deepcopy(model)
    plan = tgd.plan(model, 0.6)
    assert {lp.role for lp in plan.layers.values()} == {"targeted", "frozen"}
    x = torch.randn(2, 2, 8, 8)
    with tgd.attach(model, plan, mode=mode):
        assert torch.equal(model(x), copy.deepcopy(before)(x))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.3)
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    assert_preserved(before, model, plan)


def test_conv1d_and_conv3d():
    for dims, conv, norm in ((1, nn.Conv1d, nn.BatchNorm1d), (3, nn.Conv3d, nn.BatchNorm3d)):
        torch.manual_seed(6)
        model = nn.Sequential(conv(2, 6, 3, padding=1), norm(6), nn.ReLU(), conv(6, 6, 3),
                              norm(6), nn.ReLU(), conv(6, 1, 1))  # fmt: skip
        before = copy.deepcopy(model)
        plan = tgd.plan(model, 0.6)
        x = torch.randn(2, 2, *([6] * dims))
        with tgd.attach(model, plan):
            assert torch.equal(model(x), copy.deepcopy(before)(x))
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
            for _ in range(2):
                opt.zero_grad()
                model(x).square().mean().backward()
                opt.step()
        assert_preserved(before, model, plan)


def test_detach_leaves_nothing_behind():
    model = make_dncnn()
    ref = copy.deepcopy(model)
    params_before = {n: p for n, p in model.named_parameters()}
    flags = {n: p.requires_grad for n, p in params_before.items()}
    classes = {n: type(m) for n, m in model.named_modules()}
    handle = tgd.attach(model, tgd.plan(model, 0.4))
    assert any(type(m) is not classes.get(n) for n, m in model.named_modules())
    train(model, torch.optim.Adam(model.parameters(), lr=1e-2))
    merged = handle.effective_state_dict()
    handle.detach()
    assert {n: type(m) for n, m in model.named_modules()} == classes
    assert list(model.state_dict()) == list(ref.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, merged[k])
    for n, p in model.named_parameters():
        assert p is params_before[n] and p.requires_grad == flags[n]
    for mod in model.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks
        assert "_conv_forward" not in mod.__dict__
    assert not tgd.is_attached(model)
    handle.detach()  # idempotent
    x = torch.randn(2, 3, 12, 12)
    model.eval()
    ref.eval()
    assert model(x).shape == ref(x).shape


def test_tgd_n_replans_on_adapted_weights():
    model = make_dncnn()
    p1 = tgd.plan(model, 0.5)
    with tgd.attach(model, p1):
        train(model, torch.optim.Adam(model.parameters(), lr=5e-2), steps=6)
    p2 = tgd.plan(model, 0.5)
    assert p2.weights_sha256 != p1.weights_sha256
    assert any(not torch.equal(p1.layers[n].kse, p2.layers[n].kse) for n in p1.layers if
               p1.layers[n].kse is not None)  # fmt: skip
    before = copy.deepcopy(model)
    with tgd.attach(model, p2):
        train(model, torch.optim.AdamW(model.parameters(), lr=1e-2), steps=3)
    assert_preserved(before, model, p2)


def test_stale_plan_warns():
    model = make_dncnn()
    p1 = tgd.plan(model, 0.5)
    with tgd.attach(model, p1):
        train(model, torch.optim.Adam(model.parameters(), lr=5e-2), steps=2)
    with pytest.warns(UserWarning, match="differ"), tgd.attach(model, p1):
        pass


def test_frozen_fingerprint_detects_changes():
    model = make_dncnn()
    plan = tgd.plan(model, 0.5)
    fp = tgd.frozen_fingerprint(model, plan)
    with tgd.attach(model, plan) as h:
        train(model, torch.optim.AdamW(h.trainable_parameters(), lr=1e-2, weight_decay=0.1))
        assert tgd.frozen_fingerprint(model, plan) == fp
    assert tgd.frozen_fingerprint(model, plan) == fp
    keep = (~plan.masks["body.2"]).nonzero()[0, 0]
    with torch.no_grad():
        model.body[2].weight[keep, 0, 0, 0] += 1e-6
    assert tgd.frozen_fingerprint(model, plan) != fp


def test_errors():
    model = make_dncnn()
    plan = tgd.plan(model, 0.3)
    with pytest.raises(ValueError, match="mode"):
        tgd.attach(model, plan, mode="weights")
    with pytest.raises(TypeError, match="TGDPlan"):
        tgd.attach(model, plan.masks)
    with pytest.raises(ValueError, match="does not match"):
        tgd.attach(make_dncnn(width=8), plan)
    with pytest.raises(ValueError, match="does not match"):
        tgd.attach(DnCNN(width=16, depth=6), plan)
    h = tgd.attach(model, plan)
    with pytest.raises(RuntimeError, match="already attached"):
        tgd.attach(model, plan)
    with pytest.raises(ValueError, match="plain model"):
        tgd.drop_kernels(model, plan)
    h.detach()
    tgd.attach(model, plan).detach()


def test_eval_mode_keeps_running_stats():
    model = make_dncnn()
    before = copy.deepcopy(model)
    plan = tgd.plan(model, 0.9)
    with tgd.attach(model, plan):
        model.eval()
        model(torch.randn(2, 3, 8, 8))
    for a, b in zip(model.buffers(), before.buffers(), strict=True):
        assert torch.equal(a, b)


def test_module_level_detach_and_effective_state_dict():
    model = make_dncnn()
    plan = tgd.plan(model, 0.4)
    assert not tgd.is_attached(model)
    assert tgd.detach(model) is model  # nothing attached: a no-op
    plain = tgd.effective_state_dict(model)
    assert list(plain) == list(model.state_dict())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in plain.items())

    handle = tgd.attach(model, plan)
    assert tgd.is_attached(model)
    train(model, torch.optim.Adam(model.parameters(), lr=1e-2))
    attached = tgd.effective_state_dict(model)
    assert list(attached) == list(plain)  # the plain keys, not the parametrization's
    assert any(not torch.equal(attached[k], plain[k]) for k in plain)
    assert tgd.detach(model) is model
    assert not tgd.is_attached(model) and not handle.attached
    for k, v in model.state_dict().items():
        assert torch.equal(v, attached[k])


def test_plan_check_names_the_mismatch():
    model = make_dncnn()
    plan = tgd.plan(model, 0.3)
    plan.check(model)  # the model it was made for
    with pytest.raises(ValueError, match="layers whose shape differs"):
        plan.check(make_dncnn(width=8))
    with pytest.raises(ValueError, match="layers missing from the model"):
        plan.check(DnCNN(width=16, depth=6))
    bad = tgd.TGDPlan.from_dict(plan.to_dict())
    first = next(iter(bad.layers.values()))
    first.mask = first.mask[:-1]
    with pytest.raises(ValueError, match="one per channel"):
        bad.check(model)
