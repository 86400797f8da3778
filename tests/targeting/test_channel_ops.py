"""Channel-axis operations the tracer maps exactly: each network here is built so that a wrong
map (or a refusal, the behaviour before these rules) changes which channels are retrained."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tgd
from tgd.targeting import UnsupportedModelError

from .test_any_architecture import check_adaptation, kse

PHI = 0.5


def produced(name, channels):
    return [[(name, c)] for c in channels]


class Pair(nn.Module):
    """``a`` (1 -> c_a) -> ``op`` -> ``b`` (-> 1): ``b``'s reads are ``op``'s channel map."""

    def __init__(self, op, c_a=6, c_b=6, dims=2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.a = conv(1, c_a, 3, padding=1)
        self.b = conv(c_b, 1, 3, padding=1)
        self.op = op

    def forward(self, x):
        return self.b(self.op(torch.relu(self.a(x))))


def plan_pair(op, c_a=6, c_b=6, seed=0, dims=2):
    torch.manual_seed(seed)
    m = Pair(op, c_a, c_b, dims)
    return m, tgd.plan(m, PHI)


def test_pad_along_channels_shifts_them():
    m, p = plan_pair(lambda h: F.pad(h, (0, 0, 0, 0, 2, 1)), c_a=5, c_b=8)
    assert p.reads["b"] == [[], []] + produced("a", range(5)) + [[]]
    assert torch.equal(p.masks["a"], kse(m, "b")[2:7] < PHI)


def test_negative_pad_crops_channels():
    m, p = plan_pair(lambda h: F.pad(h, (1, 1, 1, 1, -2, 0)), c_a=6, c_b=4)
    assert p.reads["b"] == produced("a", range(2, 6))
    assert torch.equal(p.masks["a"][2:], kse(m, "b") < PHI) and not p.masks["a"][:2].any()


def test_stepped_channel_and_strided_spatial_slicing():
    m, p = plan_pair(lambda h: h[:, 1::2][..., ::2, 1::2], c_a=6, c_b=3)
    assert p.reads["b"] == produced("a", [1, 3, 5])
    assert torch.equal(p.masks["a"][1::2], kse(m, "b") < PHI) and not p.masks["a"][::2].any()


def test_index_list_along_channels():
    m, p = plan_pair(lambda h: h[:, [4, 0, 2]], c_a=6, c_b=3)
    assert p.reads["b"] == produced("a", [4, 0, 2])


@pytest.mark.parametrize(
    "op,order",
    [
        (lambda h: h.flip(1), [5, 4, 3, 2, 1, 0]),
        (lambda h: torch.roll(h, 2, dims=1), [4, 5, 0, 1, 2, 3]),
        (lambda h: torch.roll(h.flip(-1), (1, -1), dims=(2, 3)), [0, 1, 2, 3, 4, 5]),
    ],
)
def test_flip_and_roll(op, order):
    m, p = plan_pair(op, seed=1)
    assert p.reads["b"] == produced("a", order)
    kb = kse(m, "b")
    want = torch.zeros(6, dtype=torch.bool)
    want[order] = kb < PHI
    assert torch.equal(p.masks["a"], want)


def test_roll_without_dims_mixes_channels_and_is_refused():
    # torch.roll without dims rolls the flattened tensor: values cross channel boundaries
    with pytest.raises(UnsupportedModelError, match="'roll'"):
        plan_pair(lambda h: torch.roll(h, 5))


def test_repeat_along_channels_reads_each_producer_several_times():
    # VNet's input transition: x.repeat(1, 16 // c, 1, 1)
    m, p = plan_pair(lambda h: h.repeat(1, 3, 1, 1), c_a=2, c_b=6, seed=2)
    assert p.reads["b"] == produced("a", [0, 1, 0, 1, 0, 1])
    kb = kse(m, "b")
    assert torch.equal(p.masks["a"], torch.stack([(kb[c::2] < PHI).all() for c in range(2)]))


def test_expand_one_channel():
    m, p = plan_pair(lambda h: h[:, :1].expand(-1, 4, -1, -1), c_a=3, c_b=4, seed=3)
    assert p.reads["b"] == produced("a", [0, 0, 0, 0])
    assert bool(p.masks["a"][0]) == bool((kse(m, "b") < PHI).all())


def test_pixel_shuffle_couples_the_channels_of_one_output():
    m, p = plan_pair(nn.PixelShuffle(2), c_a=8, c_b=2, seed=4)
    assert p.reads["b"] == [[("a", c) for c in range(4)], [("a", c) for c in range(4, 8)]]
    kb = kse(m, "b")
    assert torch.equal(p.masks["a"], (kb < PHI).repeat_interleave(4))


def test_pixel_unshuffle_spreads_one_channel():
    m, p = plan_pair(nn.PixelUnshuffle(2), c_a=2, c_b=8, seed=5)
    assert p.reads["b"] == produced("a", [0] * 4 + [1] * 4)
    kb = kse(m, "b")
    assert torch.equal(p.masks["a"], torch.stack([(kb[:4] < PHI).all(), (kb[4:] < PHI).all()]))


def test_setitem_writes_channels():
    def op(h):
        out = h.new_zeros(h.shape[0], 4, *h.shape[2:])
        out[:, 1:3] = h[:, :2]
        return out

    m, p = plan_pair(op, c_a=3, c_b=4)
    assert p.reads["b"] == [[], [("a", 0)], [("a", 1)], []]


def test_interpolate_3d_before_a_concatenation():
    class Up3d(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv3d(1, 3, 3, padding=1)
            self.down = nn.Conv3d(3, 4, 3, stride=2, padding=1)
            self.b = nn.Conv3d(7, 1, 3, padding=1)

        def forward(self, x):
            h = torch.relu(self.a(x))
            d = F.interpolate(self.down(h), scale_factor=(2, 2, 2), mode="trilinear")
            return self.b(torch.cat([d, h], 1))

    torch.manual_seed(6)
    m = Up3d()
    p = tgd.plan(m, PHI)
    assert p.reads["b"] == produced("down", range(4)) + produced("a", range(3))
    assert torch.equal(p.masks["down"], kse(m, "b")[:4] < PHI)
    check_adaptation(m, torch.randn(2, 1, 8, 8, 8), "parameter")


class ConvSE(nn.Module):
    """EfficientNet-style squeeze-and-excitation with 1x1 convs on the pooled maps."""

    def __init__(self, c=8):
        super().__init__()
        self.a = nn.Conv2d(1, c, 3, padding=1)
        self.reduce = nn.Conv2d(c, 2, 1)
        self.expand = nn.Conv2d(2, c, 1)
        self.b = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x):
        h = torch.relu(self.a(x))
        g = torch.sigmoid(self.expand(torch.relu(self.reduce(F.adaptive_avg_pool2d(h, 1)))))
        return self.b(h * g)


def test_squeeze_excitation_gate_multiplies_channel_c_only():
    torch.manual_seed(7)
    m = ConvSE()
    p = tgd.plan(m, PHI)
    assert p.reads["b"] == produced("a", range(8))  # the gate's channels are not b's inputs
    # a's maps are read by b and (pooled) by the gate's first conv
    assert torch.equal(p.masks["a"], (kse(m, "b") < PHI) & (kse(m, "reduce") < PHI))
    for gate in ("reduce", "expand"):
        assert p.layers[gate].role == "frozen" and "gate" in p.layers[gate].reason
    p_train = tgd.plan(m, PHI, train=["expand"])  # unless asked
    assert p_train.layers["expand"].role == "full"
    check_adaptation(m, torch.randn(2, 1, 8, 8), "activation")


def test_linear_squeeze_excitation_from_monai():
    from monai.networks.blocks import ChannelSELayer

    torch.manual_seed(8)
    m = Pair(ChannelSELayer(2, 6, r=2), c_a=6, c_b=6)
    p = tgd.plan(m, PHI)
    assert p.reads["b"] == produced("a", range(6))
    assert torch.equal(p.masks["a"], kse(m, "b") < PHI)  # the linear gate judges nothing
    assert "op.fc.0.weight" in p.other_parameters
    check_adaptation(m, torch.randn(2, 1, 8, 8), "parameter")


def test_spatial_attention_gate_does_not_couple_channels():
    class SpatialGate(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 6, 3, padding=1)
            self.psi = nn.Conv2d(6, 1, 1)
            self.b = nn.Conv2d(6, 1, 3, padding=1)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.b(h * torch.sigmoid(self.psi(h)))

    torch.manual_seed(9)
    m = SpatialGate()
    p = tgd.plan(m, PHI)
    assert p.reads["b"] == produced("a", range(6))
    assert torch.equal(p.masks["a"], (kse(m, "b") < PHI) & (kse(m, "psi") < PHI))
    assert p.layers["psi"].role == "frozen"


class OptionAResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016, option A): identity shortcuts, and where a stage halves the
    resolution and doubles the width, ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))``."""

    def __init__(self, widths=(4, 8), blocks=2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, c_in = [], widths[0]
        for i, c in enumerate(widths):
            stage = []
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(_BasicBlock(c_in, c, stride))
                c_in = c
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2 = layers
        self.fc = nn.Linear(widths[-1], 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer2(self.layer1(h))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


class _BasicBlock(nn.Module):
    def __init__(self, c_in, c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.pad = (c - c_in) // 2 if stride != 1 or c_in != c else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad is None:
            short = x
        else:
            short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


@pytest.mark.parametrize("mode", ["activation", "parameter"])
def test_option_a_cifar_resnet(mode):
    torch.manual_seed(10)
    m = OptionAResNet()
    p = tgd.plan(m, 0.6)
    # the first conv of the second block of stage 2 reads the padded shortcut: channels 2..5
    # carry stage 1's residual stream, 0, 1, 6, 7 only stage 2's first block
    reads = p.reads["layer2.1.conv1"]
    stream1 = {"conv1", "layer1.0.conv2", "layer1.1.conv2"}
    assert all({s[0] for s in reads[c]} == {"layer2.0.conv2"} for c in (0, 1, 6, 7))
    for c in range(2, 6):
        assert {s[0] for s in reads[c]} == stream1 | {"layer2.0.conv2"}
        assert all(n == c - 2 for name, n in reads[c] if name in stream1)
    # stage 1's stream channel c is coupled with stage 2's channel c + 2
    assert torch.equal(p.masks["layer1.1.conv2"], p.masks["layer2.0.conv2"][2:6])
    assert p.norms["layer2.0.bn2"].producer == "layer2.0.conv2"
    check_adaptation(m, torch.randn(4, 3, 16, 16), mode)


def test_channel_shuffle_is_still_refused():
    def shuffle(h):
        n, c, hh, w = h.shape
        return h.view(n, 2, c // 2, hh, w).transpose(1, 2).reshape(n, c, hh, w)

    with pytest.raises(UnsupportedModelError, match="'view'"):
        plan_pair(shuffle)


def test_conv_output_shapes_without_arithmetic():
    # the default trace lets convs only say their output shape: it must be the real one
    import itertools

    from tgd.targeting.geometry import conv_output_shape

    for nd, (k, s, p, d, g) in itertools.product(
        (1, 2, 3), itertools.product((1, 3), (1, 2), (0, 2), (1, 2), (1, 2))
    ):
        x, w = torch.randn(1, 4, *([7] * nd)), torch.randn(6, 4 // g, *([k] * nd))
        y = getattr(F, f"conv{nd}d")(x, w, None, s, p, d, g)
        assert tuple(y.shape) == conv_output_shape(f"conv{nd}d", x, w, None, s, p, d, g)
        wt = torch.randn(4, 6 // g, *([k] * nd))
        op = 1 if s > 1 else 0
        y = getattr(F, f"conv_transpose{nd}d")(x, wt, None, s, p, op, g, d)
        shape = conv_output_shape(f"conv_transpose{nd}d", x, wt, None, s, p, op, g, d)
        assert tuple(y.shape) == shape


def test_a_bug_in_a_rule_is_not_mistaken_for_an_opaque_operation(monkeypatch):
    # a rule that fails for a reason other than "cannot map this call" must surface, not turn
    # the residual addition into an opaque operation (which would refuse or freeze quietly)
    from tgd.targeting import channels

    def broken(self, *args, **kwargs):
        raise KeyError("bug in a rule")

    monkeypatch.setattr(channels._Tracer, "_union", broken)
    torch.manual_seed(0)
    m = Pair(lambda h: h + h.flip(-1))
    with pytest.raises(UnsupportedModelError) as err:
        channels.trace_channels(m, torch.zeros(1, 1, 8, 8))
    assert isinstance(err.value.__cause__, KeyError)


def test_unmappable_calls_are_opaque_markers():
    from tgd.targeting.channels import Opaque, trace_channels

    class Flatten(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return self.a(x).flatten(1).sum(1, keepdim=True)  # channels folded away

    flow = trace_channels(Flatten(), torch.zeros(1, 1, 4, 4))
    # the opaque result reaches the output: the conv's maps leave the network
    assert flow.leaving == {("a", c) for c in range(4)}
    assert Opaque(0, "view") < Opaque(1, "add")  # ordered by call, the first mixer first
