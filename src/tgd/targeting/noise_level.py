"""The noise level of a denoiser's input, in the units the network sees: the yardstick for how
much output change threshold selection tolerates.

Both estimates are RMS values over all pixels, like the RMS output change they are compared
with:

- ``noise_level_from_pair(a, b)``: two independent realizations of the same scan (a
  Noise2Noise pair): ``rms(a - b) / sqrt(2)`` is exactly the RMS noise of one of them;
- ``estimate_noise_level(images)``: from single noisy images, the diagonal Haar wavelet detail
  of 2x2 (or 2x2x2) blocks, which removes any locally linear signal and keeps white noise with
  its variance; the largest 1 % of coefficients (edges) are dropped before the RMS. Structure
  left in the detail makes it an upper estimate; correlated (smoothed) noise makes it a lower
  one.
"""

from __future__ import annotations

import math

import torch


def _check(t: torch.Tensor, what: str) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.numel() == 0:
        raise ValueError(f"{what}: no data to estimate the noise level from")
    if not t.is_floating_point():
        t = t.double()
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return t.double()


def noise_level_from_pair(a, b) -> float:
    """RMS noise of one realization, from two independent realizations of the same image."""
    a, b = _check(a, "the first realization"), _check(b, "the second realization")
    if a.shape != b.shape:
        raise ValueError(f"the two realizations differ in shape: {tuple(a.shape)} vs "
                         f"{tuple(b.shape)}")
    return float((a - b).pow(2).mean().sqrt() / math.sqrt(2))


def estimate_noise_level(images: torch.Tensor, spatial_dims: int | None = None) -> float:
    """RMS noise of single images ``(N, C, *spatial)`` from their diagonal Haar detail."""
    x = _check(images, "images")
    dims = spatial_dims if spatial_dims is not None else min(x.dim() - 2, 3)
    if dims < 1 or x.dim() < dims + 1:
        raise ValueError(f"images of shape {tuple(x.shape)}: need (N, C, *spatial)")
    # crop each spatial dim to an even size, then combine every 2^dims block with signs
    # (-1)^(sum of offsets), scaled so that white noise keeps its variance
    sl = [slice(None)] * (x.dim() - dims) + [slice(0, (s // 2) * 2) for s in x.shape[-dims:]]
    x = x[tuple(sl)]
    if any(s < 2 for s in x.shape[-dims:]):
        raise ValueError(f"images of shape {tuple(images.shape)} are too small (< 2 pixels)")
    d = x
    for axis in range(x.dim() - dims, x.dim()):
        even = d.narrow(axis, 0, d.shape[axis]).unfold(axis, 2, 2)
        d = (even[..., 0] - even[..., 1]) / math.sqrt(2)
    flat = d.abs().flatten()
    keep = flat.numel() - flat.numel() // 100
    kept = flat.kthvalue(max(keep, 1)).values
    flat = flat[flat <= kept]
    return float(flat.pow(2).mean().sqrt())
