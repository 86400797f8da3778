"""TGD in MONAI's ``SupervisedTrainer`` (or any PyTorch-Ignite ``Engine``): ``TGDHandler`` and
``PlainStateView``.

Contract:

- ``TGDHandler(threshold | plan, mode, network=None).attach(engine)`` (MONAI calls ``attach``
  for every entry of ``train_handlers``) attaches TGD to the network at ``Events.STARTED`` and
  detaches it at ``Events.COMPLETED``; the network is ``network`` or the engine's ``network``
  attribute at the first start (MONAI engines have one). The plan is the one given, or
  ``tgd.plan(network, threshold)`` of the pre-trained network at the first start; a later run
  of the same engine, or a run that restored the handler's state, continues with the same plan
  after checking the frozen fingerprint (:class:`tgd.integrations.session.TGDSession`). An
  exception raised during the run detaches TGD and is raised again, as MONAI's handlers do.
- ``PlainStateView(network)`` (or ``handler.plain_module()``) stands in for the network in a
  ``CheckpointSaver``'s ``save_dict``: its ``state_dict()`` is always the plain network's
  (``tgd.effective_state_dict``), attached or not, so the saved file loads into the
  unmodified network with ``load_state_dict(strict=True)``. Its ``load_state_dict`` loads into
  the plain network and refuses while TGD is attached.
- The handler's own ``state_dict()`` is the session record (plan JSON, mode, frozen
  fingerprint, versions; plain data), for ``save_dict={"tgd": handler, ...}``; its
  ``load_state_dict`` makes the next start continue that run. To resume, the checkpoint must be
  loaded before TGD attaches: register MONAI's ``CheckpointLoader`` (``load_dict={"net":
  PlainStateView(net), "tgd": handler, ...}``) before the ``TGDHandler``, since both act at
  ``Events.STARTED`` in registration order.

Limits: an ``EXCEPTION_RAISED`` handler that re-raises (this one, MONAI's) ends the exception
handling, so of several such handlers (``CheckpointSaver(save_final=True)`` is one) only the
first registered runs: if the saver comes first, TGD stays attached after an exception (call
``handler.detach()``). Only single-process training is tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

try:
    from ignite.engine import Engine, Events
except ImportError as err:  # the framework is an optional extra
    raise ImportError(
        "tgd.integrations.ignite needs PyTorch-Ignite (MONAI's engines run on it): "
        "pip install 'tgd[monai]'"
    ) from err

import torch
from torch import nn

from tgd.integrations.session import TGDSession
from tgd.targeting import TGDPlan, effective_state_dict, is_attached


class PlainStateView:
    """Checkpoint stand-in for a network under TGD: ``state_dict()`` is the plain network's."""

    def __init__(self, network: nn.Module) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"expected an nn.Module, got {type(network).__name__}")
        self.network = network

    def state_dict(self) -> dict[str, torch.Tensor]:
        return effective_state_dict(self.network)

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
        if is_attached(self.network):
            raise RuntimeError(
                "cannot load a plain state dict while TGD is attached: load the checkpoint "
                "before TGD starts (register CheckpointLoader before TGDHandler)"
            )
        return self.network.load_state_dict(state_dict, strict=strict)


class TGDHandler:
    """Fine-tune with TGD during an Ignite / MONAI engine run (see the module docstring).

    ``threshold`` (default 0.3) or ``plan`` (a ``TGDPlan``, its JSON text or file); ``mode`` as
    in ``tgd.attach`` ("parameter" by default); ``network``: the module to fine-tune (default:
    ``engine.network``); ``plan_kwargs``: more arguments of ``tgd.plan``; ``verbose``: log one
    line of what TGD retrains at the start (on the engine's logger).
    """

    def __init__(
        self,
        threshold: float | dict | str | None = None,
        *,
        plan: TGDPlan | str | Path | None = None,
        mode: str = "parameter",
        network: nn.Module | None = None,
        plan_kwargs: dict | None = None,
        verbose: bool = True,
    ) -> None:
        self.session = TGDSession(threshold, plan=plan, mode=mode, plan_kwargs=plan_kwargs)
        self.network = network
        self.verbose = verbose

    @property
    def plan(self) -> TGDPlan | None:
        """The plan in use (None before the first start)."""
        return self.session.plan

    def plain_module(self) -> PlainStateView:
        """A ``PlainStateView`` of the handler's network (for a ``CheckpointSaver``)."""
        if self.network is None:
            raise ValueError("TGDHandler(network=...) is needed for plain_module(); or use "
                             "PlainStateView(network)")
        return PlainStateView(self.network)

    # ---- engine events ------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        """Register the handler's start, end and exception events on ``engine``."""
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.COMPLETED, self.completed)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.exception_raised)

    def started(self, engine: Engine) -> None:
        if self.network is None:
            # read at the start, not in attach: MONAI's Workflow attaches its handlers before
            # SupervisedTrainer sets engine.network
            network = getattr(engine, "network", None)
            if not isinstance(network, nn.Module):
                raise ValueError("the engine has no 'network' module: pass TGDHandler(network=)")
            self.network = network
        self.session.start(self.network)
        if self.verbose:
            engine.logger.info(self.session.summary())

    def completed(self, engine: Engine) -> None:
        self.session.stop()

    def exception_raised(self, engine: Engine, e: BaseException) -> None:
        self.session.stop()
        raise e

    def detach(self) -> None:
        """Detach TGD now (a no-op when not attached)."""
        self.session.stop()

    # ---- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict:
        return self.session.record() or {}

    def load_state_dict(self, state_dict: Mapping) -> None:
        if state_dict:
            self.session.restore(dict(state_dict))
