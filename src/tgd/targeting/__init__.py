"""Targeting: which kernels TGD retrains (plan), how it trains only those (attach), and dropping.

Modules, lowest first; each imports only modules listed before it:

- ``geometry``: layer kinds, channel-to-weight-entry arithmetic, ``UnsupportedModelError``;
- ``kse``: KSE scores; ``masked_conv``: the fused targeted conv backward;
  ``noise_level``: noise estimate of images;
- ``channels``: trace a model's channel flow; ``plan``: ``TGDPlan`` (data, JSON, check);
- ``rules``: the targeting rules, from a flow and scores to layer and norm plans;
  ``importance``: data-driven scores; ``fingerprint``: hashes of planned weights;
- ``planner``: ``Planner`` (trace, score, decide); ``attach``: TGD on a model, ``detach``;
- ``drop``: kernel dropping; ``auto_threshold``: threshold selection by the drop criterion;
  ``probe``: threshold selection by probe adaptations (the rule; the caller trains);
  ``premise``: KSE vs random;
- ``make_plan``: ``tgd.plan``; ``adaptation``: save/load only the retrained entries.

Threshold selection (``auto_threshold``, ``probe``), data-driven scores (``importance``) and the
KSE-vs-random check (``premise``) are imported from their modules.
"""

from tgd.targeting.adaptation import (
    load_adaptation,
    plain_state_dict,
    print_trainable_parameters,
    save_adaptation,
    trainable_summary,
)
from tgd.targeting.attach import (
    MODES,
    ChannelMask,
    TGDHandle,
    attach,
    detach,
    effective_state_dict,
    is_attached,
)
from tgd.targeting.channels import ChannelFlow, trace_channels
from tgd.targeting.drop import drop_kernels, drop_sweep
from tgd.targeting.fingerprint import frozen_fingerprint, weights_fingerprint
from tgd.targeting.geometry import UnsupportedModelError
from tgd.targeting.make_plan import plan
from tgd.targeting.plan import LayerPlan, NormPlan, TGDPlan
from tgd.targeting.planner import Planner, conv_blocks

__all__ = [
    "MODES",
    "ChannelMask",
    "ChannelFlow",
    "LayerPlan",
    "NormPlan",
    "Planner",
    "TGDHandle",
    "TGDPlan",
    "UnsupportedModelError",
    "attach",
    "conv_blocks",
    "detach",
    "drop_kernels",
    "drop_sweep",
    "effective_state_dict",
    "frozen_fingerprint",
    "is_attached",
    "load_adaptation",
    "plain_state_dict",
    "plan",
    "print_trainable_parameters",
    "save_adaptation",
    "trace_channels",
    "trainable_summary",
    "weights_fingerprint",
]
