"""TGD in a PyTorch Lightning ``Trainer``: ``TGDCallback``.

Contract:

- At ``on_fit_start`` (after Lightning has restored a checkpoint's weights, moved the module to
  its device and built the optimizers) the callback attaches TGD to the ``LightningModule``, or
  to its submodule ``module_attr`` (a dotted attribute path, e.g. ``"net"``), with the plan of
  :class:`tgd.integrations.session.TGDSession`: the ``plan`` given, or ``tgd.plan(target,
  threshold, **plan_kwargs)`` of the pre-trained target. The optimizer keeps working: TGD keeps
  the parameter objects.
- Every checkpoint Lightning writes during the fit holds the plain network: its
  ``"state_dict"`` has the effective weights under the plain keys (no ``parametrizations.*``),
  so it loads with ``load_state_dict(strict=True)`` into the plain module, and
  ``LightningModule.load_from_checkpoint`` works. The checkpoint's ``"tgd"`` entry holds the
  session record: the plan JSON, the mode, the fingerprint of the frozen values, versions and
  ``module_attr``.
- ``trainer.fit(..., ckpt_path=...)`` with a ``TGDCallback`` continues: the plan comes from the
  checkpoint's ``"tgd"`` entry, the resumed weights must have the recorded frozen fingerprint,
  and TGD is attached in the recorded mode before Lightning restores the optimizer state.
  Resuming from a checkpoint without that entry is refused (planning again on adapted weights
  would silently change which entries are frozen).
- At ``on_fit_end`` (and on an exception) TGD is detached: the module is plain, with the
  adapted weights.

Limits: ``ModelCheckpoint(save_weights_only=True)`` does not call callback hooks, so its files
keep TGD's parametrization keys and have no plan (the callback warns; convert such a state
dict with :func:`tgd.targeting.plain_state_dict`). Strategies that restore checkpoints after
setup (``restore_checkpoint_after_setup``: FSDP, DeepSpeed, model parallel) are refused. Only
single-device training is tested. One ``TGDCallback`` per trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from lightning.pytorch import Callback
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
except ImportError as err:  # the framework is an optional extra
    raise ImportError(
        "tgd.integrations.lightning needs PyTorch Lightning: pip install 'tgd[lightning]'"
    ) from err

from torch import nn

from tgd.integrations.session import TGDSession, resolve_module
from tgd.targeting import TGDPlan, plain_state_dict

CHECKPOINT_KEY = "tgd"


class TGDCallback(Callback):
    """Fine-tune with TGD under a Lightning ``Trainer`` (see the module docstring).

    ``threshold`` (default 0.3; a float, a ``{conv: phi}`` dict or ``"auto"`` with
    ``plan_kwargs={"images": ...}``) or ``plan`` (a ``TGDPlan``, its JSON text or file);
    ``mode`` as in ``tgd.attach`` ("parameter" by default: earlier layers get the plain
    fine-tuning gradient); ``module_attr``: the submodule to fine-tune, if not the whole
    ``LightningModule``; ``plan_kwargs``: more arguments of ``tgd.plan``; ``verbose``: log one
    line of what TGD retrains at the start.
    """

    def __init__(
        self,
        threshold: float | dict | str | None = None,
        *,
        plan: TGDPlan | str | Path | None = None,
        mode: str = "parameter",
        module_attr: str | None = None,
        plan_kwargs: dict | None = None,
        verbose: bool = True,
    ) -> None:
        self.session = TGDSession(threshold, plan=plan, mode=mode, plan_kwargs=plan_kwargs)
        self.module_attr = module_attr
        self.verbose = verbose

    # ---- what users read ----------------------------------------------------------------
    @property
    def plan(self) -> TGDPlan | None:
        """The plan in use (None before the first fit starts)."""
        return self.session.plan

    @property
    def state_key(self) -> str:
        return self._generate_state_key(module_attr=self.module_attr)

    def target(self, pl_module: nn.Module) -> nn.Module:
        """The module TGD is attached to."""
        return resolve_module(pl_module, self.module_attr)

    # ---- fit ----------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        others = [c for c in trainer.callbacks if isinstance(c, TGDCallback) and c is not self]
        if others:
            raise ValueError("one TGDCallback per Trainer: TGD fine-tunes one module")
        if trainer.strategy.restore_checkpoint_after_setup:
            # its checkpoint would be loaded into the attached module (parametrization keys)
            raise RuntimeError(
                f"TGDCallback does not support {type(trainer.strategy).__name__}: it restores "
                "checkpoints after setup, when TGD is attached (use a single-device or DDP "
                "strategy)"
            )
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_weights_only:
                rank_zero_warn(
                    "ModelCheckpoint(save_weights_only=True) skips callback hooks: its "
                    "checkpoints keep TGD's parametrization keys and no plan; convert their "
                    "state_dict with tgd.targeting.plain_state_dict"
                )

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path and not self.session.continuing:
            raise ValueError(
                f"the checkpoint {trainer.ckpt_path} has no '{CHECKPOINT_KEY}' entry (not "
                "written by a TGDCallback during fit); resuming would plan again on the "
                "adapted weights"
            )
        self.session.start(self.target(pl_module))
        if self.verbose:
            rank_zero_info(self.session.summary())

    def on_fit_end(self, trainer, pl_module) -> None:
        self.session.stop()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.session.stop()

    # ---- checkpoints --------------------------------------------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        prefix = f"{self.module_attr}." if self.module_attr else ""
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = plain_state_dict(checkpoint["state_dict"], prefix=prefix)
        record = self.session.record()
        if record is not None:
            checkpoint[CHECKPOINT_KEY] = {**record, "module_attr": self.module_attr}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Lightning has already loaded checkpoint["state_dict"] (plain keys) into the module,
        # which is plain at this point; TGD is attached later, at on_fit_start.
        record = checkpoint.get(CHECKPOINT_KEY)
        if record is None:
            return
        if not isinstance(record, dict):
            raise ValueError(f"the checkpoint's '{CHECKPOINT_KEY}' entry is not a TGD record")
        if record.get("module_attr") != self.module_attr:
            raise ValueError(
                f"the checkpoint's TGD record is for module_attr={record.get('module_attr')!r},"
                f" this callback fine-tunes module_attr={self.module_attr!r}"
            )
        self.session.restore({k: v for k, v in record.items() if k != "module_attr"})
