"""Losses as composable pieces.

- Image losses (``IMAGE_LOSSES``, :mod:`tgd.losses.noise`): ``mse``, and ``anscombe`` /
  ``poisson`` for count-like noise where hot structures would dominate an MSE.
- TOD-Net's pieces: WGAN critic / generator terms, the task (Dice) loss of a frozen segmenter,
  MSE, and their combination ``L_G = w_gan L_GAN + w_task L_t + lambda L_MSE``.

Depends on torch only (it sits beside ``tgd.models``, below ``tgd.training``).
"""

from tgd.losses.adversarial import (
    clip_weights,
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty,
    weights_within,
)
from tgd.losses.combined import GeneratorLoss, LossWeights, mse_loss
from tgd.losses.noise import IMAGE_LOSSES, anscombe, image_loss, poisson_deviance
from tgd.losses.task import TaskLoss, freeze, one_hot, soft_dice, soft_dice_loss

__all__ = [
    "IMAGE_LOSSES",
    "GeneratorLoss",
    "LossWeights",
    "TaskLoss",
    "anscombe",
    "clip_weights",
    "critic_loss",
    "freeze",
    "generator_adversarial_loss",
    "gradient_penalty",
    "image_loss",
    "mse_loss",
    "one_hot",
    "poisson_deviance",
    "soft_dice",
    "soft_dice_loss",
    "weights_within",
]
