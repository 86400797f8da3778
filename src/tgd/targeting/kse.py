"""Kernel sparsity and entropy (KSE, Li et al. CVPR 2019) scores of a conv layer's input channels.

For input channel ``c`` the kernels ``W[n, c]`` (one per output channel ``n`` that reads ``c``)
are flattened to vectors. Then

- sparsity ``s_c = sum_n ||W[n, c]||_1``;
- density ``dm_n`` = sum of the Euclidean distances from ``W[n, c]`` to its ``k`` nearest
  neighbours among the other kernels ``W[m, c]``, ``m != n``;
- entropy ``e_c = -sum_n p_n log2 p_n`` with ``p_n = dm_n / sum_m dm_m``;
- ``s`` and ``e`` are min-max normalised over the layer's input channels,
  ``KSE = sqrt(s / (1 + alpha * e))``, and KSE is min-max normalised to ``[0, 1]``.

This follows the paper's definition. The KSE authors' public code reshapes the weight where it
should transpose before its entropy step, so on a layer with as many input as output channels
it scores output filters instead of input channels; we do not reproduce that.

Edge cases (all NaN-free):

- fewer than ``k + 1`` kernels per channel: ``N - 1`` neighbours are used; ``N = 1`` gives
  ``e = 0``;
- identical kernels (every ``dm`` zero): ``p`` is uniform, ``e = log2(N)``;
- a constant vector under min-max normalisation normalises to all ones: nothing is singled
  out, so nothing falls below a threshold (an all-zero layer scores all ones);
- non-floating-point or non-finite weights raise ``ValueError``.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from tgd.targeting.geometry import (
    FORWARD_CONV_TYPES,
    TRANSPOSED_CONV_TYPES,
    kernels_per_input_channel,
)


def minmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Min-max normalise to ``[0, 1]`` along ``dim``; a constant vector becomes all ones."""
    lo = x.amin(dim, keepdim=True)
    hi = x.amax(dim, keepdim=True)
    span = hi - lo
    const = span <= 0
    return torch.where(const, torch.ones_like(x), (x - lo) / torch.where(const, 1, span))


def _check_weight(weight: torch.Tensor) -> None:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"expected a conv module or a weight tensor, got {type(weight).__name__}")
    if not weight.is_floating_point():
        raise ValueError(f"KSE needs a floating-point weight, got dtype {weight.dtype}")
    if weight.numel() == 0:
        raise ValueError(f"KSE of an empty weight {tuple(weight.shape)} is undefined")
    if not torch.isfinite(weight).all():
        raise ValueError("KSE: the weight contains NaN or infinite values")


# Squared distances below this fraction of a channel's largest squared kernel norm are
# Gram-matrix rounding noise (identical kernels): they count as exactly zero.
_SNAP = 1e-12
_CHUNK_ELEMENTS = 1 << 23  # float64 entries of one distance buffer (64 MB)


def _knn_density(kern: torch.Tensor, kk: int) -> torch.Tensor:
    """Sum of the Euclidean distances from each kernel to its ``kk`` nearest other kernels.

    Squared distances come from the Gram matrix in float64, computed in place in one buffer (on
    a 2-core machine, allocating fresh ``(C, N, N)`` temporaries cost more than the arithmetic).
    The ``kk`` smallest per row are selected in place with numpy's introselect, several times
    faster than ``torch.topk`` on these short rows, then snapped to zero below ``_SNAP`` times
    the channel's largest squared norm, so identical kernels are at distance exactly zero.
    """
    d2 = kern @ kern.transpose(-1, -2)
    sq = d2.diagonal(dim1=-2, dim2=-1).clone()
    d2.mul_(-2).add_(sq.unsqueeze(-1)).add_(sq.unsqueeze(-2))
    d2.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    arr = d2.numpy()
    arr.partition(kk - 1, axis=-1)
    smallest = arr[..., :kk]
    tol = (_SNAP * 2 * sq.amax(-1)).numpy()[..., None, None]
    smallest = np.where(smallest <= tol, 0.0, smallest)
    return torch.from_numpy(np.sqrt(smallest).sum(-1))


def kse_from_kernels(kernels: torch.Tensor, alpha: float = 1.0, k: int = 5) -> torch.Tensor:
    """KSE of a batch of layers given as kernels ``(..., C_in, N, L)``; returns ``(..., C_in)``.

    Layers stacked on the leading dims are normalised independently. Computed in float64 on
    the CPU (the kernels are small; a GPU weight is copied).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    kern = kernels.detach().to(device="cpu", dtype=torch.float64)
    n = kern.shape[-2]
    sparsity = kern.abs().sum((-1, -2))
    if n == 1:
        entropy = torch.zeros_like(sparsity)
    else:
        # chunks of input channels bound the (C, N, N) distance buffer (4 GB for one 1x1 conv
        # with 2048 inputs and 512 outputs in one piece)
        step = max(1, _CHUNK_ELEMENTS // (n * n))
        density = torch.cat(
            [_knn_density(part, min(k, n - 1)) for part in kern.split(step, dim=-3)], dim=-2
        )
        total = density.sum(-1, keepdim=True)
        p = torch.where(total > 0, density / torch.where(total > 0, total, 1), 1.0 / n)
        entropy = -(p * torch.log2(torch.where(p > 0, p, 1))).sum(-1)
    s = minmax(sparsity)
    e = minmax(entropy)
    return minmax(torch.sqrt(s / (1 + alpha * e)))


@contextmanager
def one_thread():
    """Run tiny tensor ops on one intra-op thread: on a busy 2-core machine, waking a second
    thread per op cost 5-20x more than the op itself (see docs/benchmarks.md)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def conv_weight_layout(module: nn.Module) -> tuple[torch.Tensor, int, bool]:
    """``(weight, groups, transposed)`` of a conv or transposed-conv module."""
    if isinstance(module, TRANSPOSED_CONV_TYPES):
        return module.weight, module.groups, True
    if isinstance(module, FORWARD_CONV_TYPES):
        return module.weight, module.groups, False
    raise TypeError(
        f"KSE is defined for Conv1d/2d/3d and ConvTranspose1d/2d/3d, got {type(module).__name__}"
    )


def kse_scores(
    conv: nn.Module | torch.Tensor,
    alpha: float = 1.0,
    k: int = 5,
    *,
    groups: int = 1,
    transposed: bool = False,
) -> torch.Tensor:
    """KSE score of each input channel of a conv layer (float32 in [0, 1], on the weight device).

    ``conv`` is a conv module (its groups and layout are read from it) or a raw weight tensor
    in conv layout ``(C_out, C_in / groups, *k)`` (pass ``groups`` / ``transposed=True`` for
    other layouts). Low scores mark input feature maps that carry little information.
    """
    if isinstance(conv, nn.Module):
        weight, groups, transposed = conv_weight_layout(conv)
    else:
        weight = conv
    with one_thread():
        _check_weight(weight)
        kernels = kernels_per_input_channel(weight.detach(), groups, transposed)
        scores = kse_from_kernels(kernels, alpha, k)
    return scores.to(weight.device, torch.float32)


def kse_scores_many(convs: list[nn.Module], alpha: float = 1.0, k: int = 5) -> list[torch.Tensor]:
    """``kse_scores`` of several layers (weights are checked first, so a bad layer fails fast)."""
    weights = []
    with one_thread():
        for conv in convs:
            weight, groups, transposed = conv_weight_layout(conv)
            _check_weight(weight)
            weights.append((weight, groups, transposed))
    return [kse_scores(w, alpha, k, groups=g, transposed=t) for w, g, t in weights]
