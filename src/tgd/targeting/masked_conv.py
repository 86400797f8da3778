"""Conv forward unchanged, backward computed only for the targeted output channels.

This is the TGD layer after a conv, fused into the conv's backward: instead of computing the
full weight and input gradients and multiplying by the channel mask, only the targeted rows
of the weight gradient are computed, and (in activation mode) the input gradient is taken
through the targeted channels alone. Both are the same numbers as the masked full gradient up
to floating-point summation order, and cost roughly in proportion to the targeted fraction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from tgd.targeting.geometry import FORWARD_CONV_TYPES

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def fast_path_supported(conv: nn.Module) -> bool:
    """Plain (non-transposed, ungrouped) convs with numeric padding take the fused backward."""
    return (
        isinstance(conv, FORWARD_CONV_TYPES)
        and conv.groups == 1
        and not isinstance(conv.padding, str)
    )


# oneDNN's weight-gradient kernels run much faster for output-channel counts that are a
# multiple of this block (measured on AVX-512, docs/benchmarks.md): in parameter mode the
# targeted rows are padded with frozen channels up to a multiple of it, and those rows' gradient
# is zeroed.
ROW_BLOCK = 16


def gradient_rows(mask: torch.Tensor, block: int = ROW_BLOCK) -> torch.Tensor:
    """Sorted output channels whose gradient rows are computed: the targeted ones, padded
    with the first frozen ones up to a multiple of ``block`` (at most all channels)."""
    targeted = mask.nonzero().flatten()
    k = targeted.numel()
    want = min(-(-k // block) * block, mask.numel()) if k else 0
    if want == k:
        return targeted
    extra = (~mask).nonzero().flatten()[: want - k]
    return torch.cat([targeted, extra]).sort().values


def gather_channels(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t.index_select(1, idx)`` that stays cheap in channels-last memory: there the channels
    are the innermost dimension, so they are gathered as columns of an ``(N*H*W, C)`` matrix
    (``index_select`` on dim 1 of a channels-last tensor is about 20x slower)."""
    if t.dim() >= 3 and not t.is_contiguous():
        last = t.movedim(1, -1)
        if last.is_contiguous():
            cols = last.reshape(-1, t.shape[1]).index_select(1, idx)
            return cols.view(*last.shape[:-1], idx.numel()).movedim(-1, 1)
    return t.index_select(1, idx)


class _TargetedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, rows, row_keep, cut_input, stride, padding, dilation):
        ndim = weight.dim() - 2
        ctx.save_for_backward(x, weight, rows, row_keep)
        ctx.cut_input = cut_input
        ctx.conf = (stride, padding, dilation, ndim, bias is not None)
        return _CONV_FN[ndim](x, weight, bias, stride, padding, dilation, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, rows, row_keep = ctx.saved_tensors
        stride, padding, dilation, ndim, has_bias = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and has_bias
        zeros = [0] * ndim
        gx = gw = gb = None
        x_dtype = x.dtype
        if grad.dtype != weight.dtype:  # autocast ran the conv in lower precision
            x, weight = x.to(grad.dtype), weight.to(grad.dtype)
        if need_x and not ctx.cut_input:  # parameter mode: the full input gradient
            gx = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, zeros, 1,
                [True, False, False],
            )[0].to(x_dtype)  # fmt: skip
        if rows.numel() == 0:  # nothing targeted (and, cutting the input gradient, gx is zero)
            w_dtype = ctx.saved_tensors[1].dtype
            if need_w:
                gw = torch.zeros_like(weight, dtype=w_dtype)
            if need_b:
                gb = weight.new_zeros(weight.shape[0], dtype=w_dtype)
            return gx, gw, gb, None, None, None, None, None, None
        # The rows' gradient with the padding channels (not targeted) zeroed: their weight
        # rows come out exactly zero and they add nothing to the input gradient.
        g_sub = gather_channels(grad, rows)
        if row_keep is not None:
            g_sub = g_sub * row_keep.view(1, -1, *([1] * ndim)).to(g_sub.dtype)
        gx_sub, gw_sub, gb_sub = torch.ops.aten.convolution_backward(
            g_sub, x, weight.index_select(0, rows), [rows.numel()] if has_bias else None,
            stride, padding, dilation, False, zeros, 1,
            [need_x and ctx.cut_input, need_w, need_b],
        )  # fmt: skip
        w_dtype = ctx.saved_tensors[1].dtype
        if ctx.cut_input and gx_sub is not None:
            gx = gx_sub.to(x_dtype)
        if need_w:
            gw = weight.new_zeros(weight.shape, dtype=w_dtype).index_copy_(
                0, rows, gw_sub.to(w_dtype))
        if need_b:
            gb = weight.new_zeros(weight.shape[0], dtype=w_dtype).index_copy_(
                0, rows, gb_sub.to(w_dtype))
        return gx, gw, gb, None, None, None, None, None, None


def targeted_conv_forward(conv: nn.Module, mask: torch.Tensor, cut_input: bool):
    """A replacement for ``conv._conv_forward`` that uses the fused TGD backward."""
    rows_cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        dev = weight.device
        if dev not in rows_cache:
            m = mask.to(dev)
            # Padding rows helps the weight gradient only; where the input gradient is taken
            # through the rows too (activation mode) they would add to its reduction.
            rows = m.nonzero().flatten() if cut_input else gradient_rows(m)
            keep = m.index_select(0, rows)
            rows_cache[dev] = (rows, None if bool(keep.all()) else keep)
        rows, row_keep = rows_cache[dev]
        padding = conv.padding
        if conv.padding_mode != "zeros":
            x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
            padding = (0,) * (weight.dim() - 2)
        if not torch.is_grad_enabled() or not (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
        ):
            ndim = weight.dim() - 2
            return _CONV_FN[ndim](x, weight, bias, conv.stride, padding, conv.dilation, 1)
        return _TargetedConv.apply(
            x, weight, bias, rows, row_keep, cut_input, conv.stride, padding, conv.dilation
        )

    return _conv_forward
