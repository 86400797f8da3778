"""Channel-to-weight-entry arithmetic, checked against what autograd says each entry does."""

import pytest
import torch
from torch import nn

from tgd.targeting.geometry import (
    CONV_TYPES,
    NORM_TYPES,
    device_of,
    input_channel_entries,
    kernels_per_input_channel,
    norm_channels,
    output_channel_entries,
)

LAYERS = [
    lambda: nn.Conv2d(6, 4, 3, padding=1),
    lambda: nn.Conv2d(6, 4, 3, padding=1, groups=2),
    lambda: nn.Conv1d(6, 9, 3, padding=1, groups=3),
    lambda: nn.Conv3d(4, 8, 1, groups=4),
    lambda: nn.ConvTranspose2d(6, 4, 3, padding=1),
    lambda: nn.ConvTranspose2d(6, 4, 3, padding=1, groups=2),
    lambda: nn.ConvTranspose1d(6, 9, 2, stride=2, groups=3),
]


def _touched(conv, x, out_channel=None):
    """Weight entries with a nonzero gradient of the output (or of one output channel)."""
    conv.zero_grad()
    y = conv(x)
    (y if out_channel is None else y[:, out_channel]).sum().backward()
    return conv.weight.grad != 0


def _one_hot(n, i):
    return torch.arange(n) == i


@pytest.mark.parametrize("make", LAYERS)
def test_input_channel_entries_are_the_entries_that_read_the_channel(make):
    torch.manual_seed(0)
    conv = make()
    spatial = [5] * (conv.weight.dim() - 2)
    for c in range(conv.in_channels):
        x = torch.zeros(2, conv.in_channels, *spatial)
        x[:, c] = torch.randn(2, *spatial)  # only channel c carries signal
        expected = _touched(conv, x)
        mask = input_channel_entries(conv, _one_hot(conv.in_channels, c))
        assert torch.equal(mask.expand_as(conv.weight), expected)


@pytest.mark.parametrize("make", LAYERS)
def test_output_channel_entries_are_the_kernel_of_the_channel(make):
    torch.manual_seed(0)
    conv = make()
    x = torch.randn(2, conv.in_channels, *([5] * (conv.weight.dim() - 2)))
    for n in range(conv.out_channels):
        expected = _touched(conv, x, out_channel=n)
        mask = output_channel_entries(conv, _one_hot(conv.out_channels, n))
        assert torch.equal(mask.expand_as(conv.weight), expected)


@pytest.mark.parametrize("make", LAYERS)
def test_kernels_per_input_channel_matches_input_channel_entries(make):
    conv = make()
    transposed = isinstance(conv, nn.modules.conv._ConvTransposeNd)
    w = conv.weight.detach()
    kernels = kernels_per_input_channel(w, conv.groups, transposed)
    assert kernels.shape[0] == conv.in_channels
    for c in range(conv.in_channels):
        entries = input_channel_entries(conv, _one_hot(conv.in_channels, c)).expand_as(w)
        assert torch.equal(w[entries].reshape(kernels.shape[1:]), kernels[c])


def test_kernels_per_input_channel_rejects_bad_layouts():
    with pytest.raises(ValueError, match="at least 3 dims"):
        kernels_per_input_channel(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="groups"):
        kernels_per_input_channel(torch.zeros(4, 2, 3), groups=0)
    with pytest.raises(ValueError, match="cannot be split"):
        kernels_per_input_channel(torch.zeros(5, 2, 3), groups=2)


def test_layer_kinds_and_channels():
    assert isinstance(nn.ConvTranspose3d(2, 2, 1), CONV_TYPES)
    assert not isinstance(nn.Linear(2, 2), CONV_TYPES)
    for norm in (nn.BatchNorm2d(5), nn.InstanceNorm3d(5, affine=True), nn.GroupNorm(1, 5)):
        assert isinstance(norm, NORM_TYPES) and norm_channels(norm) == 5
    assert not isinstance(nn.LayerNorm(5), NORM_TYPES)


def test_device_of():
    assert device_of(nn.ReLU()) == torch.device("cpu")  # no tensors at all
    assert device_of(nn.BatchNorm2d(3, affine=False)) == torch.device("cpu")  # buffers only
    if torch.cuda.is_available():
        assert device_of(nn.BatchNorm2d(3).cuda()).type == "cuda"
