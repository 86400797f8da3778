"""Losses as composable pieces: WGAN critic / generator terms, the task (Dice) loss of a frozen
segmenter, MSE, and their combination ``L_G = w_gan L_GAN + w_task L_t + lambda L_MSE`` (TOD-Net).

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
from tgd.losses.task import TaskLoss, freeze, one_hot, soft_dice, soft_dice_loss

__all__ = [
    "GeneratorLoss",
    "LossWeights",
    "TaskLoss",
    "clip_weights",
    "critic_loss",
    "freeze",
    "generator_adversarial_loss",
    "gradient_penalty",
    "mse_loss",
    "one_hot",
    "soft_dice",
    "soft_dice_loss",
    "weights_within",
]
