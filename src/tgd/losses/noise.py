"""Image losses for denoising with noisy or count-like targets.

- ``mse``: mean squared error (the paper's loss).
- ``anscombe``: MSE after the Anscombe transform ``2 sqrt(x + 3/8)`` of the (normalised,
  clipped at 0) images. PET noise grows with the signal; on the variance-stabilised scale an
  error counts relative to the local noise level, so a hot structure (a bladder 60-100x the body
  mean) no longer dominates the loss of a Noise2Noise pair.
- ``poisson``: the mean Poisson deviance ``2 (y log(y / mu) - (y - mu))`` of the prediction
  ``mu`` (clipped below at ``eps``) for the target ``y`` (clipped at 0), the negative
  log-likelihood of a Poisson mean up to a constant.

Every loss is zero when prediction and target are equal (and non-negative) and takes tensors of
equal shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

EPS = 1e-3


def anscombe(x: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.sqrt(torch.relu(x) + 0.375)


def anscombe_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(anscombe(pred), anscombe(target))


def poisson_deviance(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    mu = pred.clamp_min(eps)
    y = target.clamp_min(0.0)
    # y log(y / mu) -> 0 as y -> 0
    ylog = torch.where(y > 0, y * (torch.log(y.clamp_min(eps)) - torch.log(mu)),
                       torch.zeros_like(y))
    return 2.0 * (ylog - (y - mu)).mean()


IMAGE_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": nn.functional.mse_loss,
    "anscombe": anscombe_mse,
    "poisson": poisson_deviance,
}


def image_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The image loss called ``name`` (one of ``IMAGE_LOSSES``)."""
    if name not in IMAGE_LOSSES:
        raise ValueError(f"unknown image loss {name!r}; choose from {sorted(IMAGE_LOSSES)}")
    return IMAGE_LOSSES[name]
