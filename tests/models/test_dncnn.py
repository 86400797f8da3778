"""The paper's 2.5-D DnCNN layout and the FT block definition."""

import pytest
import torch
from torch import nn

from tgd.models import DnCNN, model_spec
from tgd.training import conv_blocks


def test_paper_layout():
    m = DnCNN()
    layers = list(m.body)
    assert len(layers) == 2 + 6 * 3 + 1
    convs = [x for x in layers if isinstance(x, nn.Conv2d)]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3) for c in convs)
    assert convs[0].in_channels == 3 and convs[-1].out_channels == 1
    assert all(c.out_channels == 64 for c in convs[:-1])
    # first conv + ReLU; six conv + BN + ReLU; last conv without activation
    assert isinstance(layers[1], nn.ReLU)
    for i in range(6):
        c, bn, act = layers[2 + 3 * i: 5 + 3 * i]
        assert isinstance(c, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        assert isinstance(act, nn.ReLU) and c.bias is None
    assert isinstance(layers[-1], nn.Conv2d)
    assert sum(p.numel() for p in m.parameters()) == 224320


def test_residual_output_is_centre_slice_minus_noise():
    torch.manual_seed(0)
    m = DnCNN(width=8, depth=4).eval()
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(m(x), x[:, 1:2] - m.body(x))


@pytest.mark.parametrize("width,depth", [(8, 3), (16, 5)])
def test_width_depth_configurable(width, depth):
    m = DnCNN(width=width, depth=depth)
    spec = model_spec(m)
    assert spec["width"] == width and spec["depth"] == depth
    assert len(conv_blocks(m)) == depth


def test_ft_blocks_of_paper_net():
    blocks = conv_blocks(DnCNN())
    assert blocks[-3:] == [("body.14", ["body.15"]), ("body.17", ["body.18"]), ("body.20", [])]
    assert blocks[0] == ("body.0", [])
