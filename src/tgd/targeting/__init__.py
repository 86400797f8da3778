"""Targeting: which kernels TGD retrains (plan), how it trains only those (attach), and dropping.

Threshold selection (``auto_threshold``), data-driven scores (``importance``) and the
KSE-vs-random check (``premise``) are imported from their modules.
"""

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
from tgd.targeting.plan import LayerPlan, NormPlan, Planner, TGDPlan, conv_blocks, plan

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
    "plan",
    "trace_channels",
    "weights_fingerprint",
]
