"""Kernel sparsity and entropy (KSE, Li et al. CVPR 2019) scores of a conv layer's input channels.

For input channel ``c`` the kernels ``W[n, c]`` (one per output channel ``n`` that reads ``c``)
are flattened to vectors. Then

- sparsity ``s_c = sum_n ||W[n, c]||_1``;
- density ``dm_n`` = sum of the Euclidean distances from ``W[n, c]`` to its ``k`` nearest
  neighbours among the other kernels ``W[m, c]``, ``m != n``;
- entropy ``e_c = -sum_n p_n log2 p_n`` with ``p_n = dm_n / sum_m dm_m``;
- ``s`` and ``e`` are min-max normalised over the layer's input channels,
  ``KSE = sqrt(s / (1 + alpha * e))``, and KSE is min-max normalised to ``[0, 1]``.

The nearest neighbours are exact, not approximate: 1x1 kernels take an O(N log N) path on the
sorted line, layers with more than 64 kernels per channel one matrix product per channel,
narrower ones a batched Gram matrix; the paths agree to rounding (``_density``).

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
# Gram-matrix rounding noise (identical kernels): they count as exactly zero. Every path applies
# the same rule, so the scores do not depend on which path a layer takes.
_SNAP = 1e-12
_CHUNK_ELEMENTS = 1 << 23  # float64 entries of one Gram distance buffer (64 MB)
# Layers with at most this many kernels per channel (the paper's 64-wide DnCNN included) keep
# the Gram path; wider ones with kernels of more than one weight take the wide path.
_GRAM_MAX_N = 64
_LINE_CHUNK = 1 << 15  # kernels per chunk of the 1x1 path (k <= 5): its work arrays stay in cache
_WIDE_CHUNK = 1 << 19  # float64 entries of the wide path's distance buffer (4 MB)


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


def _line_density(x: np.ndarray, kk: int) -> np.ndarray:
    """``_knn_density`` of scalar kernels (1x1 convs): ``x`` is ``(M, N)``, one row a channel.

    On a line the ``kk`` nearest neighbours of a point are the points of a window of ``kk + 1``
    consecutive ones in sorted order that contains it, so after sorting each row only the ``kk``
    gaps to either side are candidates: O(N log N) per channel instead of O(N^2). The distance
    sum of the window with ``t`` points on the left is ``left[t] + right[kk - t]`` (prefix sums
    of the sorted gaps); the smallest over ``t`` is the density. Gaps are exact differences,
    snapped to zero like the Gram path's.

    The densities come back in the sorted order of each row, not in kernel order: the entropy
    they feed does not depend on the order.
    """
    m, n = x.shape
    out = np.empty((m, n))
    # about 3 kk work arrays of step x n entries: a large k gets proportionally fewer rows
    step = max(1, _LINE_CHUNK * 5 // (n * max(kk, 5)))
    for r0 in range(0, m, step):
        xs = np.sort(x[r0 : r0 + step], axis=-1)
        out[r0 : r0 + len(xs)] = _sorted_line_density(xs, kk)
    return out


def _sorted_line_density(xs: np.ndarray, kk: int) -> np.ndarray:
    m, n = xs.shape
    padded = np.full((m, n + kk), np.inf)
    padded[:, :n] = xs
    # gaps[j - 1][:, kk + i] = xs[i + j] - xs[i], +inf past either end of the row
    gaps = np.empty((kk, m, n + kk))
    gaps[:, :, :kk] = np.inf
    for j in range(1, kk + 1):
        np.subtract(padded[:, j : j + n], xs, out=gaps[j - 1, :, kk:])
    ends = np.maximum(xs[:, :1] * xs[:, :1], xs[:, -1:] * xs[:, -1:])
    tol = _SNAP * 2 * ends  # the largest squared norm of a row sits at one of its ends
    if (gaps[0, :, kk:] * gaps[0, :, kk:] <= tol).any():  # wider gaps snap only if a 1-gap does
        np.copyto(gaps, 0.0, where=gaps * gaps <= tol)
    right = [gaps[j, :, kk:] for j in range(kk)]  # distance to the (j + 1)-th point on the right
    left = [gaps[j, :, kk - j - 1 : kk - j - 1 + n] for j in range(kk)]
    right_sum, left_sum = [right[0]], [left[0]]  # sums of the nearest 1, 2, ... on each side
    for j in range(1, kk):
        right_sum.append(right_sum[-1] + right[j])
        left_sum.append(left_sum[-1] + left[j])
    best = np.minimum(right_sum[-1], left_sum[-1])
    window = np.empty_like(best)
    for t in range(1, kk):
        np.add(left_sum[t - 1], right_sum[kk - t - 1], out=window)
        np.minimum(best, window, out=best)
    return best


def _wide_density(kern: torch.Tensor, kk: int) -> torch.Tensor:
    """``_knn_density`` of ``(M, N, L)`` kernels of wide layers, one channel per matrix product.

    Per channel, ``h_ij = |w_j|^2 - 2 w_i . w_j`` (``d2_ij - |w_i|^2``: the same order along a
    row) is one ``addmm`` into a buffer that stays in cache; the ``kk`` smallest per row are
    selected in place, and ``|w_i|^2`` is added back to them only. A batched ``bmm`` in float64
    and the Gram path's full-size passes over the buffer cost several times more on wide layers.
    Snapped to zero like the Gram path.
    """
    m, n, _ = kern.shape
    kern = kern.contiguous()
    sq = (kern * kern).sum(-1)
    tol = (_SNAP * 2 * sq.amax(-1)).numpy()[:, None, None]
    sq_np = sq.numpy()
    per = max(1, _WIDE_CHUNK // (n * n))
    buf = torch.empty(per, n, n, dtype=kern.dtype)
    out = np.empty((m, n))
    for c0 in range(0, m, per):
        p = min(per, m - c0)
        for c in range(p):
            w = kern[c0 + c]
            torch.addmm(sq[c0 + c], w, w.T, alpha=-2, out=buf[c])
            buf[c].diagonal().fill_(float("inf"))
        arr = buf[:p].numpy()
        arr.partition(kk - 1, axis=-1)
        d2 = arr[..., :kk] + sq_np[c0 : c0 + p, :, None]
        d2[d2 <= tol[c0 : c0 + p]] = 0.0
        out[c0 : c0 + p] = np.sqrt(d2).sum(-1)
    return torch.from_numpy(out)


def _density_path(n: int, length: int) -> str:
    """Which exact density path a layer of ``N = n`` kernels of ``length`` weights takes."""
    if length == 1:
        return "line"
    return "wide" if n > _GRAM_MAX_N else "gram"


def _density(kern: torch.Tensor, kk: int) -> torch.Tensor:
    """``(..., C, N)`` kNN densities of float64 CPU kernels ``(..., C, N, L)``, ``N > kk``.

    Three exact paths, chosen by shape, that agree to rounding: the sorted line for 1x1 kernels,
    the batched Gram matrix for narrow layers (``N <= _GRAM_MAX_N``), one matrix product per
    channel for wider ones. Each channel's densities may come back permuted (the line path
    sorts them).
    """
    n, length = kern.shape[-2:]
    lead = kern.shape[:-2]
    path = _density_path(n, length)
    if path == "line":
        flat = kern.reshape(-1, n).numpy()
        return torch.from_numpy(_line_density(flat, kk)).reshape(*lead, n)
    if path == "wide":
        return _wide_density(kern.reshape(-1, n, length), kk).reshape(*lead, n)
    # chunks of input channels bound the (C, N, N) distance buffer
    step = max(1, _CHUNK_ELEMENTS // (n * n))
    return torch.cat([_knn_density(part, kk) for part in kern.split(step, dim=-3)], dim=-2)


def kse_from_kernels(kernels: torch.Tensor, alpha: float = 1.0, k: int = 5) -> torch.Tensor:
    """KSE of a batch of layers given as kernels ``(..., C_in, N, L)``; returns ``(..., C_in)``.

    Layers stacked on the leading dims are normalised independently. Computed in float64 on
    the CPU (the kernels are small; a GPU weight is copied).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    # contiguous: a 1x1 conv's kernels are a transposed view, slow for the elementwise ops below
    kern = kernels.detach().to(device="cpu", dtype=torch.float64).contiguous()
    n = kern.shape[-2]
    sparsity = kern.abs().sum((-1, -2))
    if n == 1:
        entropy = torch.zeros_like(sparsity)
    else:
        density = _density(kern, min(k, n - 1))
        total = density.sum(-1, keepdim=True)
        # the guards cost full passes over (C, N); where they would change nothing they are
        # skipped (the arithmetic, so every bit, stays the same)
        if bool((total > 0).all()):
            p = density / total
        else:
            p = torch.where(total > 0, density / torch.where(total > 0, total, 1), 1.0 / n)
        if bool((p > 0).all()):
            entropy = -(p * torch.log2(p)).sum(-1)
        else:
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
