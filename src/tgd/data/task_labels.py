"""Segmentation classes of the downstream task (TOD-Net) and datasets that carry them.

One class scheme for PET and CT studies of the same phantoms (``TASK_CLASSES``): 0 background
(everything else), 1 liver, 2 kidney, 3 lesion (every lesion / tumour, whatever its host: the
label ids from ``tgd.data.phantom.LESION_ID0`` upwards). LiTS segments liver + liver tumour,
KiTS kidney + kidney tumour; here one segmenter does both organs and their tumours.

:class:`LabelledNoiseAdaptiveDataset` is :class:`tgd.data.NoiseAdaptiveDataset` whose items
also hold the class map of the centre slice, cropped like the images:
``(input (3, H, W), target (1, H, W), classes (H, W) int64)``;
:class:`LabelledNoise2NoiseDataset` does the same for the Noise2Noise pairs of one study
(online learning with the task loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tgd.data.datasets import Noise2NoiseDataset, NoiseAdaptiveDataset
from tgd.data.phantom import LABELS, LESION_ID0

TASK_CLASSES = ("background", "liver", "kidney", "lesion")


def task_classes(labels: np.ndarray) -> np.ndarray:
    """Phantom label volume -> ``TASK_CLASSES`` indices (int64, same shape)."""
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an integer volume, got {lab.dtype}")
    out = np.zeros(lab.shape, np.int64)
    out[lab == LABELS["liver"]] = 1
    out[lab == LABELS["kidney"]] = 2
    out[lab >= LESION_ID0] = 3
    return out


def lesion_roi(classes: np.ndarray, margin: int = 2) -> np.ndarray:
    """The task ROI: lesion voxels dilated in-plane by ``margin`` voxels (a square), so the ROI
    holds each lesion and its rim (where denoising blurs lesion into background)."""
    from scipy.ndimage import binary_dilation

    les = np.asarray(classes) == TASK_CLASSES.index("lesion")
    if margin <= 0:
        return les
    st = np.zeros((1, 2 * margin + 1, 2 * margin + 1), bool)
    st[0] = True
    return binary_dilation(les, structure=st) if les.ndim == 3 else binary_dilation(
        les, structure=st[0])


class LabelledNoiseAdaptiveDataset(NoiseAdaptiveDataset):
    """Noise-adaptive pairs plus the task classes of the centre slice (see the module docstring).

    ``classes``: one ``(Z, H, W)`` integer volume per study (default: :func:`task_classes` of
    each study's ``labels``).
    """

    def __init__(self, studies: Sequence, version: str, *, classes=None, **kwargs) -> None:
        super().__init__(studies, version, **kwargs)
        if classes is None:
            classes = [task_classes(st.labels) for st in studies]
        if len(classes) != len(self.targets):
            raise ValueError(f"need one class volume per study: {len(classes)} for "
                             f"{len(self.targets)} studies")
        self.classes = []
        for c, t in zip(classes, self.targets, strict=True):
            c = torch.as_tensor(np.asarray(c, np.int64))
            if c.shape != t.shape:
                raise ValueError(f"class volume {tuple(c.shape)} does not match the images "
                                 f"{tuple(t.shape)}")
            self.classes.append(c)

    def __getitem__(self, idx: int):
        i, _, z = self.index[idx]
        x, y = super().__getitem__(idx)
        if self.patch_size is None:
            return x, y, self.classes[i][z]
        full_y = self.targets[i][z]
        (c,) = self._crop(idx, full_y, self.classes[i][z])
        return x, y, c


class LabelledNoise2NoiseDataset(Noise2NoiseDataset):
    """:class:`tgd.data.Noise2NoiseDataset` of one study whose items also hold the class map
    (``classes``: one ``(Z, H, W)`` integer volume, e.g. :func:`task_classes` of its labels)
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
