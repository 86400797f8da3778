"""Denoise a whole volume with a 3-D network, in overlapping z-chunks to bound memory.

Each chunk of ``chunk`` output slices is run with ``halo`` extra slices on either side, which
are then discarded. With ``halo`` at least the network's receptive-field radius in z (the
default: its ``receptive_radius``, ``tgd.models.traits``) the result equals one forward over
the whole volume, up to float rounding. A net with a ``size_multiple`` (a U-Net:
``2 ** (levels - 1)``) gets the volume padded (replicating its edge voxels) to such sizes and
cropped back, and chunks and halos are aligned to that multiple so each chunk sees the same
pooling grid as the whole volume.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tgd.inference.fast import autocast, compiled_forward
from tgd.models.traits import model_traits


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def denoise_3d(net: nn.Module, volume: torch.Tensor, *, chunk: int | None = 32,
               halo: int | None = None, multiple: int = 1, channels_last: bool = True,
               device=None, progress: bool = False, compile: bool = False,
               amp: str | None = None) -> torch.Tensor:
    """Run a prepared 3-D ``net`` (1 channel in and out) over a scaled ``(Z, H, W)`` tensor;
    returns a CPU tensor (``compile``, ``amp``: see ``tgd.inference.fast``)."""
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1 slices or None (whole volume), got {chunk}")
    if halo is not None and halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    traits = model_traits(net)
    device = device or next(net.parameters()).device
    nz, h, w = volume.shape
    padded = [_round_up(s, multiple) for s in (nz, h, w)]
    # the whole volume goes to the device once; the output comes back once, at the end
    v = volume.to(device)[None, None]
    if padded != [nz, h, w]:
        pads = [p for s, n in zip((w, h, nz), reversed(padded), strict=True) for p in (0, n - s)]
        v = nn.functional.pad(v, pads, mode="replicate")
    zp = padded[0]
    if chunk is None or chunk >= zp:
        step, margin = zp, 0
    else:
        step = _round_up(chunk, multiple)
        if halo is None:
            halo = traits.require_receptive_radius(type(net).__name__, "give a halo (--halo)")
        margin = _round_up(halo, multiple)
    fmt = traits.memory_format
    forward = compiled_forward(net) if compile else net
    out = torch.empty(zp, *padded[1:], device=device)
    for z0 in tqdm(range(0, zp, step), total=math.ceil(zp / step), desc="denoise",
                   disable=not progress, leave=False):
        z1 = min(z0 + step, zp)
        a, b = max(z0 - margin, 0), min(z1 + margin, zp)
        x = v[:, :, a:b]
        if channels_last:
            x = x.contiguous(memory_format=fmt)
        with autocast(device, amp):
            y = forward(x)
        out[z0:z1] = y[0, 0, z0 - a:z1 - a].float()
    return out[:nz, :h, :w].cpu()


def check_3d_net(model: nn.Module) -> None:
    in_ch = model_traits(model).in_channels
    out_ch = getattr(model, "out_channels", 1)
    if in_ch != 1 or out_ch != 1:
        raise ValueError(f"3-D denoising needs a net with 1 input and 1 output channel, got "
                         f"{in_ch} and {out_ch}")


def denoise_volume_3d(net: nn.Module, volume: np.ndarray, scale: float, **kwargs) -> np.ndarray:
    """``volume`` (checked, float32) denoised by a prepared 3-D net; see :func:`denoise_3d`."""
    check_3d_net(net)
    x = torch.from_numpy(np.ascontiguousarray(volume, np.float32)) * float(scale)
    out = denoise_3d(net, x, multiple=model_traits(net).size_multiple, **kwargs)
    return (out / float(scale)).numpy()
