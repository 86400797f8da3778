"""TGD-N2N online learning (paper section 3.2): adapt a net to one study, then denoise it.

The study's data are split into two half-count realizations; the net is fine-tuned with TGD on
Noise2Noise pairs in both directions (realization 1 as input with 2 as target, and 2 -> 1,
:func:`tgd.training.online.online_datasets`), which needs no clean target, optionally with
label-free stopping on held-out slices, and then denoises the study itself
(:func:`tgd.inference.denoise_volume`).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from tgd.inference import denoise_volume
from tgd.targeting import TGDPlan
from tgd.training.config import TrainConfig
from tgd.training.distributed import DistContext
from tgd.training.loop import TrainResult, train
from tgd.training.methods import MethodSetup, prepare
from tgd.training.online import online_datasets

__all__ = ["adapt_online", "online_denoise"]


def adapt_online(
    model: nn.Module, img1, img2, cfg: TrainConfig, *, plan: TGDPlan | None = None,
    holdout: int = 0, val_every: int = 10, patience: int = 5, scale: float | None = None,
    ctx: DistContext | None = None, progress: bool = False, **train_kwargs,
) -> tuple[MethodSetup, TrainResult, float]:
    """TGD-fine-tune ``model`` on the Noise2Noise pairs of one study (model stays attached;
    call ``setup.finish()``). ``holdout`` >= 2: label-free stopping on every ``holdout``-th
    slice (validated every ``val_every`` iterations, stopped after ``patience`` validations
    without improvement, best weights kept). Returns the setup, the training result and the
    intensity scale."""
    train_set, val_set, scale = online_datasets(
        img1, img2, patch_size=cfg.patch_size, seed=cfg.seed, spatial_dims=cfg.spatial_dims,
        patch_depth=cfg.patch_depth, min_items=cfg.batch_size, holdout=holdout, scale=scale)
    if val_set is not None:
        train_kwargs = {"val_set": val_set, "val_every": val_every, "patience": patience,
                        **train_kwargs}
    setup = prepare("online", model, cfg, plan=plan)
    result = train(setup, cfg, train_set, ctx=ctx, progress=progress, **train_kwargs)
    return setup, result, scale


def online_denoise(model: nn.Module, img1, img2, cfg: TrainConfig, image=None, **kwargs):
    """Adapt to the study and denoise ``image`` (default: the mean of the two realizations,
    i.e. the full-count image). Returns ``(denoised, setup, result)``."""
    setup, result, scale = adapt_online(model, img1, img2, cfg, **kwargs)
    adapted = setup.finish()
    if image is None:
        image = 0.5 * (np.asarray(img1, np.float32) + np.asarray(img2, np.float32))
    return denoise_volume(adapted, image, scale=scale), setup, result
