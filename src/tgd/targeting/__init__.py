"""Targeting: which kernels TGD retrains (plan), how it trains only those (attach), and dropping.

Threshold selection (``auto_threshold``), data-driven scores (``importance``) and the
KSE-vs-random check (``premise``) are imported from their modules.
"""

from tgd.targeting.attach import MODES, ChannelMask, TGDHandle, attach, plain_state_dict
from tgd.targeting.channels import ChannelFlow, trace_channels
from tgd.targeting.drop import drop_kernels, drop_sweep
from tgd.targeting.fingerprint import frozen_fingerprint, weights_fingerprint
from tgd.targeting.layers import UnsupportedModelError
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
    "drop_kernels",
    "drop_sweep",
    "frozen_fingerprint",
    "plain_state_dict",
    "plan",
    "trace_channels",
    "weights_fingerprint",
]
