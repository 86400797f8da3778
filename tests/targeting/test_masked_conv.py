"""The fused TGD conv backward against the masked full gradient of a plain conv."""

import pytest
import torch
from torch import nn

from tgd.targeting.masked_conv import gather_channels, gradient_rows, targeted_conv_forward

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
FORMATS = {2: torch.channels_last, 3: torch.channels_last_3d}


def reference_grads(conv, x, g, mask, cut_input):
    """Plain conv backward; weight/bias gradient from the masked output gradient, the input
    gradient from the masked one (activation mode) or the full one (parameter mode)."""
    conv.zero_grad(set_to_none=True)
    xr = x.detach().clone().requires_grad_(True)
    gm = g * mask.view(1, -1, *([1] * (g.dim() - 2))).to(g.dtype)
    out = conv(xr)
    w_grads = torch.autograd.grad(out, [xr, conv.weight] + ([conv.bias] if conv.bias is not None
                                                           else []), gm)
    gx = w_grads[0] if cut_input else torch.autograd.grad(conv(xr), xr, g)[0]
    return gx, w_grads[1], (w_grads[2] if conv.bias is not None else None)


def fused_grads(conv, x, g, mask, cut_input):
    fwd = targeted_conv_forward(conv, mask, cut_input=cut_input)
    xf = x.detach().clone().requires_grad_(True)
    conv._conv_forward = fwd
    try:
        out = conv(xf)
    finally:
        del conv._conv_forward
    params = [xf, conv.weight] + ([conv.bias] if conv.bias is not None else [])
    grads = torch.autograd.grad(out, params, g, allow_unused=True)
    gx = grads[0] if grads[0] is not None else torch.zeros_like(xf)
    return gx, grads[1], (grads[2] if conv.bias is not None else None)


def _mask(n, kind, seed):
    if kind == "none":
        return torch.zeros(n, dtype=torch.bool)
    if kind == "all":
        return torch.ones(n, dtype=torch.bool)
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) < float(kind)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cut_input", [False, True])
@pytest.mark.parametrize("mask_kind", ["0.3", "0.5", "none", "all"])
def test_fused_backward_equals_masked_full_gradient(dims, channels_last, cut_input, mask_kind):
    if channels_last and dims == 1:
        pytest.skip("no channels-last format for 1-D")
    torch.manual_seed(dims * 7 + len(mask_kind))
    c_out = 40  # 30 % targeted pads to 16 rows, so the padding rows are exercised
    conv = CONVS[dims](24, c_out, 3, padding=1, bias=True)
    size = {1: 20, 2: 10, 3: 6}[dims]
    x = torch.randn(2, 24, *([size] * dims))
    g = torch.randn(2, c_out, *([size] * dims))
    if channels_last:
        conv = conv.to(memory_format=FORMATS[dims])
        x = x.contiguous(memory_format=FORMATS[dims])
        g = g.contiguous(memory_format=FORMATS[dims])
    mask = _mask(c_out, mask_kind, dims)
    ref = reference_grads(conv, x, g, mask, cut_input)
    got = fused_grads(conv, x, g, mask, cut_input)
    for name, r, f in zip(("input", "weight", "bias"), ref, got, strict=True):
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    w_rows = got[1].flatten(1)
    assert torch.all(w_rows[~mask] == 0) and torch.all(got[2][~mask] == 0)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_fused_backward_stride_dilation_no_bias(padding_mode):
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 33, 3, stride=2, dilation=2, padding=2, bias=False,
                     padding_mode=padding_mode)
    x = torch.randn(3, 8, 13, 11)
    g = torch.randn(3, 33, 7, 6)
    mask = _mask(33, "0.5", 4)
    for cut in (False, True):
        ref = reference_grads(conv, x, g, mask, cut)
        got = fused_grads(conv, x, g, mask, cut)
        torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-5)
        assert got[2] is None


def test_gradient_rows_pad_to_block_with_frozen_channels():
    mask = torch.zeros(64, dtype=torch.bool)
    mask[[3, 10, 60]] = True
    rows = gradient_rows(mask)
    assert rows.numel() == 16 and torch.equal(rows, rows.sort().values)
    assert set(mask.nonzero().flatten().tolist()) <= set(rows.tolist())
    assert gradient_rows(torch.zeros(5, dtype=torch.bool)).numel() == 0
    assert torch.equal(gradient_rows(torch.ones(20, dtype=torch.bool)), torch.arange(20))
    small = torch.tensor([True, False, True, False, False])
    assert torch.equal(gradient_rows(small), torch.arange(5))  # capped at the channel count


@pytest.mark.parametrize("dims", [2, 3])
def test_gather_channels_channels_last(dims):
    t = torch.randn(2, 12, *([5] * dims)).contiguous(memory_format=FORMATS[dims])
    idx = torch.tensor([0, 4, 5, 11])
    out = gather_channels(t, idx)
    assert torch.equal(out, t.index_select(1, idx))
    assert out.is_contiguous(memory_format=FORMATS[dims])
    assert torch.equal(gather_channels(t.contiguous(), idx), t.index_select(1, idx))


def test_fused_backward_under_bf16_autocast():
    """Under CPU autocast the conv runs in bf16; the fused backward returns float32 gradients
    within bf16 rounding of the float32 masked gradient (relative error < 2e-2)."""
    torch.manual_seed(2)
    conv = nn.Conv2d(16, 32, 3, padding=1)
    x, g = torch.randn(2, 16, 12, 12), torch.randn(2, 32, 12, 12)
    mask = _mask(32, "0.5", 3)
    ref = reference_grads(conv, x, g, mask, False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fwd = targeted_conv_forward(conv, mask, cut_input=False)
        xf = x.clone().requires_grad_(True)
        conv._conv_forward = fwd
        try:
            out = conv(xf)
        finally:
            del conv._conv_forward
    assert out.dtype == torch.bfloat16
    gx, gw, gb = torch.autograd.grad(out, [xf, conv.weight, conv.bias], g.to(torch.bfloat16))
    assert gx.dtype == gw.dtype == gb.dtype == torch.float32
    for r, f in zip(ref, (gx, gw, gb), strict=True):
        assert float((f - r).norm() / r.norm()) < 2e-2
    assert torch.all(gw[~mask] == 0)
