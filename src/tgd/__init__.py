"""tgd: Targeted Gradient Descent for fine-tuning and online-learning of denoising ConvNets.

    import tgd
    p = tgd.plan(model, threshold=0.3)     # KSE of every conv's inputs -> per-channel masks
    h = tgd.attach(model, p)                # train with any optimizer; frozen values stay exact
    ...
    h.detach()                              # plain model with the adapted weights
"""

from tgd.kse import kse_scores
from tgd.targeting import (
    TGDHandle,
    TGDPlan,
    UnsupportedModelError,
    attach,
    drop_kernels,
    drop_sweep,
    frozen_fingerprint,
    plan,
)

__version__ = "0.1.0"

__all__ = [
    "TGDHandle",
    "TGDPlan",
    "UnsupportedModelError",
    "attach",
    "drop_kernels",
    "drop_sweep",
    "frozen_fingerprint",
    "kse_scores",
    "plan",
]
