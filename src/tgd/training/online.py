"""TGD-N2N online learning (paper section 3.2): adapt a net to one study, then denoise it.

The study's data are split into two half-count realizations; the net is fine-tuned with TGD on
Noise2Noise pairs in both directions (realization 1 as input with 2 as target, and 2 -> 1),
which needs no clean target, and then denoises the study itself.

Label-free stopping (``n2n_split``): every ``holdout``-th slice is held out of training; the
Noise2Noise loss on the held-out slices (input from one realization, target the other) is an
unbiased estimate, up to the constant noise variance of the target, of the loss against the
clean image, because the held-out targets' noise never enters training. Training with a
validation set and ``patience`` stops when it stops falling and keeps the best weights.
"""

from __future__ import annotations

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from tgd.data import Noise2NoiseDataset, Noise2NoiseDataset3D, intensity_scale
from tgd.inference import denoise_volume
from tgd.targeting import TGDPlan
from tgd.training.config import TrainConfig
from tgd.training.data import enough_patches
from tgd.training.distributed import DistContext
from tgd.training.loop import TrainResult, train
from tgd.training.methods import MethodSetup, prepare


def n2n_dataset(img1, img2, *, patch_size=None, seed: int = 0, scale: float | None = None,
                spatial_dims: int = 2, patch_depth: int | None = None, min_items: int = 0):
    """Pairs 1 -> 2 (the first half of the items) and 2 -> 1, scaled by ``scale`` (default:
    ``intensity_scale`` of the mean of the two realizations): 2.5-D slices (items ``0..Z-1``
    go 1 -> 2), or 3-D patches (at least ``min_items``) for ``spatial_dims=3``."""
    a, b = np.asarray(img1, np.float32), np.asarray(img2, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"the two realizations differ in shape: {a.shape} vs {b.shape}")
    if scale is None:
        scale = intensity_scale(0.5 * (a + b))
    if spatial_dims == 3:
        return enough_patches(
            lambda ppv: Noise2NoiseDataset3D(a, b, patch_size=patch_size, patch_depth=patch_depth,
                                             patches_per_volume=ppv, scale=scale, seed=seed),
            min_items)
    if patch_depth is not None:
        raise ValueError("patch_depth applies to 3-D networks only")
    return Noise2NoiseDataset(a, b, patch_size=patch_size, scale=scale, seed=seed)


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


def adapt_online(
    model: nn.Module, img1, img2, cfg: TrainConfig, *, plan: TGDPlan | None = None,
    ctx: DistContext | None = None, progress: bool = False, **train_kwargs,
) -> tuple[MethodSetup, TrainResult, float]:
    """TGD-fine-tune ``model`` on the Noise2Noise pairs of one study (model stays attached;
    call ``setup.finish()``). Returns the setup, the training result and the intensity scale."""
    ds = n2n_dataset(img1, img2, patch_size=cfg.patch_size, seed=cfg.seed,
                     spatial_dims=cfg.spatial_dims, patch_depth=cfg.patch_depth,
                     min_items=cfg.batch_size)
    setup = prepare("online", model, cfg, plan=plan)
    result = train(setup, cfg, ds, ctx=ctx, progress=progress, **train_kwargs)
    return setup, result, ds.scale


def online_denoise(model: nn.Module, img1, img2, cfg: TrainConfig, image=None, **kwargs):
    """Adapt to the study and denoise ``image`` (default: the mean of the two realizations,
    i.e. the full-count image). Returns ``(denoised, setup, result)``."""
    setup, result, scale = adapt_online(model, img1, img2, cfg, **kwargs)
    adapted = setup.finish()
    if image is None:
        image = 0.5 * (np.asarray(img1, np.float32) + np.asarray(img2, np.float32))
    return denoise_volume(adapted, image, scale=scale), setup, result
