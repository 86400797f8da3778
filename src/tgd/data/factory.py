"""One entry point for the training datasets: :func:`make_dataset` chooses 2.5-D slices or 3-D
patches from the network's ``spatial_dims``.

Kinds (``DATASET_KINDS``) and the positional ``data`` each takes:

- ``"noise_adaptive"``: ``(studies, version)``, every input duration -> the 600-s target
  (:class:`~tgd.data.NoiseAdaptiveDataset`, :class:`~tgd.data.NoiseAdaptiveDataset3D`);
- ``"labelled"``: the same with the task classes of each slice (2.5-D only,
  :class:`~tgd.data.labelled.LabelledNoiseAdaptiveDataset`);
- ``"noise2noise"``: ``(img1, img2)``, two realizations of one study, 1 -> 2 and 2 -> 1
  (:class:`~tgd.data.Noise2NoiseDataset`, :class:`~tgd.data.Noise2NoiseDataset3D`).

Keyword arguments go to the dataset class. For 3-D, ``patch_depth`` sets the patch depth and
each volume is tiled once unless that gives fewer than ``min_items`` items (one batch, on small
data): then each volume gives as many random patches as ``min_items`` needs
(:func:`enough_patches`). ``patch_depth`` with ``spatial_dims=2`` is an error; ``min_items``
does not apply to 2.5-D data (one item per slice).
"""

from __future__ import annotations

import math

from tgd.data.datasets import Noise2NoiseDataset, NoiseAdaptiveDataset
from tgd.data.datasets3d import Noise2NoiseDataset3D, NoiseAdaptiveDataset3D
from tgd.data.labelled import LabelledNoiseAdaptiveDataset

__all__ = ["DATASET_KINDS", "enough_patches", "make_dataset"]

_CLASSES = {
    ("noise_adaptive", 2): NoiseAdaptiveDataset,
    ("noise_adaptive", 3): NoiseAdaptiveDataset3D,
    ("labelled", 2): LabelledNoiseAdaptiveDataset,
    ("noise2noise", 2): Noise2NoiseDataset,
    ("noise2noise", 3): Noise2NoiseDataset3D,
}
DATASET_KINDS = ("noise_adaptive", "labelled", "noise2noise")


def enough_patches(make, min_items: int):
    """``make(patches_per_volume)`` of a 3-D dataset: each volume tiled once (``None``) or, when
    that gives fewer than ``min_items`` items, as many random patches per volume as
    ``min_items`` needs."""
    ds = make(None)
    if len(ds) < min_items:
        volumes = len(ds) // ds.patches_per_volume
        ds = make(math.ceil(min_items / volumes))
    return ds


def make_dataset(kind: str, spatial_dims: int, *data, patch_depth: int | None = None,
                 min_items: int = 0, **kwargs):
    """The ``kind`` dataset of ``data`` for a network of ``spatial_dims`` (2: 2.5-D slices, 3:
    3-D patches); see the module docstring."""
    if kind not in DATASET_KINDS:
        raise ValueError(f"dataset kind must be one of {DATASET_KINDS}, got {kind!r}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if (kind, spatial_dims) not in _CLASSES:
        raise ValueError(f"{kind} (task-loss) data are 2.5-D only")
    cls = _CLASSES[(kind, spatial_dims)]
    if spatial_dims == 2:
        if patch_depth is not None:
            raise ValueError("patch_depth applies to 3-D networks only")
        return cls(*data, **kwargs)
    if kwargs.get("patches_per_volume") is not None:
        return cls(*data, patch_depth=patch_depth, **kwargs)
    kwargs.pop("patches_per_volume", None)
    return enough_patches(lambda ppv: cls(*data, patch_depth=patch_depth,
                                          patches_per_volume=ppv, **kwargs), min_items)
