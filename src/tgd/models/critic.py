"""WGAN critic for 2-D (or 2.5-D, several slices as channels) and 3-D images.

``Critic(in_channels=1, width=32, levels=3, spatial_dims=2)``: a 3x3 conv + LeakyReLU(0.2), then
``levels`` stride-2 3x3 convs (widths ``width, 2 width, ...``) each followed by LeakyReLU, a
global average over space and a linear layer to one unbounded score per sample. No batch norm:
a critic with batch norm couples the samples of a batch, which the WGAN-GP gradient penalty
(per-sample gradient norms) forbids; weight clipping works with this critic as well. Any input
size of at least ``2 ** levels`` works (global pooling).
"""

from __future__ import annotations

import torch
from torch import nn


class Critic(nn.Module):
    def __init__(self, in_channels: int = 1, width: int = 32, levels: int = 3,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, v in (("in_channels", in_channels), ("width", width), ("levels", levels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.in_channels, self.width, self.levels = in_channels, width, levels
        self.spatial_dims = spatial_dims
        layers: list[nn.Module] = [conv(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        c = width
        for i in range(levels):
            out = width * 2 ** i
            layers += [conv(c, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def spec(self) -> dict:
        return {"arch": "Critic", "in_channels": self.in_channels, "width": self.width,
                "levels": self.levels, "spatial_dims": self.spatial_dims}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"the critic takes (batch, {self.in_channels}, "
                             f"{'D, H, W' if self.spatial_dims == 3 else 'H, W'}) images, got "
                             f"{tuple(x.shape)}")
        f = self.features(x)
        return self.head(f.flatten(2).mean(2)).squeeze(1)
