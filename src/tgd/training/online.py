"""Training data of TGD-N2N online learning (paper section 3.2): Noise2Noise pairs of one study.

The study's data are split into two half-count realizations; the pairs go both ways
(realization 1 as input with 2 as target, and 2 -> 1), which needs no clean target. The
workflow that adapts a net with them and then denoises the study is ``tgd.workflows.online``;
:func:`online_datasets` is the one way every caller builds them.

Label-free stopping (``n2n_split``): every ``holdout``-th slice is held out of training; the
Noise2Noise loss on the held-out slices (input from one realization, target the other) is an
unbiased estimate, up to the constant noise variance of the target, of the loss against the
clean image, because the held-out targets' noise never enters training. Training with a
validation set and ``patience`` stops when it stops falling and keeps the best weights.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from tgd.data import Noise2NoiseDataset
from tgd.data.factory import make_dataset


def n2n_dataset(img1, img2, *, patch_size=None, seed: int = 0, scale: float | None = None,
                spatial_dims: int = 2, patch_depth: int | None = None, min_items: int = 0,
                classes=None):
    """Pairs 1 -> 2 (the first half of the items) and 2 -> 1, scaled by ``scale`` (default:
    ``intensity_scale`` of the mean of the two realizations): 2.5-D slices (items ``0..Z-1``
    go 1 -> 2), or 3-D patches (at least ``min_items``) for ``spatial_dims=3``. With
    ``classes`` (the study's ``(Z, H, W)`` class map, for the task loss; 2.5-D only) the items
    also hold the centre slice's classes
    (:class:`tgd.data.labelled.LabelledNoise2NoiseDataset`)."""
    if classes is not None:
        if spatial_dims != 2:
            raise ValueError("class maps (the task loss) need 2.5-D data (spatial_dims 2)")
        from tgd.data.labelled import LabelledNoise2NoiseDataset

        return LabelledNoise2NoiseDataset(img1, img2, classes, patch_size=patch_size,
                                          scale=scale, seed=seed)
    return make_dataset("noise2noise", spatial_dims, img1, img2, patch_size=patch_size,
                        scale=scale, seed=seed, patch_depth=patch_depth, min_items=min_items)


class SliceSubset(Dataset):
    """The items of a 2.5-D Noise2Noise dataset whose centre slice is in ``slices`` (both
    directions), forwarding ``set_epoch``."""

    def __init__(self, base: Noise2NoiseDataset, slices) -> None:
        nz = len(base) // 2
        keep = sorted({int(z) for z in slices})
        if not keep or keep[0] < 0 or keep[-1] >= nz:
            raise ValueError(f"slices must be a non-empty subset of 0..{nz - 1}")
        self.base, self.scale = base, base.scale
        self.items = keep + [nz + z for z in keep]

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int):
        return self.base[self.items[idx]]


def n2n_split(img1, img2, *, holdout: int, patch_size=None, seed: int = 0,
              scale: float | None = None) -> tuple[SliceSubset, SliceSubset]:
    """2.5-D Noise2Noise ``(train, validation)``: every ``holdout``-th slice (starting at
    ``holdout // 2``) is validation (full slices), the rest training (crops of ``patch_size``)."""
    if not isinstance(holdout, int) or holdout < 2:
        raise ValueError(f"holdout must be an integer >= 2, got {holdout!r}")
    full = n2n_dataset(img1, img2, seed=seed, scale=scale)
    nz = len(full) // 2
    held = set(range(holdout // 2, nz, holdout))
    if not held or len(held) == nz:
        raise ValueError(f"{nz} slices cannot be split every {holdout} slices")
    crops = n2n_dataset(img1, img2, patch_size=patch_size, seed=seed, scale=full.scale)
    return (SliceSubset(crops, [z for z in range(nz) if z not in held]),
            SliceSubset(full, sorted(held)))


def online_datasets(img1, img2, *, patch_size=None, seed: int = 0, spatial_dims: int = 2,
                    patch_depth: int | None = None, min_items: int = 0, holdout: int = 0,
                    scale: float | None = None, classes=None):
    """The training data of online learning on one study, for every caller (``tgd online``,
    :func:`tgd.workflows.online.adapt_online`, the reproduction): ``(train set, validation set
    or None, scale)``. ``holdout`` >= 2 holds every ``holdout``-th slice out for label-free
    stopping (:func:`n2n_split`; 2.5-D, no class maps); 0 trains on every slice
    (:func:`n2n_dataset`)."""
    if holdout:
        if spatial_dims != 2 or classes is not None:
            raise ValueError("held-out slices (holdout) need 2.5-D data without class maps")
        train_set, val_set = n2n_split(img1, img2, holdout=holdout, patch_size=patch_size,
                                       seed=seed, scale=scale)
        return train_set, val_set, train_set.scale
    ds = n2n_dataset(img1, img2, patch_size=patch_size, seed=seed, scale=scale,
                     spatial_dims=spatial_dims, patch_depth=patch_depth, min_items=min_items,
                     classes=classes)
    return ds, None, ds.scale
