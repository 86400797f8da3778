"""What each training method trains: the model setup for scratch, ft, tgd, ewc, l2sp, lora and
online.

``l2sp`` trains every weight with the penalty ``(lambda / 2) * ||theta - theta_pretrained||^2``
(L2-SP, Li et al. 2018: EWC with a unit Fisher). ``lora`` freezes the pre-trained net and trains
a rank-``r`` update ``B A`` of every conv but the last (LoRA through the PEFT library, an
optional dependency: ``pip install tgd[lora]``); batch norm stays frozen, and ``finish()``
merges the update into the plain model.

Conv block (for ``ft``): a conv layer together with the normalisation layers between it and
the next conv (for ``DnCNN``: conv (+ batch norm) (+ ReLU)). The paper's FT-net trains the last
three blocks of the 8-layer DnCNN: conv 6 + BN 6, conv 7 + BN 7 and the last conv, i.e.
``body.14``, ``body.15``, ``body.17``, ``body.18`` and ``body.20`` (74,560 of 224,320
parameters at width 64). The other blocks keep their weights and their batch norms run in eval
mode (running statistics used and kept), as frozen layers usually are.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import tgd
from tgd.targeting import TGDHandle, TGDPlan, conv_blocks
from tgd.training.config import METHODS, MethodInfo, TrainConfig
from tgd.training.ewc import EWCPenalty


def planning_input(model: nn.Module) -> torch.Tensor | None:
    """The input ``tgd.plan`` traces ``model`` with: its ``example_input()`` (the model
    protocol, ``tgd.models.traits``; for tgd.models nets 1 sample of zeros, 32 voxels per
    spatial dim or the size multiple), None for a model without one (tgd.plan's default)."""
    make = getattr(model, "example_input", None)
    return make() if callable(make) else None


def plan_model(model: nn.Module, threshold: float | str, **options) -> TGDPlan:
    """``tgd.plan`` traced with :func:`planning_input` (2-D or 3-D); ``options`` (score,
    images, per_layer, tolerance, noise_level, budget) go to ``tgd.plan``."""
    return tgd.plan(model, threshold, example_input=planning_input(model), **options)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a ValueError that names what does not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or shapes:
        parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "",
                 f"shape differs for {shapes}" if shapes else ""]
        raise ValueError(f"{source} does not match the model: " + "; ".join(p for p in parts if p))
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ValueError(f"{source}: tensor '{k}' contains NaN or infinite values")
    model.load_state_dict(state, strict=True)


def state_fingerprint(model: nn.Module, keys) -> str:
    """SHA-256 of the named entries of the (plain) state dict."""
    state = model.state_dict()
    h = hashlib.sha256()
    for k in sorted(keys):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class MethodSetup:
    """A model ready to train with one method, and what the checkpoint should record."""

    method: str
    model: nn.Module
    params: list[nn.Parameter]
    handle: TGDHandle | None = None
    plan: TGDPlan | None = None
    penalty: Callable[[nn.Module], torch.Tensor] | None = None
    eval_modules: list[nn.Module] = field(default_factory=list)
    frozen_keys: list[str] = field(default_factory=list)  # ft: state entries kept
    fingerprint_before: str | None = None
    info: dict = field(default_factory=dict)
    # MSE-WGAN / TOD-Net (tgd.training.adversarial.Adversarial); None: plain MSE steps
    adversarial: Any = None

    def frozen_fingerprint(self) -> str | None:
        """Hash of everything the method promises to keep (TGD, FT); None otherwise."""
        if self.plan is not None:
            return tgd.frozen_fingerprint(self.model, self.plan)
        if self.frozen_keys:
            return state_fingerprint(self.model, self.frozen_keys)
        return None

    def effective_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of the plain trained model (TGD resolved, LoRA merged), a copy."""
        if self.handle is not None and self.handle.attached:
            return self.handle.effective_state_dict()
        if self.method == "lora":
            merged = _merge_lora(copy.deepcopy(self.model))
            return {k: v.detach().clone() for k, v in merged.state_dict().items()}
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def finish(self) -> nn.Module:
        """Detach TGD (if attached), merge LoRA (if any) and return the plain trained model."""
        if self.handle is not None:
            self.handle.detach()
        if self.method == "lora":
            self.model = _merge_lora(self.model)
        for p in self.model.parameters():
            p.requires_grad_(True)
        return self.model


def setup_scratch(model: nn.Module, cfg: TrainConfig) -> MethodSetup:
    return MethodSetup("scratch", model, list(model.parameters()))


def setup_ft(model: nn.Module, cfg: TrainConfig) -> MethodSetup:
    blocks = conv_blocks(model)
    if cfg.ft_blocks > len(blocks):
        raise ValueError(f"ft_blocks={cfg.ft_blocks} but the model has {len(blocks)} conv blocks")
    trained = blocks[-cfg.ft_blocks:]
    trained_modules = {n for conv, norms in trained for n in (conv, *norms)}
    params = []
    for name, p in model.named_parameters():
        owner = name.rsplit(".", 1)[0]
        p.requires_grad_(owner in trained_modules)
        if p.requires_grad:
            params.append(p)
    modules = dict(model.named_modules())
    frozen_norms = [modules[n] for _, norms in blocks[:-cfg.ft_blocks] for n in norms]
    frozen_keys = [k for k in model.state_dict() if k.rsplit(".", 1)[0] not in trained_modules]
    n_all = sum(p.numel() for p in model.parameters())
    info = {
        "ft": {
            "blocks": [[c, *n] for c, n in trained],
            "trained_parameters": [n for n, p in model.named_parameters() if p.requires_grad],
            "trained_fraction": sum(p.numel() for p in params) / n_all,
        }
    }
    setup = MethodSetup("ft", model, params, eval_modules=frozen_norms, frozen_keys=frozen_keys,
                        info=info)
    setup.fingerprint_before = setup.frozen_fingerprint()
    return setup


def setup_tgd(
    model: nn.Module, cfg: TrainConfig, plan: TGDPlan | None = None, method: str = "tgd"
) -> MethodSetup:
    """Plan (unless given, e.g. broadcast from rank 0) and attach TGD; last layer stays frozen."""
    if plan is None:
        plan = plan_model(model, cfg.threshold)
    handle = tgd.attach(model, plan, mode=cfg.mode)
    params = list(handle.trainable_parameters())
    if not params:
        handle.detach()
        raise ValueError(
            f"threshold {plan.threshold} selects no kernel to retrain (every KSE score is >= "
            "the threshold); raise --threshold"
        )
    info = {"tgd": {"mode": cfg.mode, "threshold": plan.threshold,
                    "trained_fraction": plan.trainable_fraction(model)}}
    setup = MethodSetup(method, model, params, handle=handle, plan=plan, info=info)
    setup.fingerprint_before = setup.frozen_fingerprint()
    return setup


def setup_ewc(
    model: nn.Module, cfg: TrainConfig, fisher: dict[str, torch.Tensor],
    anchor: dict[str, torch.Tensor] | None = None,
) -> MethodSetup:
    if anchor is None:
        anchor = {k: p.detach().clone() for k, p in model.named_parameters()}
    dev = next(model.parameters()).device
    penalty = EWCPenalty(fisher, anchor, cfg.ewc_lambda).to(dev)
    info = {"ewc": {"lambda": cfg.ewc_lambda,
                    "fisher_mean": float(torch.cat([f.flatten() for f in fisher.values()]).mean())}}
    return MethodSetup("ewc", model, list(model.parameters()), penalty=penalty, info=info)


def setup_l2sp(model: nn.Module, cfg: TrainConfig) -> MethodSetup:
    anchor = {k: p.detach().clone() for k, p in model.named_parameters()}
    unit = {k: torch.ones_like(p) for k, p in anchor.items()}
    penalty = EWCPenalty(unit, anchor, cfg.l2sp_lambda).to(next(model.parameters()).device)
    return MethodSetup("l2sp", model, list(model.parameters()), penalty=penalty,
                       info={"l2sp": {"lambda": cfg.l2sp_lambda}})


def _peft():
    try:
        import peft
    except ImportError as err:  # optional dependency
        raise ImportError("the 'lora' method needs the PEFT library: pip install 'tgd[lora]' "
                          "(or pip install peft)") from err
    return peft


def setup_lora(model: nn.Module, cfg: TrainConfig) -> MethodSetup:
    """LoRA on every conv except the last (kept frozen, as TGD keeps it)."""
    peft = _peft()
    blocks = conv_blocks(model)
    if len(blocks) < 2:
        raise ValueError("LoRA needs at least two conv layers (the last one stays frozen)")
    targets = [conv for conv, _ in blocks[:-1]]
    n_all = sum(p.numel() for p in model.parameters())
    config = peft.LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, lora_dropout=0.0,
                             target_modules=targets, bias="none")
    wrapped = peft.get_peft_model(model, config)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    info = {"lora": {"rank": cfg.lora_rank, "targets": targets,
                     "trained_fraction": sum(p.numel() for p in params) / n_all}}
    norms = [m for m in wrapped.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return MethodSetup("lora", wrapped, params, eval_modules=norms, info=info)


def _merge_lora(wrapped: nn.Module) -> nn.Module:
    return wrapped.merge_and_unload() if hasattr(wrapped, "merge_and_unload") else wrapped


def batch_norm_policy(setup: MethodSetup, cfg: TrainConfig) -> MethodSetup:
    """Apply ``cfg.bn``: with "frozen" every batch norm runs in eval mode while training.

    Why frozen is the default for TGD: TGD keeps the running statistics of non-retrained
    channels, but once retrained maps change the inputs of later layers, the batch statistics
    of those channels drift away from the kept running statistics, so the network trained with
    batch statistics is not the one evaluated. With frozen batch norm the training forward is
    the inference forward (docs/training.md has the measurement).
    """
    mode = cfg.bn
    if mode == "auto":
        mode = "frozen" if setup.method in ("tgd", "online", "lora") else "train"
    if mode == "frozen":
        bns = [m for m in setup.model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        setup.eval_modules = list({id(m): m for m in setup.eval_modules + bns}.values())
    setup.info["batch_norm"] = mode
    return setup


def prepare(
    method: str, model: nn.Module, cfg: TrainConfig, *, plan: TGDPlan | None = None,
    fisher: dict[str, torch.Tensor] | None = None,
) -> MethodSetup:
    """The setup for ``method`` (``fisher`` is needed for ewc)."""
    dims = getattr(model, "spatial_dims", None)
    if dims is not None and dims != cfg.spatial_dims:
        raise ValueError(f"the model is {dims}-D but the training settings say spatial_dims="
                         f"{cfg.spatial_dims}")
    return batch_norm_policy(_prepare(method, model, cfg, plan, fisher), cfg)


Setup = Callable[..., MethodSetup]
"""``setup(model, cfg, *, plan, fisher, method) -> MethodSetup``: what a method trains."""


def _ewc(model, cfg, *, fisher, **_):
    if fisher is None:
        raise ValueError(
            "EWC needs the Fisher information of the pre-training data: the checkpoint "
            "has none stored; pass --fisher-data with (a manifest of) pre-training pairs"
        )
    return setup_ewc(model, cfg, fisher)


SETUPS: dict[str, Setup] = {
    "scratch": lambda model, cfg, **_: setup_scratch(model, cfg),
    "ft": lambda model, cfg, **_: setup_ft(model, cfg),
    "tgd": lambda model, cfg, *, plan, method, **_: setup_tgd(model, cfg, plan, method=method),
    "ewc": _ewc,
    "l2sp": lambda model, cfg, **_: setup_l2sp(model, cfg),
    "lora": lambda model, cfg, **_: setup_lora(model, cfg),
}
SETUPS["online"] = SETUPS["tgd"]
if set(SETUPS) != set(METHODS):  # the registry (tgd.training.config.METHODS) and the setups
    raise RuntimeError(f"methods without a setup: {sorted(set(METHODS) - set(SETUPS))}")


def register_method(name: str, setup: Setup, info: MethodInfo) -> None:
    """Add a training method in one place: its entry in ``tgd.training.config.METHODS``
    (``info``: offered by ``tgd finetune``? its settings) and its model ``setup``. Settings
    must be :class:`TrainConfig` fields; the loop, resume, DDP and ``tgd.training.adapt`` then
    take it (``tgd finetune`` offers it when registered before
    ``tgd.training.driver`` is imported)."""
    if name in METHODS:
        raise ValueError(f"method {name!r} is already registered")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = [s for s in info.settings if s not in fields]
    if unknown:
        raise ValueError(f"settings {unknown} of method {name!r} are not TrainConfig fields")
    METHODS[name] = info
    SETUPS[name] = setup


def _prepare(method, model, cfg, plan, fisher) -> MethodSetup:
    if method not in SETUPS:
        raise ValueError(f"unknown method {method!r} (registered: {tuple(SETUPS)})")
    return SETUPS[method](model, cfg, plan=plan, fisher=fisher, method=method)
