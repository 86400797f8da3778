"""The paper's 2.5-D DnCNN denoiser (Zhang et al. 2017, as used by Chen et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn

from tgd.models.traits import example_input


class DnCNN(nn.Module):
    """Residual DnCNN: ``in_channels`` consecutive slices in, the denoised centre slice out.

    Layout (``depth`` conv layers, all ``kernel_size``):
    conv + ReLU, ``depth - 2`` x (conv + batch-norm + ReLU), conv. The last conv predicts the
    noise, which is subtracted from the centre input slice (residual learning).
    The paper's network is ``DnCNN(in_channels=3, width=64, depth=8)``; with
    ``spatial_dims=3, in_channels=1`` a volume goes in and the denoised volume comes out.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        width: int = 64,
        depth: int = 8,
        kernel_size: int = 3,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"DnCNN needs depth >= 2 conv layers, got {depth}")
        if in_channels < 1 or out_channels < 1 or width < 1:
            raise ValueError("in_channels, out_channels and width must be positive")
        if out_channels != 1 and out_channels != in_channels:
            raise ValueError("out_channels must be 1 (centre slice) or equal to in_channels")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        pad = kernel_size // 2
        layers: list[nn.Module] = [
            conv(in_channels, width, kernel_size, padding=pad, bias=True),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth - 2):
            layers += [
                conv(width, width, kernel_size, padding=pad, bias=False),
                norm(width),
                nn.ReLU(inplace=True),
            ]
        layers.append(conv(width, out_channels, kernel_size, padding=pad, bias=False))
        self.body = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.width, self.depth, self.kernel_size = width, depth, kernel_size
        self.spatial_dims = spatial_dims

    # the model protocol (tgd.models.traits)
    size_multiple = 1

    @property
    def receptive_radius(self) -> int:
        """Voxels of context on either side: half a kernel per conv layer."""
        return self.depth * (self.kernel_size // 2)

    def example_input(self) -> torch.Tensor:
        return example_input(self)

    def spec(self) -> dict:
        """Constructor arguments that rebuild this net (a checkpoint's "model" entry)."""
        return {"arch": "DnCNN", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "width": self.width, "depth": self.depth,
                "kernel_size": self.kernel_size, "spatial_dims": self.spatial_dims}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DnCNN expects input of shape (batch, {self.in_channels}, *spatial) with "
                f"{self.spatial_dims} spatial dims, got {tuple(x.shape)}"
            )
        noise = self.body(x)
        if self.out_channels == 1:
            c = self.in_channels // 2
            return x[:, c : c + 1] - noise
        return x - noise
