"""Pre-training the task network of TOD-Net: a segmenter on normal-dose images with labels.

Items of the dataset are ``(input, target, classes)`` (``tgd.data.labelled``); the segmenter
learns ``target`` (the normal-dose / 600-s image, the same normalised intensities the denoisers
output) -> ``classes``. Loss: soft Dice (foreground classes, batch reduction) + cross-entropy,
Adam. Batch ``i`` is a function of ``(seed, i)`` as in the denoiser loop.

Checkpoints as for denoisers: ``NAME.safetensors`` (plain state dict, batch-norm statistics
included) + ``NAME.json`` with ``"kind": "segmenter"``, the architecture (``model``), the class
names, the training settings, data provenance and metrics.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import tgd
from tgd.losses import soft_dice_loss
from tgd.models import Segmenter
from tgd.training.checkpoint import load_checkpoint, save_checkpoint
from tgd.training.loop import epoch_order, steps_per_epoch
from tgd.training.methods import load_state_strict


def _batch(dataset, idx) -> tuple[torch.Tensor, torch.Tensor]:
    ys, cs = [], []
    for i in idx:
        item = dataset[int(i)]
        if len(item) < 3:
            raise ValueError("segmenter training needs (input, target, classes) items")
        ys.append(item[1])
        cs.append(torch.as_tensor(item[2]))
    return torch.stack(ys), torch.stack(cs)


def train_segmenter(seg: Segmenter, dataset, *, iterations: int, batch_size: int = 16,
                    lr: float = 1e-3, seed: int = 0, progress: bool = False,
                    device=None) -> dict:
    """Train ``seg`` in place; returns metrics (loss history, time)."""
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    n = len(dataset)
    spe = steps_per_epoch(n, batch_size)
    device = device or torch.device("cpu")
    seg.to(device).train()
    opt = torch.optim.Adam(seg.parameters(), lr=lr)
    ce = nn.CrossEntropyLoss()
    losses, t0, epoch, order = [], time.perf_counter(), None, None
    for it in tqdm(range(iterations), desc="segmenter", disable=not progress, dynamic_ncols=True):
        if it // spe != epoch:
            epoch = it // spe
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            order = epoch_order(seed, epoch, n)
        pos = it % spe
        y, c = _batch(dataset, order[pos * batch_size:(pos + 1) * batch_size])
        if it == 0 and (y.dim() != 4 or c.shape != (y.shape[0], *y.shape[2:])):
            raise ValueError(f"segmenter items must be (1, H, W) images with (H, W) classes, "
                             f"got {tuple(y.shape[1:])} and {tuple(c.shape[1:])}")
        if int(c.max()) >= seg.n_classes or int(c.min()) < 0:
            raise ValueError(f"class index out of range [0, {seg.n_classes - 1}] at iteration "
                             f"{it}")
        y, c = y.to(device), c.to(device)
        opt.zero_grad(set_to_none=True)
        logits = seg(y)
        loss = soft_dice_loss(logits, c) + ce(logits, c)
        loss.backward()
        opt.step()
        lv = float(loss.detach())
        if not np.isfinite(lv):
            raise FloatingPointError(f"the segmenter loss became {lv} at iteration {it}")
        losses.append([it + 1, lv])
    seg.eval()
    return {"iterations": iterations, "train_time_s": time.perf_counter() - t0,
            "loss": losses[-500:], "train_loss_last": float(np.mean([v for _, v in losses[-20:]]))}


def save_segmenter(path, seg: Segmenter, meta: dict, *, overwrite: bool = False):
    full = {"kind": "segmenter", "tgd_version": tgd.__version__,
            "torch_version": torch.__version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "model": seg.spec(), **meta}
    return save_checkpoint(path, seg.state_dict(), full, overwrite=overwrite)


def load_segmenter(path) -> tuple[Segmenter, object]:
    """Rebuild a segmenter from its checkpoint (never unpickles); ``(segmenter, checkpoint)``."""
    ckpt = load_checkpoint(path)
    if ckpt.meta.get("kind") != "segmenter":
        raise ValueError(f"{ckpt.path} is a {ckpt.meta.get('kind')!r} checkpoint, not a segmenter "
                         "(train one with `tgd train-segmenter`)")
    spec = ckpt.meta.get("model")
    if not isinstance(spec, dict):
        raise ValueError(f"{ckpt.path} has no 'model' entry describing the segmenter")
    try:
        seg = Segmenter(**spec)
    except TypeError as err:
        raise ValueError(f"{ckpt.path}: bad segmenter settings {spec}: {err}") from err
    load_state_strict(seg, ckpt.tensors, str(ckpt.path))
    return seg.eval(), ckpt


@torch.no_grad()
def segment(seg: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Hard labels (argmax) of ``(N, 1, H, W)`` images, ``(N, H, W)`` int64, eval mode."""
    was = seg.training
    seg.eval()
    try:
        out = [seg(images[s:s + batch_size]).argmax(1) for s in range(0, len(images), batch_size)]
    finally:
        seg.train(was)
    return torch.cat(out)
