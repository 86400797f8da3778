"""Segmentation networks used as the downstream task of TOD-Net: MONAI's networks wrapped as
plain ``nn.Module``s that map ``(B, in_channels, *S)`` images to ``(B, n_classes, *S)`` logits.

Architectures (``SEGMENTER_ARCHS``), all from ``monai.networks.nets``:

* ``unet``: ``UNet`` without residual units (strided-conv down, transposed-conv up, batch norm);
* ``resunet``: the same ``UNet`` with 2 residual units per level (a Res-U-Net);
* ``segresnet``: ``SegResNet`` (residual encoder, a lightweight decoder);
* ``vnet``: ``VNet`` (fixed widths 16-256, about 9.4 M parameters in 2-D: for GPUs; every
  spatial size must be divisible by 16).

``width`` is the first level's feature maps (unet/resunet: levels of width, 2 width, 4 width,
8 width; segresnet: ``init_filters``; ignored by vnet). MONAI is an optional dependency
(``pip install 'tgd[tod]'``); it is imported only when a segmenter is built.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SEGMENTER_ARCHS = ("unet", "resunet", "segresnet", "vnet")


def _monai_nets():
    try:
        from monai.networks import nets
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("segmenters need MONAI: pip install 'tgd[tod]' (or pip install monai)"
                          ) from err
    return nets


class Segmenter(nn.Module):
    """A MONAI segmentation net with the settings that rebuild it (:meth:`spec`)."""

    def __init__(self, arch: str = "unet", in_channels: int = 1, n_classes: int = 2,
                 width: int = 8, spatial_dims: int = 2) -> None:
        super().__init__()
        if arch not in SEGMENTER_ARCHS:
            raise ValueError(f"segmenter arch must be one of {SEGMENTER_ARCHS}, got {arch!r}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, v in (("in_channels", in_channels), ("width", width)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2 (background included), got "
                             f"{n_classes!r}")
        nets = _monai_nets()
        self.arch, self.in_channels, self.n_classes = arch, in_channels, n_classes
        self.width, self.spatial_dims = width, spatial_dims
        if arch in ("unet", "resunet"):
            self.net = nets.UNet(spatial_dims, in_channels, n_classes,
                                 tuple(width * 2 ** i for i in range(4)), (2, 2, 2),
                                 num_res_units=2 if arch == "resunet" else 0, norm="batch")
        elif arch == "segresnet":
            # group norm with up to 8 groups (MONAI's default), fewer for narrow nets
            self.net = nets.SegResNet(spatial_dims, init_filters=width, in_channels=in_channels,
                                      out_channels=n_classes,
                                      norm=("GROUP", {"num_groups": math.gcd(width, 8)}))
        else:
            if 16 % in_channels:
                raise ValueError("vnet needs in_channels dividing 16")
            self.net = nets.VNet(spatial_dims, in_channels, n_classes, dropout_prob_down=0.0,
                                 dropout_prob_up=(0.0, 0.0))

    @property
    def size_multiple(self) -> int:
        return 16 if self.arch == "vnet" else 8

    def spec(self) -> dict:
        return {"arch": self.arch, "in_channels": self.in_channels, "n_classes": self.n_classes,
                "width": self.width, "spatial_dims": self.spatial_dims}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"the {self.arch} segmenter takes (batch, {self.in_channels}, "
                             f"{self.spatial_dims} spatial dims) images, got {tuple(x.shape)}")
        if any(s % m for s in x.shape[2:]):
            raise ValueError(f"the {self.arch} segmenter needs spatial sizes divisible by {m}, "
                             f"got {tuple(x.shape[2:])}")
        return self.net(x)
