"""``threshold="auto"`` with validation data: phi chosen by probe adaptations with the one
training loop (:func:`tgd.targeting.probe.probe_threshold` holds the rule).

    from tgd.training.probe import select_by_probe
    plan = select_by_probe(model, cfg, train_set, val_set, iterations=50)
    print(plan.selection["reason"])

Each probe is a TGD run of ``iterations`` steps with ``cfg``'s settings (parameter or activation
mode, learning rate, batch size, seed: every candidate sees the same batches, so the comparison
between candidates is paired), scored by the per-item ``cfg.loss`` on up to ``max_items`` evenly
spaced validation items. The candidates are capped by the drop criterion
(:mod:`tgd.targeting.auto_threshold`) at ``CAP_TOLERANCE`` x the input's noise level: maps
whose removal alone would move the output by more than the input's own noise carry signal
the net must keep, whatever a short probe says.

All checks run before the first probe: the validation set (enough items, finite), one training
batch (shapes, finite), the options.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

import tgd
from tgd.losses import IMAGE_LOSSES, image_loss
from tgd.targeting.importance import as_images
from tgd.targeting.planner import Planner
from tgd.targeting.probe import CANDIDATES, KNEE, MIN_ITEMS, probe_threshold
from tgd.training.config import TrainConfig
from tgd.training.distributed import DistContext
from tgd.training.loop import check_batch, collate, train
from tgd.training.methods import planning_input, prepare

CAP_TOLERANCE = 1.0
PROBE_ITERATIONS = 50
CAP_IMAGES = 8


def item_indices(n: int, max_items: int | None) -> np.ndarray:
    """Up to ``max_items`` evenly spaced indices of ``n`` items."""
    if max_items is None or max_items >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, max_items).round().astype(int)


def validation_losses(dataset: Dataset, loss: str = "mse", max_items: int | None = None,
                      batch_size: int = 8) -> Callable[[nn.Module], torch.Tensor]:
    """``losses(model)``: the per-item ``loss`` of ``model`` (eval mode) on up to ``max_items``
    evenly spaced items of ``dataset``."""
    fn = image_loss(loss)
    idx = item_indices(len(dataset), max_items)

    @torch.no_grad()
    def losses(model: nn.Module) -> torch.Tensor:
        device = next(model.parameters()).device
        was = model.training
        model.eval()
        out = []
        try:
            for s in range(0, len(idx), batch_size):
                x, y = collate(dataset, idx[s:s + batch_size])
                pred = model(x.to(device))
                y = y.to(device)
                out.extend(float(fn(pred[i:i + 1], y[i:i + 1])) for i in range(len(y)))
        finally:
            model.train(was)
        return torch.tensor(out, dtype=torch.float64)

    return losses


def probe_adapt(cfg: TrainConfig, train_set: Dataset, iterations: int):
    """``adapt(model, plan)``: ``iterations`` TGD steps with ``cfg``'s settings on the model's
    own device; returns the adapted model (parametrizations removed)."""
    probe_cfg = copy.copy(cfg)
    probe_cfg.iterations, probe_cfg.epochs = iterations, None
    probe_cfg.validate()

    def adapt(model: nn.Module, plan) -> nn.Module:
        setup = prepare("tgd", model, probe_cfg, plan=plan)
        device = next(model.parameters()).device
        train(setup, probe_cfg, train_set, ctx=DistContext(device=device))
        return setup.finish()

    return adapt


def drop_cap(model: nn.Module, images, noise_level: float,
             tolerance: float = CAP_TOLERANCE) -> tuple[float, str]:
    """The drop bound: the largest phi whose dropped kernels change the output on ``images``
    by at most ``tolerance`` x ``noise_level``, and the drop criterion's reason."""
    p = tgd.plan(model, "auto", images=images, noise_level=noise_level, tolerance=tolerance,
                 example_input=planning_input(model))
    return float(p.threshold), p.selection["reason"]


def check_probe_inputs(model: nn.Module, cfg: TrainConfig, train_set: Dataset,
                       val_set: Dataset | None, *, iterations: int,
                       max_items: int | None) -> None:
    """The probe's inputs, checked before any probe runs (one-line errors naming the option)."""
    if cfg.loss not in IMAGE_LOSSES:
        raise ValueError(f"--auto-rule probe scores the probes with an image loss (--loss "
                         f"{' | '.join(IMAGE_LOSSES)}), not --loss {cfg.loss}")
    if val_set is None:
        raise ValueError("--auto-rule probe needs validation data (--val-data, a 'validation' "
                         "section in --data, or --holdout for tgd online)")
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError(f"--probe-iterations must be a positive integer, got {iterations!r}")
    n = len(item_indices(len(val_set), max_items))
    if n < MIN_ITEMS:
        raise ValueError(f"--auto-rule probe: the validation data give {n} items; the probe's "
                         f"standard error needs at least {MIN_ITEMS}")
    if len(train_set) < cfg.batch_size:
        raise ValueError(f"--auto-rule probe: the training set has {len(train_set)} items, "
                         f"fewer than one batch of {cfg.batch_size}")
    x, y = collate(train_set, range(cfg.batch_size))
    check_batch(model, x, y)
    vx, vy = collate(val_set, item_indices(len(val_set), max_items)[:1])
    check_batch(model, vx, vy, "validation")


def select_by_probe(model: nn.Module, cfg: TrainConfig, train_set: Dataset,
                    val_set: Dataset | None, *, iterations: int = PROBE_ITERATIONS,
                    noise_level: float | Callable | None = None, max_items: int | None = 64,
                    candidates=CANDIDATES, knee: float = KNEE, cap_tolerance: float = CAP_TOLERANCE,
                    old_images=None, cap_images: int = CAP_IMAGES, score: str = "kse"):
    """The TGD plan at the probe-selected phi (``plan.selection``: every candidate's numbers,
    the cap, the cost, the reason). ``noise_level``: the input's noise level for the cap (a
    number, or a function of the images; default: estimated from them); ``old_images``:
    unlabelled old-domain inputs, to record each probe's output change on them; ``score``: what
    ranks the maps (``tgd.plan``'s ``score``)."""
    check_probe_inputs(model, cfg, train_set, val_set, iterations=iterations,
                       max_items=max_items)
    images = as_images(train_set, model, cap_images)
    if noise_level is None:
        from tgd.targeting.noise_level import estimate_noise_level

        noise_level = estimate_noise_level
    noise = float(noise_level(images)) if callable(noise_level) else float(noise_level)
    if not math.isfinite(noise) or noise <= 0:
        raise ValueError(f"the input's noise level is {noise!r}; the probe's cap needs a "
                         "positive one")
    cap, cap_reason = drop_cap(model, images, noise, cap_tolerance)
    old = None if old_images is None else as_images(old_images, model, cap_images)
    planner = Planner.build(model, example_input=planning_input(model), score=score,
                            images=None if score == "kse" else images)
    sel = probe_threshold(planner, probe_adapt(cfg, train_set, iterations),
                          validation_losses(val_set, cfg.loss, max_items), iterations=iterations,
                          candidates=candidates, cap=cap, cap_reason=cap_reason, knee=knee,
                          old_images=old)
    plan = planner.make(sel.chosen)
    plan.selection = sel.to_dict()
    return plan
