"""PyTorch datasets of 3-D patches for 3-D networks: a noisy volume patch in, the same patch of
the target out (items ``(input (1, D, P, P), target (1, D, P, P))``).

Patches are deterministic random crops: the crop of item ``i`` depends on (seed, epoch, i) only,
and is centred on a voxel of the object (above 5 % of the target volume's maximum) when there
is one. ``patch_depth`` defaults to ``patch_size`` clipped to the slice count; ``patch_size=None``
gives full slices (and, without ``patch_depth``, whole volumes). Each volume yields
``patches_per_volume`` items per epoch, by default as many as tile it once
(``ceil(Z / D) * ceil(H / P) * ceil(W / P)``). Normalisation is that of the 2.5-D datasets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tgd.data.datasets import noise2noise_volumes, noise_adaptive_volumes, object_voxels
from tgd.data.study import INPUT_DURATIONS, TARGET_DURATION, Study

__all__ = ["Noise2NoiseDataset3D", "NoiseAdaptiveDataset3D"]


def _positive_or_none(name: str, v) -> None:
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
        raise ValueError(f"{name} must be a positive int or None, got {v!r}")


class _Patch3DMixin:
    """Deterministic random 3-D crops of ``self.patch_depth x self.patch_size**2``."""

    patch_size: int | None
    patch_depth: int | None
    patches_per_volume: int
    seed: int
    epoch: int = 0

    def _init_patches(self, patch_size, patch_depth, patches_per_volume, seed, shapes) -> None:
        _positive_or_none("patch_size", patch_size)
        _positive_or_none("patch_depth", patch_depth)
        _positive_or_none("patches_per_volume", patches_per_volume)
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
        self.patch_size, self.patch_depth = patch_size, patch_depth
        self.patches_per_volume = patches_per_volume
        self.seed, self.epoch = int(seed), 0
        self._object: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        """Draw new crops for a new epoch (still deterministic)."""
        self.epoch = int(epoch)

    def _object_voxels(self, key: int, ref: torch.Tensor) -> np.ndarray:
        """Flat indices of the body voxels of ``ref`` (cached per volume)."""
        if key not in self._object:
            self._object[key] = object_voxels(ref.numpy())
        return self._object[key]

    def _crop(self, idx: int, key: int, ref: torch.Tensor, *tensors: torch.Tensor):
        if self.patch_size is None and self.patch_depth is None:
            return tensors
        nz, h, w = ref.shape
        d = self.patch_depth or nz
        p = self.patch_size
        ph, pw = (p, p) if p is not None else (h, w)
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        obj = self._object_voxels(key, ref)
        if len(obj):
            cz, cy, cx = np.unravel_index(int(obj[rng.integers(len(obj))]), ref.shape)
        else:
            cz, cy, cx = (int(rng.integers(n)) for n in (nz, h, w))
        z0 = min(max(int(cz) - d // 2, 0), nz - d)
        y0 = min(max(int(cy) - ph // 2, 0), h - ph)
        x0 = min(max(int(cx) - pw // 2, 0), w - pw)
        return tuple(t[..., z0:z0 + d, y0:y0 + ph, x0:x0 + pw] for t in tensors)


class NoiseAdaptiveDataset3D(_Patch3DMixin, Dataset):
    """Supervised noise-adaptive 3-D pairs: every input duration of every study -> 600-s target.

    Items ``(input (1, D, P, P), target (1, D, P, P))`` float32, ordered by study, duration,
    patch; see the module docstring for the patches.
    """

    def __init__(
        self,
        studies: Sequence[Study],
        version: str,
        input_durations: Sequence[float] = INPUT_DURATIONS,
        target_duration: float = TARGET_DURATION,
        patch_size: int | None = None,
        patch_depth: int | None = None,
        patches_per_volume: int | None = None,
        normalize: str | None = "target_mean",
        seed: int = 0,
    ) -> None:
        self.inputs, self.targets = noise_adaptive_volumes(
            studies, version, input_durations, target_duration, normalize)
        self.durations = tuple(input_durations)
        self._init_patches(patch_size, patch_depth, patches_per_volume, seed,
                           [tuple(t.shape) for t in self.targets])
        self.index = [(i, j) for i in range(len(self.targets))
                      for j in range(len(self.durations)) for _ in range(self.patches_per_volume)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int):
        i, j = self.index[idx]
        y = self.targets[i]
        return self._crop(idx, i, y, self.inputs[i][j][None], y[None])


class Noise2NoiseDataset3D(_Patch3DMixin, Dataset):
    """Noise2Noise 3-D pairs from two independent realizations: 1 -> 2 and 2 -> 1.

    ``scale`` multiplies both images (default: :func:`intensity_scale` of their mean).
    Items ``(input (1, D, P, P), target (1, D, P, P))``; the first half go 1 -> 2.
    """

    def __init__(self, img1, img2, patch_size: int | None = None, patch_depth: int | None = None,
                 patches_per_volume: int | None = None, scale: float | None = None,
                 seed: int = 0) -> None:
        self.vols, self.scale = noise2noise_volumes(img1, img2, scale)
        self._init_patches(patch_size, patch_depth, patches_per_volume, seed,
                           [tuple(self.vols[0].shape)])

    def __len__(self) -> int:
        return 2 * self.patches_per_volume

    def __getitem__(self, idx: int):
        if not -len(self) <= idx < len(self):
            raise IndexError(idx)
        idx %= len(self)
        src, dst = (0, 1) if idx < self.patches_per_volume else (1, 0)
        y = self.vols[dst]
        return self._crop(idx, dst, y, self.vols[src][None], y[None])
