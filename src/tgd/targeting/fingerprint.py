"""Hashes that let a user check TGD's promises: which weights a plan saw, and what stayed frozen."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from tgd.targeting.geometry import device_of, output_channel_entries
from tgd.targeting.plan import TGDPlan


def _update(h, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def weights_fingerprint(model: nn.Module, plan: TGDPlan) -> str:
    """SHA-256 of the planned conv weights (effective values, also while TGD is attached)."""
    modules = dict(model.named_modules())
    h = hashlib.sha256()
    for name in plan.layers:
        _update(h, name, modules[name].weight)
    return h.hexdigest()


def frozen_fingerprint(model: nn.Module, plan: TGDPlan) -> str:
    """SHA-256 of every value TGD promises to keep: equal before and after fine-tuning.

    Covers the non-retrained output channels of each planned conv (weight rows, bias) and of its
    norm layers (affine weight/bias, running mean/variance), and every parameter outside the
    plan. Works on the plain model and while TGD is attached (effective values are read).
    """
    modules = dict(model.named_modules())
    entries: dict[str, torch.Tensor] = {}
    covered = set()
    for name, lp in plan.layers.items():
        conv = modules[name]
        keep = ~lp.mask.to(conv.weight.device)
        covered.add(name)
        kept = output_channel_entries(conv, keep).expand_as(conv.weight)
        entries[f"{name}.weight"] = conv.weight[kept]
        if conv.bias is not None:
            entries[f"{name}.bias"] = conv.bias[keep]
    for nname, npl in plan.norms.items():
        norm = modules[nname]
        covered.add(nname)
        keep = ~npl.mask.to(device_of(norm))
        for attr in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(norm, attr, None)
            if t is not None:
                entries[f"{nname}.{attr}"] = t[keep]
    for mname, mod in modules.items():
        if mname in covered or ".parametrizations" in f".{mname}":
            continue
        names = [n for n, _ in mod.named_parameters(recurse=False)]
        names += list(getattr(mod, "parametrizations", {}).keys())
        for pname in names:
            entries[f"{mname}.{pname}"] = getattr(mod, pname)
    h = hashlib.sha256()
    with torch.no_grad():
        for key in sorted(entries):
            _update(h, key, entries[key])
    return h.hexdigest()
