"""Image-quality measures of the simulator: re-exported from their home,
:mod:`tgd.evaluation.metrics` (kept here so ``from tgd.data.metrics import ...`` still works)."""

from tgd.evaluation.metrics import (
    ensemble_bias,
    ensemble_cov,
    interior,
    neighbour_correlation,
    pair_noise_cov,
)

__all__ = [
    "ensemble_bias",
    "ensemble_cov",
    "interior",
    "neighbour_correlation",
    "pair_noise_cov",
]
