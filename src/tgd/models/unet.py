"""A residual U-Net denoiser, 2-D (2.5-D slices in) or 3-D, as an alternative to DnCNN."""

from __future__ import annotations

import torch
from torch import nn

from tgd.models.traits import example_input

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONVT = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def _block(dims: int, c_in: int, c_out: int) -> nn.Sequential:
    conv, norm = _CONV[dims], _NORM[dims]
    return nn.Sequential(
        conv(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True),
        conv(c_out, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(inplace=True),
    )  # fmt: skip


class UNet(nn.Module):
    """U-Net with ``len(widths)`` resolution levels and a residual output.

    Each level: two (conv + batch-norm + ReLU); 2x max-pooling down, 2x transposed conv up,
    skip connections by concatenation; a final 1x1 conv predicts the noise, subtracted from the
    centre input slice (2-D) or the input volume (3-D, ``in_channels=1``). Spatial sizes must be
    divisible by ``2 ** (len(widths) - 1)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        widths: tuple[int, ...] = (32, 64, 128),
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        widths = tuple(widths)  # a checkpoint's JSON stores a list
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"widths needs at least two positive levels, got {widths}")
        if out_channels != 1 and out_channels != in_channels:
            raise ValueError("out_channels must be 1 (centre slice) or equal to in_channels")
        d = spatial_dims
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(_block(d, c, w))
            c = w
        self.pool = _POOL[d](2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(_CONVT[d](c, w, 2, stride=2))
            self.dec.append(_block(d, 2 * w, w))
            c = w
        self.head = _CONV[d](c, out_channels, 1, bias=False)
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, d
        self.widths, self.levels = widths, len(widths)

    # the model protocol (tgd.models.traits)
    @property
    def size_multiple(self) -> int:
        """Spatial sizes must be divisible by this (one halving per level below the top)."""
        return 2 ** (self.levels - 1)

    @property
    def receptive_radius(self) -> int:
        """Voxels of context on either side: two 3-wide convs per level down and up, plus one
        voxel of offset per pooling."""
        n = self.levels
        return 2 * (2**n - 1) + 3 * (2 ** (n - 1) - 1)

    def example_input(self) -> torch.Tensor:
        return example_input(self)

    def spec(self) -> dict:
        """Constructor arguments that rebuild this net (a checkpoint's "model" entry)."""
        return {"arch": "UNet", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "widths": list(self.widths),
                "spatial_dims": self.spatial_dims}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expects input of shape (batch, {self.in_channels}, *spatial) with "
                f"{self.spatial_dims} spatial dims, got {tuple(x.shape)}"
            )
        factor = self.size_multiple
        if any(s % factor for s in x.shape[2:]):
            raise ValueError(
                f"UNet with {self.levels} levels needs spatial sizes divisible by {factor}, "
                f"got {tuple(x.shape[2:])}"
            )
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else self.pool(h))
            skips.append(h)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            h = dec(torch.cat([skip, up(h)], 1))
        noise = self.head(h)
        if self.out_channels == 1:
            c = self.in_channels // 2
            return x[:, c : c + 1] - noise
        return x - noise
