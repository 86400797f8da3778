"""Training losses: the image losses the training loop can use (``TrainConfig.loss``)."""

from tgd.losses.noise import LOSSES, anscombe, image_loss, poisson_deviance

__all__ = ["LOSSES", "anscombe", "image_loss", "poisson_deviance"]
