"""tgd: Targeted Gradient Descent for fine-tuning and online-learning of denoising ConvNets.

    import tgd
    p = tgd.plan(model, threshold=0.3)     # KSE of every conv's inputs -> per-channel masks
    h = tgd.attach(model, p)                # train with any optimizer; frozen values stay exact
    ...
    h.detach()                              # plain model with the adapted weights

``tgd.detach(model)`` and ``tgd.is_attached(model)`` do the same from the model alone;
``tgd.effective_state_dict(model)`` is the state dict ``detach`` would leave, without detaching.
"""

from tgd.targeting import (
    TGDHandle,
    TGDPlan,
    UnsupportedModelError,
    attach,
    detach,
    drop_kernels,
    drop_sweep,
    effective_state_dict,
    frozen_fingerprint,
    is_attached,
    load_adaptation,
    plan,
    save_adaptation,
    trainable_summary,
)
from tgd.targeting.kse import kse_scores

__version__ = "0.1.0"

__all__ = [
    "TGDHandle",
    "TGDPlan",
    "UnsupportedModelError",
    "attach",
    "detach",
    "drop_kernels",
    "drop_sweep",
    "effective_state_dict",
    "frozen_fingerprint",
    "is_attached",
    "kse_scores",
    "load_adaptation",
    "plan",
    "save_adaptation",
    "trainable_summary",
]
