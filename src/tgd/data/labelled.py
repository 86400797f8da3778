"""Datasets whose items also carry an integer class map (the task loss of TOD-Net, segmenter
training): the class map of the centre slice, cropped like the images.

:class:`LabelledNoiseAdaptiveDataset` is :class:`tgd.data.NoiseAdaptiveDataset` over
:class:`~tgd.data.PairedVolumes` that carry ``classes``:
``(input (3, H, W), target (1, H, W), classes (H, W) int64)``;
:class:`LabelledNoise2NoiseDataset` does the same for the Noise2Noise pairs of one study
(online learning with the task loss). Class 0 is the background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tgd.data.datasets import Noise2NoiseDataset, NoiseAdaptiveDataset
from tgd.data.pairs import PairedVolumes


class LabelledNoiseAdaptiveDataset(NoiseAdaptiveDataset):
    """Noise-adaptive pairs plus the class map of the centre slice (see the module docstring);
    every :class:`~tgd.data.PairedVolumes` must carry ``classes``."""

    def __init__(self, pairs: Sequence[PairedVolumes], **kwargs) -> None:
        super().__init__(pairs, **kwargs)
        self.classes = [pair.class_volume() for pair in self.pairs]

    def __getitem__(self, idx: int):
        i, j, z = self.index[idx]
        x, y = super().__getitem__(idx)
        if self.patch_size is None:
            return x, y, self.classes[i][z]
        full_y = self.targets[i][j][z]
        (c,) = self._crop(idx, full_y, self.classes[i][z])
        return x, y, c


class LabelledNoise2NoiseDataset(Noise2NoiseDataset):
    """:class:`tgd.data.Noise2NoiseDataset` of one study whose items also hold the class map
    (``classes``: one ``(Z, H, W)`` integer volume, e.g. the task classes of a simulated study)
    of the centre slice, cropped like the images."""

    def __init__(self, img1, img2, classes, **kwargs) -> None:
        super().__init__(img1, img2, **kwargs)
        c = torch.as_tensor(np.asarray(classes))
        if c.dtype.is_floating_point or c.dtype == torch.bool:
            raise ValueError(f"classes must be an integer volume, got {c.dtype}")
        if tuple(c.shape) != tuple(self.vols[0].shape):
            raise ValueError(f"class volume {tuple(c.shape)} does not match the images "
                             f"{tuple(self.vols[0].shape)}")
        if bool((c < 0).any()):
            raise ValueError("classes must be >= 0 (0 is the background)")
        self.classes = c.to(torch.int64)

    def __getitem__(self, idx: int):
        x, y = super().__getitem__(idx)
        nz = self.vols[0].shape[0]
        idx %= len(self)
        z = idx % nz
        if self.patch_size is None:
            return x, y, self.classes[z]
        ref = self.vols[1 if idx < nz else 0][z]  # the target slice the crop was drawn on
        (c,) = self._crop(idx, ref, self.classes[z])
        return x, y, c
