"""The task-oriented loss of TOD-Net: soft Dice of a frozen, pre-trained segmenter ``T``
applied to the denoised image, ``L_t = 1 - Dice(T(G(x)), labels)`` (multi-class).

Soft Dice of class ``c`` over a set of voxels ``V``: with ``p`` the softmax probability of ``c``
and ``g`` its one-hot label, ``Dice_c = (2 sum_V p g + eps) / (sum_V p + sum_V g + eps)``.
``reduction="batch"`` (default) sums over the whole batch and every voxel (one Dice per class,
stable for small lesions that are absent from many patches); ``"sample"`` computes one Dice per
sample and class and averages. The loss averages ``1 - Dice_c`` over the classes
(``include_background=False`` drops class 0).

The segmenter is frozen: no parameter requires a gradient, it stays in eval mode (batch-norm
running statistics used, never updated) even when the module holding it is put in train mode,
and gradients flow through it to its input only.
"""

from __future__ import annotations

import torch
from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` for every parameter; returns ``module``."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(B, *S)`` integer labels -> ``(B, n_classes, *S)`` float."""
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError("labels must hold integer class indices")
        labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes - 1}], got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    oh = nn.functional.one_hot(labels.long(), n_classes)
    return oh.movedim(-1, 1).to(torch.float32)


def soft_dice(probs: torch.Tensor, target: torch.Tensor, *, reduction: str = "batch",
              eps: float = 1e-5) -> torch.Tensor:
    """Per-class soft Dice of probabilities ``(B, C, *S)`` against one-hot ``(B, C, *S)``:
    ``(C,)`` for ``reduction="batch"``, ``(B, C)`` for ``"sample"``."""
    if probs.shape != target.shape:
        raise ValueError(f"probabilities {tuple(probs.shape)} and one-hot labels "
                         f"{tuple(target.shape)} differ in shape")
    if reduction == "batch":
        dims = (0, *range(2, probs.dim()))
    elif reduction == "sample":
        dims = tuple(range(2, probs.dim()))
    else:
        raise ValueError(f"reduction must be 'batch' or 'sample', got {reduction!r}")
    inter = (probs * target).sum(dims)
    denom = probs.sum(dims) + target.sum(dims)
    return (2 * inter + eps) / (denom + eps)


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, *, include_background: bool = False,
                   reduction: str = "batch", eps: float = 1e-5) -> torch.Tensor:
    """``mean_c (1 - Dice_c)`` of ``softmax(logits)`` (``(B, C, *S)``) against integer labels
    ``(B, *S)`` or ``(B, 1, *S)``."""
    if logits.dim() < 3:
        raise ValueError(f"logits must be (batch, classes, *spatial), got {tuple(logits.shape)}")
    n = logits.shape[1]
    if n < 2:
        raise ValueError("the segmenter must output at least 2 class channels (softmax)")
    if labels.dim() == logits.dim() and labels.shape[1] == 1:  # (B, 1, *S) -> (B, *S)
        labels = labels[:, 0]
    target = one_hot(labels, n).to(logits.device)
    if target.shape[2:] != logits.shape[2:]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match the segmentation "
                         f"{tuple(logits.shape)}")
    dice = soft_dice(torch.softmax(logits, 1), target, reduction=reduction, eps=eps)
    if not include_background:
        dice = dice[..., 1:]
    return (1 - dice).mean()


class TaskLoss(nn.Module):
    """``1 - soft Dice`` of a frozen segmenter on the denoised image (see the module docstring).

    ``segmenter`` maps ``(B, 1, *S)`` images (the denoiser's output) to ``(B, C, *S)`` logits.
    """

    def __init__(self, segmenter: nn.Module, *, include_background: bool = False,
                 reduction: str = "batch", eps: float = 1e-5) -> None:
        super().__init__()
        self.segmenter = freeze(segmenter)
        self.include_background = include_background
        self.reduction = reduction
        self.eps = eps

    def train(self, mode: bool = True) -> TaskLoss:
        super().train(mode)
        self.segmenter.eval()  # frozen: never batch statistics, never running-stat updates
        return self

    def forward(self, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.segmenter.eval()
        return soft_dice_loss(self.segmenter(image), labels,
                              include_background=self.include_background,
                              reduction=self.reduction, eps=self.eps)
