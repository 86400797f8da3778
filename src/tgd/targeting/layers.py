"""The layer kinds TGD knows, and the error for models it cannot plan."""

from __future__ import annotations

from torch import nn

CONV_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
TRANSPOSED_CONV_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# Normalisation layers with one affine weight/bias (and running statistic) per channel.
PER_CHANNEL_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
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
    return getattr(norm, "num_features", None) or norm.num_channels
