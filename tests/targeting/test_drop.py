import copy

import pytest
import torch
from torch import nn

import tgd
from tgd.models import DnCNN


def small_net():
    """conv(2->4) BN ReLU conv(4->3) ReLU conv(3->1), with input channel 1 of ``b`` made useless."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 1, 3, padding=1, bias=False),
    )
    with torch.no_grad():
        net[3].weight[:, 1] = 0  # feature map 1 of conv 0 is never read: KSE 0
        net[1].bias.fill_(0.3)
    return net


def test_drop_zeroes_producer_norm_and_consumer_and_counts_them():
    net = small_net()
    plan = tgd.plan(net, 0.01, freeze=["3"])  # only the exact zero is below 0.01
    assert plan.masks["0"].tolist() == [False, True, False, False]
    assert plan.layers["3"].role == "frozen"
    before = copy.deepcopy(net)
    dropped, fraction = tgd.drop_kernels(net, plan)
    for a, b in zip(net.parameters(), before.parameters(), strict=True):
        assert torch.equal(a, b)  # the original is untouched
    assert torch.all(dropped[0].weight[1] == 0) and dropped[0].bias[1] == 0
    assert dropped[1].weight[1] == 0 and dropped[1].bias[1] == 0
    assert torch.all(dropped[3].weight[:, 1] == 0)
    assert torch.equal(dropped[0].weight[[0, 2, 3]], net[0].weight[[0, 2, 3]])
    expected = 2 * 9 + 1 + 2 + 3 * 9  # producer row + bias, BN weight + bias, consumer column
    total = sum(p.numel() for p in net.parameters())
    assert fraction == pytest.approx(expected / total)
    # the dropped map is exactly zero after BN + ReLU
    seen = {}
    dropped[2].register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    dropped.train()
    dropped(torch.randn(2, 2, 6, 6))
    assert torch.all(seen["a"][:, 1] == 0)


def test_threshold_zero_drops_nothing():
    m = DnCNN(width=8)
    dropped, fraction = tgd.drop_kernels(m, tgd.plan(m, 0.0))
    assert fraction == 0.0
    x = torch.randn(1, 3, 8, 8)
    m.eval()
    dropped.eval()
    assert torch.equal(m(x), dropped(x))


def test_sweep_is_monotone_and_evaluates():
    torch.manual_seed(1)
    m = DnCNN(width=16)
    x = torch.randn(2, 3, 12, 12)
    m.eval()
    ref = m(x).detach()

    def err(model):
        model.eval()
        with torch.no_grad():
            return float((model(x) - ref).abs().mean())

    rows = tgd.drop_sweep(m, (0.0, 0.3, 0.5, 0.8), evaluate=err)
    fracs = [r["fraction_dropped"] for r in rows]
    assert fracs == sorted(fracs) and fracs[0] == 0 and fracs[-1] > 0.3
    assert rows[0]["metric"] == 0.0 and rows[-1]["metric"] > 0
    assert [r["threshold"] for r in rows] == [0.0, 0.3, 0.5, 0.8]


def test_drop_checks_plan():
    with pytest.raises(ValueError, match="does not match"):
        tgd.drop_kernels(DnCNN(width=8), tgd.plan(DnCNN(width=4)))
