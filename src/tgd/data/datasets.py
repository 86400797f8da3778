"""PyTorch datasets of 2.5-D slices: 3 consecutive slices in, the centre slice as target.

Edge slices: the missing neighbour of the first/last slice is a copy of the edge slice
(``pad="replicate"``) or its mirror (``pad="reflect"``, i.e. slice 1 for slice 0).

Data: :class:`tgd.data.PairedVolumes` (inputs at one or more levels and a target per study,
with their normalisation scales) for supervised training, two realizations of one study for
Noise2Noise. Normalisation: the networks see images times a scale, the same for an input and
its target (``tgd.data.pairs``); by default 1 / the input's mean over its estimated body
(:func:`intensity_scale`, :func:`otsu_body_mask`), as ``tgd denoise`` applies it.

Crops (``patch_size``): :class:`ObjectCentredCrops`, the one crop of the 2.5-D and the 3-D
datasets (``tgd.data.datasets3d``), centred on a body voxel and drawn anew each epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tgd.data.pairs import PairedVolumes
from tgd.data.volumes import as_volume, intensity_scale, object_voxels, otsu_body_mask

__all__ = [
    "EnsembleDataset",
    "Noise2NoiseDataset",
    "NoiseAdaptiveDataset",
    "ObjectCentredCrops",
    "check_patch_option",
    "intensity_scale",
    "object_voxels",
    "otsu_body_mask",
    "paired_volumes",
    "slices_25d",
]


def _neighbours(z: int, nz: int, pad: str) -> list[int]:
    out = []
    for k in (z - 1, z, z + 1):
        if 0 <= k < nz:
            out.append(k)
        elif pad == "replicate" or nz == 1:
            out.append(min(max(k, 0), nz - 1))
        else:  # reflect
            out.append(1 if k < 0 else nz - 2)
    return out


def _check_pad(pad: str) -> None:
    if pad not in ("replicate", "reflect"):
        raise ValueError(f"pad must be 'replicate' or 'reflect', got {pad!r}")


def slices_25d(volume, pad: str = "replicate") -> torch.Tensor:
    """``(Z, H, W)`` -> ``(Z, 3, H, W)``: slice ``z`` with its two neighbours as channels."""
    v = as_volume(volume)
    return v[neighbour_index(v.shape[0], pad)]


def neighbour_index(nz: int, pad: str = "replicate", device=None) -> torch.Tensor:
    """``(nz, 3)`` slice indices of each slice's 2.5-D stack (its neighbours below and above,
    ``pad`` at the ends): ``volume[neighbour_index(Z)]`` is :func:`slices_25d` of it."""
    _check_pad(pad)
    return torch.tensor([_neighbours(z, nz, pad) for z in range(nz)], device=device)


def paired_volumes(pairs: Sequence[PairedVolumes]):
    """Checked, normalised volumes of every study: ``(inputs[study][level],
    targets[study][level])``, input and target times that input's scale (a target shared by
    levels of one scale is one tensor)."""
    if len(pairs) == 0:
        raise ValueError("need at least one study (an empty list of pairs)")
    inputs: list[list[torch.Tensor]] = []
    targets: list[list[torch.Tensor]] = []
    for pair in pairs:
        if not isinstance(pair, PairedVolumes):
            raise TypeError(f"items must be tgd.data.PairedVolumes, got {type(pair).__name__}")
        xs, y, scales = pair.volumes()
        scaled: dict[float, torch.Tensor] = {}
        inputs.append([x * s for x, s in zip(xs, scales, strict=True)])
        targets.append([scaled.setdefault(s, y * s) for s in scales])
        if y.shape[1:] != targets[0][0].shape[1:]:
            raise ValueError(f"all studies must have the same in-plane shape: {pair.name} is "
                             f"{tuple(y.shape[1:])}, the first {tuple(targets[0][0].shape[1:])}")
    return inputs, targets


def noise2noise_volumes(img1, img2, scale: float | None):
    """The two realizations as checked volumes times one ``scale`` (default:
    :func:`intensity_scale` of their mean): ``((a, b), scale)``."""
    a, b = as_volume(img1, "img1"), as_volume(img2, "img2")
    if a.shape != b.shape:
        raise ValueError(f"img1 {tuple(a.shape)} and img2 {tuple(b.shape)} differ in shape")
    if scale is None:
        scale = intensity_scale(0.5 * (a + b))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be positive and finite, got {scale}")
    return (a * scale, b * scale), float(scale)


def check_patch_option(name: str, value) -> None:
    """``value`` is a positive int (not a bool) or ``None``, else a ValueError naming ``name``."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


class ObjectCentredCrops:
    """Deterministic object-centred random crops of 2-D slices or 3-D volumes, new each epoch.

    ``crop_shape`` has one entry per axis of the reference image (``None``: the whole axis;
    all ``None``: no cropping). The crop of item ``idx`` depends on (seed, epoch, idx) only:
    a generator seeded with ``[seed, epoch, idx]`` draws the body voxel the crop is centred on
    (:func:`object_voxels` of the reference, cached under ``key``), or, when the reference has
    no body voxel, one coordinate per axis in axis order; the crop is then shifted to lie
    inside the image. ``set_epoch`` draws new crops (the training loop calls it).
    """

    crop_shape: tuple[int | None, ...]
    seed: int
    epoch: int = 0

    def _init_crops(self, crop_shape: tuple[int | None, ...], seed: int) -> None:
        self.crop_shape = tuple(crop_shape)
        self.seed, self.epoch = int(seed), 0
        self._object: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        """Draw new crops for a new epoch (still deterministic)."""
        self.epoch = int(epoch)

    def _crop(self, idx: int, ref: torch.Tensor, *tensors: torch.Tensor, key: int | None = None):
        """The same crop of the last ``ref.dim()`` axes of every tensor, drawn on ``ref``;
        ``key`` names ``ref`` in the body-voxel cache (default ``idx``)."""
        if all(c is None for c in self.crop_shape):
            return tensors
        shape = tuple(ref.shape)
        size = [n if c is None else c for n, c in zip(shape, self.crop_shape, strict=True)]
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        key = idx if key is None else key
        if key not in self._object:
            self._object[key] = object_voxels(ref)
        obj = self._object[key]
        if len(obj):
            centre = np.unravel_index(int(obj[rng.integers(len(obj))]), shape)
        else:
            centre = [int(rng.integers(n)) for n in shape]
        starts = [min(max(int(c) - s // 2, 0), n - s)
                  for c, s, n in zip(centre, size, shape, strict=True)]
        window = tuple(slice(a, a + s) for a, s in zip(starts, size, strict=True))
        return tuple(t[(..., *window)] for t in tensors)


def _init_slice_crops(ds: ObjectCentredCrops, patch_size, seed, shape) -> None:
    check_patch_option("patch_size", patch_size)
    if patch_size is not None and patch_size > min(shape):
        raise ValueError(f"patch_size {patch_size} exceeds the image size {shape}")
    ds.patch_size = patch_size
    ds._init_crops((patch_size, patch_size), seed)


class NoiseAdaptiveDataset(ObjectCentredCrops, Dataset):
    """Supervised pairs of every input level of every study -> its target
    (:class:`~tgd.data.PairedVolumes`; several levels per study: noise-adaptive training).

    Items ``(input (3, H, W), target (1, H, W))`` float32, ordered by study, level, slice.
    """

    def __init__(
        self,
        pairs: Sequence[PairedVolumes],
        patch_size: int | None = None,
        pad: str = "replicate",
        seed: int = 0,
    ) -> None:
        _check_pad(pad)
        self.pad = pad
        self.pairs = list(pairs)
        self.inputs, self.targets = paired_volumes(self.pairs)
        self.index = [(i, j, z) for i, t in enumerate(self.targets)
                      for j in range(len(t)) for z in range(t[0].shape[0])]
        _init_slice_crops(self, patch_size, seed, tuple(self.targets[0][0].shape[1:]))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int):
        i, j, z = self.index[idx]
        vol = self.inputs[i][j]
        x = vol[_neighbours(z, vol.shape[0], self.pad)]
        y = self.targets[i][j][z: z + 1]
        return self._crop(idx, y[0], x, y)


class Noise2NoiseDataset(ObjectCentredCrops, Dataset):
    """Noise2Noise pairs from two independent realizations: 1 -> 2 and 2 -> 1 for every slice.

    ``scale`` multiplies both images (default: :func:`intensity_scale` of their mean).
    Items ``(input (3, H, W), target (1, H, W))``; the first ``Z`` items go 1 -> 2.
    """

    def __init__(self, img1, img2, patch_size: int | None = None, scale: float | None = None,
                 pad: str = "replicate", seed: int = 0) -> None:
        _check_pad(pad)
        self.pad = pad
        self.vols, self.scale = noise2noise_volumes(img1, img2, scale)
        _init_slice_crops(self, patch_size, seed, tuple(self.vols[0].shape[1:]))

    def __len__(self) -> int:
        return 2 * self.vols[0].shape[0]

    def __getitem__(self, idx: int):
        nz = self.vols[0].shape[0]
        if not -len(self) <= idx < len(self):
            raise IndexError(idx)
        idx %= len(self)
        src, dst = (0, 1) if idx < nz else (1, 0)
        z = idx % nz
        x = self.vols[src][_neighbours(z, nz, self.pad)]
        y = self.vols[dst][z: z + 1]
        return self._crop(idx, y[0], x, y)


class EnsembleDataset(Dataset):
    """Realizations ``(R, Z, H, W)`` for ensemble bias/CoV: items ``(input (3, H, W), r, z)``,
    scaled by ``scale``; stack the network outputs back with ``index``."""

    def __init__(self, realizations, scale: float = 1.0, pad: str = "replicate") -> None:
        _check_pad(pad)
        r = torch.as_tensor(np.asarray(realizations, np.float32))
        if r.dim() != 4:
            raise ValueError(f"realizations must be (R, Z, H, W), got {tuple(r.shape)}")
        if not torch.isfinite(r).all():
            raise ValueError("realizations contain NaN or infinite values")
        self.vols = r * float(scale)
        self.pad = pad
        self.index = [(i, z) for i in range(r.shape[0]) for z in range(r.shape[1])]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int):
        r, z = self.index[idx]
        vol = self.vols[r]
        return vol[_neighbours(z, vol.shape[0], self.pad)], r, z
