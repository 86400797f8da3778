"""Attach TGD to a model for training, and detach it to get the plain adapted model back.

Preservation is by construction, whatever the optimizer does: every planned weight, bias and
norm affine parameter is reparametrised (``torch.nn.utils.parametrize``) as
``torch.where(mask, trained, pretrained)``. The optimizer owns ``trained`` (the original
``Parameter`` object, so an optimizer built before ``attach`` keeps working); weight decay or
momentum may move its non-targeted entries, but they never reach the forward pass. Norm running
statistics of non-targeted channels are restored after every training forward. Parameters of
frozen layers and of modules outside the plan get an all-False mask and ``requires_grad=False``.

Gradient masking:

- ``mode="parameter"`` (default): the exact gradient; only the update is masked (parameter
  gradients outside the plan are zero), and the gradient flows on to earlier layers through all
  channels, as in plain fine-tuning.
- ``mode="activation"`` (the paper's TGD layers): the gradient w.r.t. every planned conv's and
  norm's output is multiplied by the channel mask, which also restricts the gradient that flows
  on to earlier layers. For plain convs the mask is fused into the conv backward, which then
  computes only the targeted channels (cheaper than a full fine-tuning step). The gradient that
  reaches early layers is then not the loss's gradient: at a trained DnCNN it can be 1e-4 to
  1e-9 of the exact one with cosine near 0, and Adam turns it into learning-rate-sized steps,
  so this mode can diverge (docs/reproduction.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from tgd.targeting.fingerprint import weights_fingerprint
from tgd.targeting.geometry import PER_CHANNEL_NORMS, device_of, output_channel_entries
from tgd.targeting.masked_conv import fast_path_supported, targeted_conv_forward
from tgd.targeting.plan import TGDPlan

MODES = ("activation", "parameter")
_HANDLE_ATTR = "_tgd_handle"


class ChannelMask(nn.Module):
    """Parametrization ``where(mask, X, pretrained)``: only entries under ``mask`` can change."""

    def __init__(self, mask: torch.Tensor, pretrained: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(pretrained.device))
        self.register_buffer("pretrained", pretrained.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, x, self.pretrained)


def _cached_to(cache: dict, t: torch.Tensor, like: torch.Tensor, keep_dtype=False) -> torch.Tensor:
    """``t`` on ``like``'s device (and dtype unless ``keep_dtype``), converted once per device."""
    key = (id(t), like.device, like.dtype)
    if key not in cache:
        cache[key] = t.to(like.device) if keep_dtype else t.to(like.device, like.dtype)
    return cache[key]


def _grad_mask_hook(mask: torch.Tensor):
    """Forward hook: multiply the gradient w.r.t. the module's output by the channel mask."""
    cache: dict = {}

    def hook(module, args, out):
        if isinstance(out, torch.Tensor) and out.requires_grad:
            m = _cached_to(cache, mask.view(1, -1, *([1] * (out.dim() - 2))), out)
            out.register_hook(lambda g: None if g is None else g * m)  # None: no gradient

    return hook


def _restore_stats_hook(keep: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, count):
    """Forward hook: put back the running statistics of channels that are not retrained."""
    cache: dict = {}

    def hook(module, args, out):
        if not module.training or module.running_mean is None:
            return
        k = _cached_to(cache, keep, module.running_mean, keep_dtype=True)
        # ``.data``: autograd saved these buffers, but a training-mode norm's backward uses the
        # batch statistics only, so writing them without bumping their version is safe.
        mean_t, var_t = module.running_mean.data, module.running_var.data
        with torch.no_grad():
            mean_t.copy_(torch.where(k, _cached_to(cache, mean, mean_t), mean_t))
            var_t.copy_(torch.where(k, _cached_to(cache, var, var_t), var_t))
            if count is not None and module.num_batches_tracked is not None:
                module.num_batches_tracked.data.fill_(count)

    return hook


@dataclass
class TGDHandle:
    """What ``attach`` changed in a model; ``detach()`` undoes it and keeps the trained values."""

    model: nn.Module
    plan: TGDPlan
    mode: str
    _params: list[tuple[nn.Module, str, bool]] = field(default_factory=list)
    _hooks: list = field(default_factory=list)
    _patched: list[nn.Module] = field(default_factory=list)
    attached: bool = True

    def detach(self) -> nn.Module:
        """Remove every hook and parametrization; the model keeps its adapted weights."""
        if not self.attached:
            return self.model
        for h in self._hooks:
            h.remove()
        for mod in self._patched:
            del mod._conv_forward
        for mod, pname, requires_grad in self._params:
            parametrize.remove_parametrizations(mod, pname, leave_parametrized=True)
            getattr(mod, pname).requires_grad_(requires_grad)
        if getattr(self.model, _HANDLE_ATTR, None) is self:
            delattr(self.model, _HANDLE_ATTR)
        self._hooks, self._patched, self._params = [], [], []
        self.attached = False
        return self.model

    def __enter__(self) -> TGDHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters that have targeted entries (what an optimizer needs)."""
        return (p for p in self.model.parameters() if p.requires_grad)

    def effective_state_dict(self) -> dict[str, torch.Tensor]:
        """The plain model's state dict (effective weights, original keys), without detaching."""
        return effective_state_dict(self.model)


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with TGD parametrizations resolved to the effective tensors.

    The keys and values are those the model will have after ``detach``; on a plain model this
    is a copy of ``model.state_dict()`` (persistent buffers included).
    """
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for mname, mod in model.named_modules():
            if ".parametrizations." in f".{mname}." or mname.endswith("parametrizations"):
                continue
            prefix = f"{mname}." if mname else ""
            # registration order: attach parametrizes a module's parameters in their own order,
            # so the keys come in the order of the plain model's state dict
            parametrized = list(mod.parametrizations) if parametrize.is_parametrized(mod) else []
            for pname in parametrized:
                out[prefix + pname] = getattr(mod, pname).detach().clone()
            for pname, p in mod.named_parameters(recurse=False):
                out[prefix + pname] = p.detach().clone()
            for bname, b in mod.named_buffers(recurse=False):
                if b is not None and bname not in mod._non_persistent_buffers_set:
                    out[prefix + bname] = b.detach().clone()
    return out


def attach(model: nn.Module, plan: TGDPlan, mode: str = "parameter") -> TGDHandle:
    """Make ``model`` train with TGD according to ``plan``; returns a handle to ``detach()``.

    The forward pass is unchanged (bit-identical outputs). Build the optimizer before or after;
    all parameter objects are kept.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(plan, TGDPlan):
        raise TypeError(f"expected a TGDPlan from tgd.plan(), got {type(plan).__name__}")
    if is_attached(model):
        raise RuntimeError("TGD is already attached to this model; detach() it first")
    modules = dict(model.named_modules())
    already = [n for n, m in modules.items() if parametrize.is_parametrized(m)]
    if already:
        raise ValueError(
            f"modules {already} already carry parametrizations; TGD cannot be stacked on them"
        )
    plan.check(model)
    _warn_if_weights_changed(model, plan, modules)

    handle = TGDHandle(model, plan, mode)
    try:
        _attach(handle, modules)
    except Exception:
        handle.detach()
        raise
    setattr(model, _HANDLE_ATTR, handle)
    return handle


def is_attached(model: nn.Module) -> bool:
    """Whether TGD is attached to ``model`` (by ``attach``, and not detached since)."""
    return getattr(model, _HANDLE_ATTR, None) is not None


def detach(model: nn.Module) -> nn.Module:
    """Detach TGD from ``model`` (its handle's ``detach()``); a plain model is returned as is."""
    handle = getattr(model, _HANDLE_ATTR, None)
    return model if handle is None else handle.detach()


def _parametrize(handle: TGDHandle, mod: nn.Module, pname: str, mask: torch.Tensor) -> None:
    p = getattr(mod, pname)
    if p is None:
        return
    requires_grad = p.requires_grad
    parametrize.register_parametrization(mod, pname, ChannelMask(mask, p), unsafe=True)
    handle._params.append((mod, pname, requires_grad))
    if not bool(mask.any()):
        mod.parametrizations[pname].original.requires_grad_(False)


def _attach(handle: TGDHandle, modules: dict[str, nn.Module]) -> None:
    plan = handle.plan
    for name, lp in plan.layers.items():
        conv, mask = modules[name], lp.mask.to(modules[name].weight.device)
        _parametrize(handle, conv, "weight", output_channel_entries(conv, mask))
        _parametrize(handle, conv, "bias", mask)
        masked = handle.mode == "activation" and lp.role == "targeted"
        if lp.role == "targeted" and fast_path_supported(conv):
            conv._conv_forward = targeted_conv_forward(conv, mask, cut_input=masked)
            handle._patched.append(conv)
        elif masked:
            handle._hooks.append(conv.register_forward_hook(_grad_mask_hook(mask)))
    for name, npl in plan.norms.items():
        norm = modules[name]
        mask = npl.mask.to(device_of(norm))
        _parametrize(handle, norm, "weight", mask)
        _parametrize(handle, norm, "bias", mask)
        producer = plan.layers.get(npl.producer) if npl.producer else None
        if (
            handle.mode == "activation"
            and producer is not None
            and producer.role == "targeted"
            and not isinstance(norm, PER_CHANNEL_NORMS)
        ):
            # Group statistics couple channels: the TGD layer after the norm matters (after a
            # per-channel norm it is redundant with the one after its conv).
            handle._hooks.append(norm.register_forward_hook(_grad_mask_hook(mask)))
        if getattr(norm, "running_mean", None) is not None:
            count = None
            if not bool(mask.any()) and norm.num_batches_tracked is not None:
                count = int(norm.num_batches_tracked)
            handle._hooks.append(
                norm.register_forward_hook(
                    _restore_stats_hook(
                        ~mask, norm.running_mean.clone(), norm.running_var.clone(), count
                    )
                )
            )
    covered = set(plan.layers) | set(plan.norms)
    for mname, mod in modules.items():
        if mname in covered:
            continue
        for pname, p in list(mod.named_parameters(recurse=False)):
            _parametrize(handle, mod, pname, torch.zeros((), dtype=torch.bool, device=p.device))


def _warn_if_weights_changed(model, plan: TGDPlan, modules) -> None:
    if plan.weights_sha256 and plan.weights_sha256 != weights_fingerprint(model, plan):
        warnings.warn(
            "the model's conv weights differ from those the plan was computed on; for TGD^n "
            "compute a new plan on the adapted weights",
            stacklevel=3,
        )
