"""Layer geometry: the layer kinds TGD knows, and how channels map to weight entries.

The only home of the conv/norm type tuples. A conv weight is ``(C_out, C_in / groups, *k)``; a
transposed-conv weight is ``(C_in, C_out / groups, *k)``. With ``groups``, input channel ``c``
of group ``g`` is read only by that group's ``C_out / groups`` output channels. The functions
here turn per-channel masks into per-entry masks of a weight (broadcastable to it) and regroup
a weight by input channel; everything that needs that arithmetic (attach, drop, fingerprint,
KSE) imports it from here.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

FORWARD_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED_CONV_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
CONV_TYPES = FORWARD_CONV_TYPES + TRANSPOSED_CONV_TYPES
# Batch norms with running statistics that fold into the conv before them at inference.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Normalisation layers with one affine weight/bias (and running statistic) per channel.
PER_CHANNEL_NORMS = (
    *BATCH_NORMS,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
# Per-channel affine parameters, but statistics shared within a group of channels.
GROUP_NORMS = (nn.GroupNorm,)
NORM_TYPES = PER_CHANNEL_NORMS + GROUP_NORMS


class UnsupportedModelError(ValueError):
    """The model's graph cannot be planned safely (the message names the operation)."""


def norm_channels(norm: nn.Module) -> int:
    """Number of channels a norm layer normalises."""
    return getattr(norm, "num_features", None) or norm.num_channels


def device_of(module: nn.Module) -> torch.device:
    """Device of the module's first parameter or buffer (its own first); CPU if it has none."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def _channel_of_entry(rows: int, per_group: int, groups: int) -> torch.Tensor:
    """``index[r, j]``: the channel that entry ``(r, j)`` of a grouped weight stands for.

    Row ``r`` belongs to group ``r // (rows / groups)``; column ``j`` of that row is channel
    ``group * per_group + j`` on the other side of the layer.
    """
    group = torch.arange(rows) // (rows // groups)
    return group[:, None] * per_group + torch.arange(per_group)[None, :]


def output_channel_entries(module: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """Per-entry mask of a conv's weight from a per-output-channel ``mask`` (broadcastable).

    True where the entry belongs to the kernel of an output channel marked in ``mask``.
    """
    w = module.weight
    trail = [1] * (w.dim() - 2)
    if isinstance(module, TRANSPOSED_CONV_TYPES):
        c_in, n_per_group = w.shape[:2]
        index = _channel_of_entry(c_in, n_per_group, module.groups)
        return mask[index].view(c_in, n_per_group, *trail)
    return mask.view(-1, 1, *trail)


def input_channel_entries(module: nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """Per-entry mask of a conv's weight from a per-input-channel ``mask`` (broadcastable).

    True where the entry reads an input channel marked in ``mask``.
    """
    w = module.weight
    trail = [1] * (w.dim() - 2)
    if isinstance(module, TRANSPOSED_CONV_TYPES):
        return mask.view(-1, 1, *trail)
    c_out, c_in_per_group = w.shape[:2]
    index = _channel_of_entry(c_out, c_in_per_group, module.groups)
    return mask[index].view(c_out, c_in_per_group, *trail)


def kernels_per_input_channel(
    weight: torch.Tensor, groups: int = 1, transposed: bool = False
) -> torch.Tensor:
    """Regroup a conv weight into ``(C_in, N, L)``: the ``N`` flattened kernels reading each input.

    ``weight`` is in conv layout, or transposed-conv layout with ``transposed=True`` (see the
    module docstring).
    """
    if weight.dim() < 3:
        raise ValueError(
            "expected a conv weight with at least 3 dims (out, in, *kernel), "
            f"got {tuple(weight.shape)}"
        )
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    length = weight[0, 0].numel()
    if transposed:
        c_in, n_per_group = weight.shape[:2]
        return weight.reshape(c_in, n_per_group, length)
    c_out, c_in_per_group = weight.shape[:2]
    if c_out % groups:
        raise ValueError(f"{c_out} output channels cannot be split into {groups} groups")
    n_per_group = c_out // groups
    # (groups, n_per_group, c_in_per_group, L) -> (groups, c_in_per_group, n_per_group, L)
    w = weight.reshape(groups, n_per_group, c_in_per_group, length).transpose(1, 2)
    return w.reshape(groups * c_in_per_group, n_per_group, length)


def conv_output_shape(name, x, weight, bias=None, stride=1, padding=0, a=None, b=1, c=1):
    """Output shape of ``F.conv*`` (``a, b = dilation, groups``) or ``F.conv_transpose*``
    (``a, b, c = output_padding, groups, dilation``), called as ``name`` with these arguments.

    Numeric padding only: string padding, or arguments of the wrong arity, raise ``ValueError``;
    an output smaller than one pixel raises ``RuntimeError``.
    """
    nd = x.dim() - 2
    if isinstance(padding, str):
        raise ValueError(f"padding {padding!r} is not numeric")
    if x.shape[1] == 0:
        raise ValueError("the input has no channels")

    def per_dim(v, default):
        v = default if v is None else v
        v = [v] * nd if isinstance(v, int) else list(v)
        if len(v) != nd:
            raise ValueError(f"{v} does not give one value per spatial dim ({nd})")
        return v

    s, p = per_dim(stride, 1), per_dim(padding, 0)
    if "transpose" in name:
        op, d = per_dim(a, 0), per_dim(c, 1)
        out_c = weight.shape[1] * b
        dims = zip(x.shape[2:], s, p, d, weight.shape[2:], op, strict=True)
        sizes = [(n - 1) * s_ - 2 * p_ + d_ * (k - 1) + o + 1 for n, s_, p_, d_, k, o in dims]
    else:
        d = per_dim(a, 1)
        out_c = weight.shape[0]
        dims = zip(x.shape[2:], s, p, d, weight.shape[2:], strict=True)
        sizes = [(n + 2 * p_ - d_ * (k - 1) - 1) // s_ + 1 for n, s_, p_, d_, k in dims]
    if min(sizes) < 1:
        raise RuntimeError(f"conv output size {sizes} is too small")
    return (x.shape[0], out_c, *sizes)
