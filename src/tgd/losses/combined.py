"""The generator objective of TOD-Net and its baselines.

``L_G = gan * L_GAN + task * L_t + mse * L_MSE`` with ``L_GAN = -E[D(G(x))]``
(:mod:`tgd.losses.adversarial`), ``L_t`` the frozen segmenter's soft-Dice loss
(:class:`tgd.losses.TaskLoss`) and ``L_MSE`` the mean squared error to the target. The paper's
form is ``gan = task = 1`` and ``mse = lambda``. Setting a weight to 0 drops its term (and the
network it needs): ``LossWeights(gan=0, task=0, mse=1)`` is plain MSE training,
``LossWeights(gan=1, task=0, mse=lambda)`` is MSE-WGAN, all three is TOD-Net.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from tgd.losses.adversarial import generator_adversarial_loss
from tgd.losses.task import TaskLoss


def mse_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error (shapes must match exactly: no silent broadcasting)."""
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ")
    return nn.functional.mse_loss(output, target)


@dataclass(frozen=True)
class LossWeights:
    gan: float = 1.0
    task: float = 1.0
    mse: float = 1.0

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                    or v < 0:
                raise ValueError(f"loss weight {k} must be a finite number >= 0, got {v!r}")
        if not any(asdict(self).values()):
            raise ValueError("at least one loss weight must be positive")


class GeneratorLoss(nn.Module):
    """Weighted sum of the generator terms; returns ``(total, {term: value})``.

    ``critic`` is needed when ``weights.gan > 0``, ``task`` when ``weights.task > 0``.
    """

    def __init__(self, weights: LossWeights, critic: nn.Module | None = None,
                 task: TaskLoss | None = None) -> None:
        super().__init__()
        if weights.gan > 0 and critic is None:
            raise ValueError("an adversarial weight > 0 needs a critic")
        if weights.task > 0 and task is None:
            raise ValueError("a task weight > 0 needs a task loss (a frozen segmenter)")
        self.weights = weights
        self.critic = critic
        self.task = task

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        if w.mse > 0:
            terms["mse"] = mse_loss(output, target)
        if w.gan > 0:
            terms["gan"] = generator_adversarial_loss(self.critic(output))
        if w.task > 0:
            if labels is None:
                raise ValueError("the task loss needs labels for every training item")
            terms["task"] = self.task(output, labels)
        total = sum(getattr(w, k) * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}
