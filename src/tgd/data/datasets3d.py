"""PyTorch datasets of 3-D patches for 3-D networks: a noisy volume patch in, the same patch of
the target out (items ``(input (1, D, P, P), target (1, D, P, P))``).

Patches are the object-centred crops of :class:`tgd.data.datasets.ObjectCentredCrops` (the same
as the 2.5-D datasets', on the whole target volume): the crop of item ``i`` depends on (seed,
epoch, i) only and is centred on a voxel of the Otsu body mask of the target when there is one.
``patch_depth`` defaults to ``patch_size`` clipped to the slice count; ``patch_size=None`` gives
full slices (and, without ``patch_depth``, whole volumes). Each volume yields
``patches_per_volume`` items per epoch, by default as many as tile it once
(``ceil(Z / D) * ceil(H / P) * ceil(W / P)``). Normalisation is that of the 2.5-D datasets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.utils.data import Dataset

from tgd.data.datasets import (
    ObjectCentredCrops,
    check_patch_option,
    noise2noise_volumes,
    paired_volumes,
)
from tgd.data.pairs import PairedVolumes

__all__ = ["Noise2NoiseDataset3D", "NoiseAdaptiveDataset3D"]


def _init_volume_crops(ds: ObjectCentredCrops, patch_size, patch_depth, patches_per_volume,
                       seed, shapes) -> None:
    """Check the patch options against the volumes' ``shapes`` and fill in the defaults."""
    for name, v in (("patch_size", patch_size), ("patch_depth", patch_depth),
                    ("patches_per_volume", patches_per_volume)):
        check_patch_option(name, v)
    nz = min(s[0] for s in shapes)
    h, w = shapes[0][1:]
    if patch_size is not None and patch_size > min(h, w):
        raise ValueError(f"patch_size {patch_size} exceeds the image size {(h, w)}")
    if patch_depth is None and patch_size is not None:
        patch_depth = min(patch_size, nz)
    if patch_depth is not None and patch_depth > nz:
        raise ValueError(f"patch_depth {patch_depth} exceeds the slice count {nz}")
    if patches_per_volume is None:
        tiles = [math.ceil(n / p) for n, p in ((nz, patch_depth), (h, patch_size),
                                               (w, patch_size)) if p is not None]
        patches_per_volume = math.prod(tiles)
    ds.patch_size, ds.patch_depth = patch_size, patch_depth
    ds.patches_per_volume = patches_per_volume
    ds._init_crops((patch_depth, patch_size, patch_size), seed)


class NoiseAdaptiveDataset3D(ObjectCentredCrops, Dataset):
    """Supervised 3-D pairs of every input level of every study -> its target
    (:class:`~tgd.data.PairedVolumes`).

    Items ``(input (1, D, P, P), target (1, D, P, P))`` float32, ordered by study, level,
    patch; see the module docstring for the patches.
    """

    def __init__(
        self,
        pairs: Sequence[PairedVolumes],
        patch_size: int | None = None,
        patch_depth: int | None = None,
        patches_per_volume: int | None = None,
        seed: int = 0,
    ) -> None:
        self.pairs = list(pairs)
        self.inputs, self.targets = paired_volumes(self.pairs)
        _init_volume_crops(self, patch_size, patch_depth, patches_per_volume, seed,
                           [tuple(t[0].shape) for t in self.targets])
        self.index = [(i, j) for i, t in enumerate(self.targets)
                      for j in range(len(t)) for _ in range(self.patches_per_volume)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int):
        i, j = self.index[idx]
        y = self.targets[i][j]
        return self._crop(idx, y, self.inputs[i][j][None], y[None], key=(i, j))


class Noise2NoiseDataset3D(ObjectCentredCrops, Dataset):
    """Noise2Noise 3-D pairs from two independent realizations: 1 -> 2 and 2 -> 1.

    ``scale`` multiplies both images (default: :func:`intensity_scale` of their mean).
    Items ``(input (1, D, P, P), target (1, D, P, P))``; the first half go 1 -> 2.
    """

    def __init__(self, img1, img2, patch_size: int | None = None, patch_depth: int | None = None,
                 patches_per_volume: int | None = None, scale: float | None = None,
                 seed: int = 0) -> None:
        self.vols, self.scale = noise2noise_volumes(img1, img2, scale)
        _init_volume_crops(self, patch_size, patch_depth, patches_per_volume, seed,
                           [tuple(self.vols[0].shape)])

    def __len__(self) -> int:
        return 2 * self.patches_per_volume

    def __getitem__(self, idx: int):
        if not -len(self) <= idx < len(self):
            raise IndexError(idx)
        idx %= len(self)
        src, dst = (0, 1) if idx < self.patches_per_volume else (1, 0)
        y = self.vols[dst]
        return self._crop(idx, y, self.vols[src][None], y[None], key=dst)
