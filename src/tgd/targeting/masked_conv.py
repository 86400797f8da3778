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

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def fast_path_supported(conv: nn.Module) -> bool:
    """Plain (non-transposed, ungrouped) convs with numeric padding take the fused backward."""
    return (
        isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        and conv.groups == 1
        and not isinstance(conv.padding, str)
    )


class _TargetedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, idx, mask, cut_input, stride, padding, dilation):
        ndim = weight.dim() - 2
        ctx.save_for_backward(x, weight, idx, mask)
        ctx.cut_input = cut_input
        ctx.conf = (stride, padding, dilation, ndim, bias is not None)
        return _CONV_FN[ndim](x, weight, bias, stride, padding, dilation, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, idx, mask = ctx.saved_tensors
        stride, padding, dilation, ndim, has_bias = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        zeros = [0] * ndim
        gx = gw = gb = None
        channels_last = (
            grad.dim() == 4
            and not grad.is_contiguous()
            and grad.is_contiguous(memory_format=torch.channels_last)
        )
        bias_sizes = [weight.shape[0]] if has_bias else None
        if channels_last:
            # Gathering scattered channels in channels_last memory costs more than it saves:
            # mask the gradient and run the full backward instead.
            gm = grad * mask.view(1, -1, *([1] * ndim)).to(grad.dtype)
            if ctx.cut_input:
                gx, gw, gb = torch.ops.aten.convolution_backward(
                    gm, x, weight, bias_sizes, stride, padding, dilation, False, zeros, 1,
                    [need_x, need_w, need_b and has_bias],
                )  # fmt: skip
            else:
                if need_x:
                    gx = torch.ops.aten.convolution_backward(
                        grad, x, weight, None, stride, padding, dilation, False, zeros, 1,
                        [True, False, False],
                    )[0]  # fmt: skip
                _, gw, gb = torch.ops.aten.convolution_backward(
                    gm, x, weight, bias_sizes, stride, padding, dilation, False, zeros, 1,
                    [False, need_w, need_b and has_bias],
                )  # fmt: skip
            return gx, gw, gb, None, None, None, None, None, None
        if need_x and not ctx.cut_input:
            gx = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, zeros, 1,
                [True, False, False],
            )[0]  # fmt: skip
        if idx.numel() == 0:
            if need_w:
                gw = torch.zeros_like(weight)
            if need_b and has_bias:
                gb = weight.new_zeros(weight.shape[0])
            return gx, gw, gb, None, None, None, None, None, None
        g_sub = grad.index_select(1, idx)
        w_sub = weight.index_select(0, idx)
        gx_sub, gw_sub, gb_sub = torch.ops.aten.convolution_backward(
            g_sub, x, w_sub, [idx.numel()] if has_bias else None, stride, padding, dilation,
            False, zeros, 1, [need_x and ctx.cut_input, need_w, need_b and has_bias],
        )  # fmt: skip
        if ctx.cut_input:
            gx = gx_sub
        if need_w:
            gw = torch.zeros_like(weight).index_copy_(0, idx, gw_sub)
        if need_b and has_bias:
            gb = weight.new_zeros(weight.shape[0]).index_copy_(0, idx, gb_sub)
        return gx, gw, gb, None, None, None, None, None, None


def targeted_conv_forward(conv: nn.Module, mask: torch.Tensor, cut_input: bool):
    """A replacement for ``conv._conv_forward`` that uses the fused TGD backward."""
    idx_cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        dev = weight.device
        if dev not in idx_cache:
            m = mask.to(dev)
            idx_cache[dev] = (m.nonzero().flatten(), m)
        idx, m = idx_cache[dev]
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
            x, weight, bias, idx, m, cut_input, conv.stride, padding, conv.dilation
        )

    return _conv_forward
