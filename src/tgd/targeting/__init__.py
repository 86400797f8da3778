"""Targeting: which kernels TGD retrains (plan), how it trains only those (attach), and dropping."""

from tgd.targeting.attach import MODES, ChannelMask, TGDHandle, attach, plain_state_dict
from tgd.targeting.drop import drop_kernels, drop_sweep
from tgd.targeting.fingerprint import frozen_fingerprint, weights_fingerprint
from tgd.targeting.graph import ConvLink, UnsupportedModelError, conv_links
from tgd.targeting.plan import LayerPlan, TGDPlan, plan

__all__ = [
    "MODES",
    "ChannelMask",
    "ConvLink",
    "LayerPlan",
    "TGDHandle",
    "TGDPlan",
    "UnsupportedModelError",
    "attach",
    "conv_links",
    "drop_kernels",
    "drop_sweep",
    "frozen_fingerprint",
    "plain_state_dict",
    "plan",
    "weights_fingerprint",
]
