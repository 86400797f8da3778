"""tgd: Targeted Gradient Descent for fine-tuning and online-learning of denoising ConvNets.

    import tgd
    p = tgd.plan(model, threshold=0.3)     # KSE of every conv's inputs -> per-channel masks
    h = tgd.attach(model, p)                # train with any optimizer; frozen values stay exact
    ...
    h.detach()                              # plain model with the adapted weights

``tgd.detach(model)`` and ``tgd.is_attached(model)`` do the same from the model alone;
``tgd.effective_state_dict(model)`` is the state dict ``detach`` would leave, without detaching.
The names load on first use, so ``import tgd`` alone (the command line's ``--help``) does not
import torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_HOMES = {
    "TGDHandle": "tgd.targeting",
    "TGDPlan": "tgd.targeting",
    "UnsupportedModelError": "tgd.targeting",
    "attach": "tgd.targeting",
    "detach": "tgd.targeting",
    "drop_kernels": "tgd.targeting",
    "drop_sweep": "tgd.targeting",
    "effective_state_dict": "tgd.targeting",
    "frozen_fingerprint": "tgd.targeting",
    "is_attached": "tgd.targeting",
    "load_adaptation": "tgd.targeting",
    "plan": "tgd.targeting",
    "probe_threshold": "tgd.targeting.probe",
    "save_adaptation": "tgd.targeting",
    "trainable_summary": "tgd.targeting",
    "kse_scores": "tgd.targeting.kse",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tgd' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_HOMES))
