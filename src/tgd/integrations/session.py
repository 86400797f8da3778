"""One TGD fine-tuning run, without any framework: plan, attach, record, continue, detach.

The framework adapters (:mod:`tgd.integrations.lightning`, :mod:`tgd.integrations.ignite`) call
these at their start, checkpoint and end events.

Contract:

- ``start(model)`` attaches TGD. The plan is, in this order of precedence: the one restored
  from a checkpoint record (``restore``), the one of an earlier ``start`` of this session, the
  ``plan`` given, or ``tgd.plan(model, threshold, **plan_kwargs)`` computed on ``model`` as it is
  at the first start (the pre-trained network). A plan that retrains nothing is a
  ``ValueError`` (training would have no parameter to update).
- The first start records ``frozen_fingerprint(model, plan)``. Every later start (a second fit,
  or a resume) *continues*: it checks that the model's frozen values still have that
  fingerprint (``ValueError`` otherwise) and attaches the same plan in the same mode. The
  model's conv weights then differ from those the plan was computed on by construction, so
  ``attach``'s warning about that is not raised for a continuation.
- ``record()`` is plain JSON-able data (plan JSON text, mode, frozen fingerprint, versions)
  that a checkpoint carries; ``restore(record)`` validates it and makes the next start a
  continuation. A restored plan that differs from a ``plan`` given to the session, or another
  mode, is a ``ValueError``: the checkpoint was made by another run.
- ``stop()`` detaches; the model keeps its adapted weights.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from torch import nn

from tgd.targeting import (
    MODES,
    TGDHandle,
    TGDPlan,
    attach,
    frozen_fingerprint,
    is_attached,
    trainable_summary,
)
from tgd.targeting.adaptation import tgd_version
from tgd.targeting.make_plan import plan as make_plan

RECORD_FORMAT = "tgd-session/1"
DEFAULT_THRESHOLD = 0.3


def resolve_module(root: nn.Module, attr: str | None) -> nn.Module:
    """``root`` itself, or its submodule at the dotted attribute path ``attr`` (``"net"``)."""
    if not attr:
        return root
    try:
        module = functools.reduce(getattr, attr.split("."), root)
    except AttributeError as err:
        raise AttributeError(f"{type(root).__name__} has no module attribute '{attr}'") from err
    if not isinstance(module, nn.Module):
        raise TypeError(f"'{attr}' of {type(root).__name__} is a {type(module).__name__}, "
                        "not an nn.Module")
    return module


class TGDSession:
    """Plan, attach and detach TGD for one fine-tuning run; see the module docstring."""

    def __init__(
        self,
        threshold: float | dict | str | None = None,
        *,
        plan: TGDPlan | str | Path | None = None,
        mode: str = "parameter",
        plan_kwargs: dict | None = None,
    ) -> None:
        if threshold is not None and plan is not None:
            raise ValueError("give either threshold or plan, not both")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if plan is not None and not isinstance(plan, TGDPlan):
            plan = TGDPlan.from_json(plan)
        self.threshold = DEFAULT_THRESHOLD if threshold is None and plan is None else threshold
        self.given_plan: TGDPlan | None = plan
        self.mode = mode
        self.plan_kwargs = dict(plan_kwargs or {})
        self.plan: TGDPlan | None = None
        self.fingerprint: str | None = None
        self.handle: TGDHandle | None = None

    @property
    def attached(self) -> bool:
        return self.handle is not None and self.handle.attached

    @property
    def continuing(self) -> bool:
        """Whether the next ``start`` continues an earlier run (same plan, checked weights)."""
        return self.plan is not None and self.fingerprint is not None

    def start(self, model: nn.Module) -> TGDHandle:
        """Attach TGD to ``model`` (see the module docstring for which plan)."""
        if is_attached(model):
            raise RuntimeError("TGD is already attached to this model; detach it first")
        if self.continuing:
            self.plan.check(model)
            now = frozen_fingerprint(model, self.plan)
            if now != self.fingerprint:
                raise ValueError(
                    "the model's frozen values differ from those of the run being continued "
                    f"(frozen fingerprint {now[:12]}..., expected {self.fingerprint[:12]}...): "
                    "it is not that run's model, or its frozen values were changed"
                )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="the model's conv weights differ")
                self.handle = attach(model, self.plan, mode=self.mode)
            return self.handle
        plan = self.given_plan
        if plan is None:
            plan = make_plan(model, self.threshold, **self.plan_kwargs)
        if not any(lp.n_targeted for lp in plan.layers.values()):
            # attach would freeze every parameter, and the first backward would fail with
            # "element 0 of tensors does not require grad": say why here instead
            raise ValueError(
                f"the TGD plan retrains nothing (threshold {plan.threshold:g}): every conv "
                "channel scores above it; use a higher threshold, or 'auto'"
            )
        self.plan = plan
        self.fingerprint = frozen_fingerprint(model, self.plan)
        self.handle = attach(model, self.plan, mode=self.mode)
        return self.handle

    def stop(self) -> None:
        """Detach TGD (a no-op when not attached)."""
        if self.handle is not None:
            self.handle.detach()

    def summary(self) -> str:
        """One line: what TGD retrains (needs a started session)."""
        if self.plan is None or self.handle is None:
            return "TGD not started"
        return trainable_summary(self.handle.model, self.plan, self.mode)["text"]

    def record(self) -> dict | None:
        """The session as plain data for a checkpoint (None before the first start)."""
        if self.plan is None:
            return None
        return {
            "format": RECORD_FORMAT,
            "tgd_version": tgd_version(),
            "mode": self.mode,
            "frozen_fingerprint": self.fingerprint,
            "plan": self.plan.to_json(),
        }

    def restore(self, record: dict) -> None:
        """Continue the run ``record`` describes at the next ``start``."""
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise ValueError(f"not a TGD session record (expected format '{RECORD_FORMAT}')")
        missing = [k for k in ("mode", "frozen_fingerprint", "plan") if k not in record]
        if missing:
            raise ValueError(f"malformed TGD session record: missing {', '.join(missing)}")
        if self.attached:
            raise RuntimeError("cannot restore a TGD record while TGD is attached")
        plan = TGDPlan.from_json(str(record["plan"]))
        if self.given_plan is not None and plan.to_dict() != self.given_plan.to_dict():
            raise ValueError("the checkpoint's TGD plan differs from the plan given")
        if record["mode"] != self.mode:
            raise ValueError(
                f"the checkpoint was trained with mode {record['mode']!r}, this run uses "
                f"{self.mode!r}"
            )
        self.plan, self.fingerprint = plan, str(record["frozen_fingerprint"])
