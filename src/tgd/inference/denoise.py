"""Denoise a volume slice by slice (2.5-D nets) or in z-chunks (3-D nets, ``denoise3d``): eval
mode, batch norm folded into the convs, channels_last.

On this project's CPU, channels_last memory roughly doubles conv throughput over NCHW for
DnCNN-sized layers, and folding each batch norm into the conv before it removes a memory pass
per layer (docs/benchmarks.md, section 5). Folding (torch's ``fuse_conv_bn_eval``) is exact up
to float rounding: ``W' = W * g``, ``b' = (b - mean) * g + beta`` with
``g = gamma / sqrt(var + eps)``. Optional: ``torch.compile`` and bf16 autocast
(``tgd.inference.fast``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from tqdm import tqdm

from tgd.data.datasets import intensity_scale, neighbour_index
from tgd.inference.fast import amp_dtype, autocast, compiled_forward
from tgd.models.traits import model_traits
from tgd.targeting.geometry import BATCH_NORMS, FORWARD_CONV_TYPES


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) where every batch norm that directly follows an
    ungrouped conv inside an ``nn.Sequential`` is folded into it (torch's
    ``fuse_conv_bn_eval``) and replaced by Identity."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if not (isinstance(conv, FORWARD_CONV_TYPES) and isinstance(bn, BATCH_NORMS)):
                continue
            if bn.running_mean is None or conv.groups != 1:
                continue
            seq._modules[a] = fuse_conv_bn_eval(conv, bn)
            seq._modules[b] = nn.Identity()
    return model


def prepare_for_inference(model: nn.Module, *, fold_bn: bool = True,
                          channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` set up for fast CPU/GPU inference."""
    net = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if channels_last:
        net = net.to(memory_format=model_traits(net).memory_format)
    return net


@torch.inference_mode()
def denoise_volume(
    model: nn.Module,
    volume,
    *,
    scale: float | None = None,
    batch_size: int = 8,
    channels_last: bool = True,
    prepared: bool = False,
    progress: bool = False,
    device=None,
    chunk: int | None = 32,
    halo: int | None = None,
    compile: bool = False,
    amp: str | None = None,
) -> np.ndarray:
    """Denoise a ``(Z, H, W)`` volume; returns float32 ``(Z, H, W)``.

    2.5-D nets run on ``batch_size`` slices at a time; 3-D nets on the whole volume in z-chunks
    of ``chunk`` slices (None: one forward) with ``halo`` slices of context on either side
    (default: the net's ``receptive_radius``, ``tgd.models.traits``; see
    ``tgd.inference.denoise3d``).
    The volume is multiplied by ``scale`` before the network and divided after (default:
    ``tgd.data.intensity_scale`` of the volume, the normalisation the networks train with).
    ``prepared=True`` skips :func:`prepare_for_inference` (pass a net already prepared).
    ``compile=True`` runs the net through ``torch.compile`` (falling back to eager if that
    fails; it pays only for large volumes or many calls, see docs/benchmarks.md); 2.5-D batches
    are then padded to ``batch_size`` so one compiled shape serves the whole volume.
    ``amp="bf16"`` runs the net in bfloat16 autocast (faster where the hardware supports it;
    output within about 1e-2 relative of float32).
    """
    v = np.asarray(volume)
    if v.ndim != 3:
        raise ValueError(f"expected a (Z, H, W) volume, got shape {v.shape}")
    if min(v.shape) < 1:
        raise ValueError(f"volume is empty: shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"volume contains {int((~np.isfinite(v)).sum())} NaN/inf voxels")
    traits = model_traits(model)
    dims, in_ch = traits.spatial_dims, traits.in_channels
    if dims == 2 and in_ch != 3:
        raise ValueError(f"denoise_volume needs a 2.5-D net with 3 input slices, got {in_ch}")
    amp_dtype(amp)
    if scale is None:
        scale = intensity_scale(v)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be positive and finite, got {scale}")
    if dims == 3:
        from tgd.inference.denoise3d import denoise_volume_3d

        net = model if prepared else prepare_for_inference(model, channels_last=channels_last)
        return denoise_volume_3d(net, v, scale, chunk=chunk, halo=halo,
                                 channels_last=channels_last, device=device, progress=progress,
                                 compile=compile, amp=amp)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    net = model if prepared else prepare_for_inference(model, channels_last=channels_last)
    device = torch.device(device or next(net.parameters()).device)
    # The volume goes to the device once and each batch's 2.5-D stacks are gathered there: no
    # host-side (Z, 3, H, W) copy, no transfer or synchronisation per batch.
    vol = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(device) * float(scale)
    nz, h, w = vol.shape
    index = neighbour_index(nz, device=device)
    # a U-Net needs sizes divisible by its multiple: replicate the edge pixels, crop back after
    m = traits.size_multiple
    pad = (0, -w % m, 0, -h % m)
    forward = compiled_forward(net) if compile else net
    out = torch.empty(nz, h, w, device=device)
    for s in tqdm(range(0, nz, batch_size), desc="denoise", disable=not progress, leave=False):
        x = vol[index[s:s + batch_size]]
        n = x.shape[0]
        if compile and n < batch_size:  # one shape for the compiled net: pad the last batch
            x = torch.cat([x, x[-1:].expand(batch_size - n, *x.shape[1:])])
        if any(pad):
            x = nn.functional.pad(x, pad, mode="replicate")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            y = forward(x)
        out[s:s + n] = y[:n, 0, :h, :w].float()
    return (out / float(scale)).cpu().numpy()
