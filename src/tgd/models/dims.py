"""Spatial dims of a network, its input-size multiple and its channels-last memory format."""

from __future__ import annotations

import torch
from torch import nn

from tgd.models.unet import UNet


def spatial_dims(model: nn.Module) -> int:
    """``model.spatial_dims``, else the dims of its first conv (2 if it has none)."""
    dims = getattr(model, "spatial_dims", None)
    if dims is None:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)), None)
        dims = 3 if isinstance(conv, nn.Conv3d) else 2
    return int(dims)


def channels_last_format(model: nn.Module) -> torch.memory_format:
    """``channels_last`` for 2-D nets, ``channels_last_3d`` for 3-D nets."""
    return torch.channels_last_3d if spatial_dims(model) == 3 else torch.channels_last


def size_multiple(model: nn.Module) -> int:
    """What every spatial input size must be a multiple of (tgd.models.UNet: 2 ** (levels - 1);
    1 for other nets)."""
    return 2 ** (model.levels - 1) if isinstance(model, UNet) else 1
