"""TGD on branching ConvNets: residual additions, concatenations (U-Nets), depthwise, 3-D, MONAI."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tgd

from .test_attach import assert_preserved

monai_nets = pytest.importorskip("monai.networks.nets")

PHI = 0.5


def kse(model, name):
    return tgd.kse_scores(dict(model.named_modules())[name])


def src(name, channels):
    return [[(name, n)] for n in range(channels)]


class ResNetStack(nn.Module):
    """stem -> two residual blocks (a_i, b_i) -> final; the residual stream couples stem, b1, b2."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(2, c, 3, padding=1)
        self.a1, self.b1 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.n1 = nn.BatchNorm2d(c)
        self.a2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.n2 = nn.BatchNorm2d(c)
        self.final = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x):
        h0 = torch.relu(self.stem(x))
        h1 = h0 + self.b1(torch.relu(self.n1(self.a1(h0))))
        h2 = h1 + self.b2(torch.relu(self.n2(self.a2(h1))))
        return self.final(h2)


def test_resnet_hand_derived():
    torch.manual_seed(0)
    m = ResNetStack()
    p = tgd.plan(m, PHI)
    # reads: a1 <- stem; a2 <- stem+b1 (coupled); final <- stem+b1+b2; b_i <- a_i
    assert p.reads["a1"] == src("stem", 8)
    assert p.reads["a2"] == [[("b1", n), ("stem", n)] for n in range(8)]
    assert p.reads["final"] == [[("b1", n), ("b2", n), ("stem", n)] for n in range(8)]
    assert p.reads["b1"] == src("a1", 8) and p.reads["b2"] == src("a2", 8)
    stream = (kse(m, "a1") < PHI) & (kse(m, "a2") < PHI) & (kse(m, "final") < PHI)
    for name in ("stem", "b1", "b2"):
        assert torch.equal(p.masks[name], stream), name  # coupled: together or not at all
    assert torch.equal(p.masks["a1"], kse(m, "b1") < PHI)
    assert torch.equal(p.masks["a2"], kse(m, "b2") < PHI)
    assert p.norms["n1"].producer == "a1" and torch.equal(p.norms["n1"].mask, p.masks["a1"])
    assert p.layers["final"].role == "frozen"
    # the decisive score of a coupled channel is the largest over all its reads
    expected = torch.stack([kse(m, "a1"), kse(m, "a2"), kse(m, "final")]).amax(0)
    torch.testing.assert_close(p.layers["b1"].kse, expected)


class DenseStack(nn.Module):
    """DenseNet-style: every conv reads the concatenation of all earlier feature maps."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.c1 = nn.Conv2d(4, 3, 3, padding=1)
        self.c2 = nn.Conv2d(7, 5, 3, padding=1)
        self.norm = nn.BatchNorm2d(12)
        self.final = nn.Conv2d(12, 1, 1)

    def forward(self, x):
        x0 = self.stem(x)
        x1 = torch.cat([x0, F.relu(self.c1(x0))], 1)
        x2 = torch.cat([x1, F.relu(self.c2(x1))], dim=1)
        return self.final(F.relu(self.norm(x2)))


def test_densenet_hand_derived():
    torch.manual_seed(1)
    m = DenseStack()
    p = tgd.plan(m, PHI)
    assert p.reads["c2"] == src("stem", 4) + src("c1", 3)
    assert p.reads["final"] == src("stem", 4) + src("c1", 3) + src("c2", 5)
    k1, k2, kf = kse(m, "c1"), kse(m, "c2"), kse(m, "final")
    assert torch.equal(p.masks["stem"], (k1 < PHI) & (k2[:4] < PHI) & (kf[:4] < PHI))
    assert torch.equal(p.masks["c1"], (k2[4:] < PHI) & (kf[4:7] < PHI))
    assert torch.equal(p.masks["c2"], kf[7:] < PHI)
    # a norm over a concatenation follows each range's producer
    assert p.norms["norm"].producer is None
    want = torch.cat([p.masks["stem"], p.masks["c1"], p.masks["c2"]])
    assert torch.equal(p.norms["norm"].mask, want)


class DepthwiseSeparable(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, 6, 1), nn.BatchNorm2d(6), nn.ReLU6(),
            nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6), nn.ReLU6(),
            nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 1, 3, padding=1),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


def test_depthwise_separable_hand_derived():
    torch.manual_seed(2)
    m = DepthwiseSeparable()
    p = tgd.plan(m, PHI)
    kd = kse(m, "net.3")  # depthwise: one kernel per channel, KSE from sparsity alone
    w = m.net[3].weight.detach().abs().sum((1, 2, 3)).double()
    s = (w - w.min()) / (w.max() - w.min())
    torch.testing.assert_close(kd, ((s.sqrt() - 0) / s.sqrt().max()).float())
    assert torch.equal(p.masks["net.0"], kd < PHI)
    assert torch.equal(p.masks["net.3"], kse(m, "net.6") < PHI)
    assert torch.equal(p.masks["net.6"], kse(m, "net.9") < PHI)


class TinyUNet(nn.Module):
    """enc1 -> pool -> enc2 -> up (ConvTranspose) -> cat(enc1, up) -> dec -> final."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(1, 4, 3, padding=1)
        self.enc2 = nn.Conv2d(4, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.dec = nn.Conv2d(8, 4, 3, padding=1)
        self.final = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        e1 = F.relu(self.enc1(x))
        e2 = F.relu(self.enc2(F.max_pool2d(e1, 2)))
        d = F.relu(self.dec(torch.cat([e1, F.relu(self.up(e2))], 1)))
        return x + self.final(d)


def test_unet_hand_derived():
    torch.manual_seed(3)
    m = TinyUNet()
    p = tgd.plan(m, PHI)
    assert p.reads["dec"] == src("enc1", 4) + src("up", 4)
    assert p.reads["up"] == src("enc2", 8)  # a transposed conv scores its input channels
    kd = kse(m, "dec")
    assert torch.equal(p.masks["enc1"], (kse(m, "enc2") < PHI) & (kd[:4] < PHI))
    assert torch.equal(p.masks["enc2"], kse(m, "up") < PHI)
    assert torch.equal(p.masks["up"], kd[4:] < PHI)
    assert p.layers["final"].reason == "output layer"


@pytest.mark.parametrize("mode", ["activation", "parameter"])
@pytest.mark.parametrize("net", [ResNetStack, DenseStack, DepthwiseSeparable, TinyUNet])
def test_preservation_with_adamw(net, mode):
    torch.manual_seed(4)
    m = net()
    channels = next(c for c in m.modules() if isinstance(c, nn.Conv2d)).in_channels
    x = torch.randn(2, channels, 16, 16)
    check_adaptation(m, x, mode)


def check_adaptation(m, x, mode, threshold=0.6):
    before = copy.deepcopy(m)
    p = tgd.plan(m, threshold, example_input=x[:1])
    fp = tgd.frozen_fingerprint(m, p)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.2)
    m.train()
    with tgd.attach(m, p, mode=mode):
        ref = copy.deepcopy(before).train()
        assert torch.equal(m(x), ref(x))  # forward identity before the first step
        for _ in range(3):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
        assert tgd.frozen_fingerprint(m, p) == fp
    assert tgd.frozen_fingerprint(m, p) == fp
    assert_preserved(before, m, p)
    mods_b, mods_a = dict(before.named_modules()), dict(m.named_modules())
    for name, npl in p.norms.items():  # norms of every kind, including after concatenations
        keep = ~npl.mask
        for attr in ("weight", "bias", "running_mean", "running_var"):
            tb = getattr(mods_b[name], attr, None)
            if tb is not None:
                assert torch.equal(getattr(mods_a[name], attr)[keep], tb[keep]), (name, attr)
    for name in p.other_parameters:  # e.g. MONAI's PReLU slopes
        assert torch.equal(m.get_parameter(name), before.get_parameter(name))
    return p


def monai_unet(dims, norm):
    return monai_nets.UNet(
        spatial_dims=dims, in_channels=1, out_channels=1, channels=(4, 8, 16), strides=(2, 2),
        num_res_units=2, norm=norm,
    )  # fmt: skip


def monai_basic_unet(dims):
    return monai_nets.BasicUNet(spatial_dims=dims, in_channels=1, out_channels=1,
                                features=(4, 4, 8, 8, 16, 4))  # fmt: skip


@pytest.mark.parametrize("dims", [2, 3])
def test_monai_basic_unet(dims):
    torch.manual_seed(5)
    m = monai_basic_unet(dims)
    x = torch.randn(2, 1, *([32] * dims))  # four 2x poolings: 2 pixels left for InstanceNorm
    k_dec = kse(m, "upcat_1.convs.conv_0.conv")  # before adaptation changes the weights
    k_down = kse(m, "down_1.convs.conv_0.conv")
    p = check_adaptation(m, x, "activation")
    # skip connection: the decoder conv reads cat([encoder output, up-sampled output])
    assert p.reads["upcat_4.convs.conv_0.conv"] == (
        src("down_3.convs.conv_1.conv", 8) + src("upcat_4.upsample.deconv", 8)
    )
    assert p.reads["upcat_1.convs.conv_0.conv"] == (
        src("conv_0.conv_1.conv", 4) + src("upcat_1.upsample.deconv", 4)
    )
    want = (k_down < 0.6) & (k_dec[:4] < 0.6)
    assert torch.equal(p.masks["conv_0.conv_1.conv"], want)
    assert p.layers["final_conv"].role == "frozen"
    assert p.norms["conv_0.conv_1.adn.N"].producer == "conv_0.conv_1.conv"


@pytest.mark.parametrize("dims,norm", [(2, "instance"), (3, "batch")])
def test_monai_unet_residual_units(dims, norm):
    torch.manual_seed(6)
    m = monai_unet(dims, norm)
    x = torch.randn(2, 1, *([16] * dims))
    p = check_adaptation(m, x, "parameter")
    # a residual unit's output couples its conv path and its residual conv
    assert torch.equal(p.masks["model.0.residual"], p.masks["model.0.conv.unit1.conv"])
    assert p.reads["model.1.submodule.0.conv.unit0.conv"] == [
        [("model.0.conv.unit1.conv", n), ("model.0.residual", n)] for n in range(4)
    ]
    # the top skip connection concatenates the first unit's output with the up path
    reads = p.reads["model.2.0.conv"]
    assert reads[:4] == [[("model.0.conv.unit1.conv", n), ("model.0.residual", n)]
                         for n in range(4)]  # fmt: skip
    assert all(("model.1.submodule.2.0.conv", n - 4) in reads[n] for n in range(4, 8))
    assert p.layers["model.2.0.conv"].role == "frozen"


def test_gradient_reaches_encoder_through_skip_in_activation_mode():
    torch.manual_seed(7)
    m = TinyUNet()
    p = tgd.plan(m, 0.9)
    assert p.masks["enc1"].any()
    with tgd.attach(m, p, mode="activation"):
        m(torch.randn(2, 1, 8, 8)).square().mean().backward()
        g = m.enc1.parametrizations.weight.original.grad
        assert g[p.masks["enc1"]].abs().sum() > 0 and torch.all(g[~p.masks["enc1"]] == 0)


@pytest.mark.parametrize("dims", [2, 3])
def test_tgd_unet_denoiser(dims):
    from tgd.models import UNet

    torch.manual_seed(8)
    m = UNet(in_channels=3 if dims == 2 else 1, widths=(4, 8, 8), spatial_dims=dims)
    x = torch.randn(2, m.in_channels, *([8] * dims))
    assert m(x).shape == (2, 1, *([8] * dims))
    p = check_adaptation(m, x, "activation")
    # the first level's output is read by the second level and by the last decoder block
    assert set(p.layers["down.0.3"].consumers) == {"down.1.0", "dec.1.0"}
    assert p.reads["dec.1.0"][:4] == src("down.0.3", 4)
    assert p.layers["head"].role == "frozen"
    with pytest.raises(ValueError, match="divisible by 4"):
        m(torch.randn(1, m.in_channels, *([6] * dims)))
