"""Probe-based threshold selection: choose phi from the adaptation it buys on held-out data.

The drop criterion (:mod:`tgd.targeting.auto_threshold`) says which kernels are *safe to
overwrite*; it never asks what retraining them gains. :func:`probe_threshold` asks. For each
candidate phi (default ``CANDIDATES`` = 0.1, 0.2, ..., 0.9, only those <= ``cap``, the drop
bound), a copy of the model is adapted for a short fixed budget by the caller's
``adapt(model, plan)`` and scored by ``losses(model)``: one loss per held-out item of the new
domain. With ``L0`` the un-adapted net's losses and ``L`` a candidate's, its improvement is the
paired mean ``mean(L0 - L)`` with its standard error over the items.

**Rule** (pre-registered in ``docs/threshold_selection.md``): if no candidate improves by more
than its standard error, nothing is retrained (phi = 0) and the reason says so. Otherwise the
chosen phi is the smallest candidate whose improvement is at least ``knee`` (0.9) x the best
candidate's: the least retraining that buys nearly all of what the probes found.

Candidates whose plans retrain the same maps are probed once; candidates that retrain nothing
are recorded with improvement 0 and not probed; a probe whose held-out losses are not finite,
or whose training stopped on a non-finite loss (``FloatingPointError``), is recorded as diverged
and never chosen. With ``old_images`` (unlabelled images of the
old domain) every probe also records how far it moved the network's output on them (RMS change
over the un-adapted output's RMS): what adapting costs the old knowledge, measured without old
labels. It is recorded, not part of the rule.

**Cost**: at most ``len(candidates)`` probes of the caller's iterations each, plus one
evaluation of the held-out items per probe and one before; ``Selection.cost`` reports the
iterations run and the bound, and the wall time.

The training itself is the caller's (``tgd.training.probe`` gives the one the command line
uses); this module knows only plans, copies and losses.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from tgd.targeting.importance import evaluating, rms
from tgd.targeting.plan import TGDPlan
from tgd.targeting.planner import Planner

CANDIDATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
KNEE = 0.9
MIN_ITEMS = 4  # held-out items: fewer give no usable standard error of the improvement

Adapt = Callable[[nn.Module, TGDPlan], nn.Module]
Losses = Callable[[nn.Module], torch.Tensor]


@dataclass
class ProbeSelection:
    """The outcome of :func:`probe_threshold`; ``to_dict()`` is what ``plan.selection`` holds."""

    chosen: float
    score: str
    maps: int
    fraction: float
    base_loss: float
    items: int
    knee: float
    cap: float | None
    cap_reason: str | None
    iterations: int
    curve: list[dict] = field(default_factory=list)
    cost: dict = field(default_factory=dict)
    reason: str = ""

    @property
    def threshold(self) -> float:
        return self.chosen

    def to_dict(self) -> dict:
        return {"method": "auto", "rule": "probe", "mode": "global", "score": self.score,
                "chosen": self.chosen, "maps": self.maps, "fraction_retrained": self.fraction,
                "base_loss": self.base_loss, "items": self.items, "knee": self.knee,
                "cap": self.cap, "cap_reason": self.cap_reason,
                "probe_iterations": self.iterations, "curve": self.curve, "cost": self.cost,
                "reason": self.reason}


def _maps(p: TGDPlan) -> int:
    return sum(lp.n_targeted for lp in p.layers.values() if lp.role == "targeted")


def _check_losses(values, what: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).flatten().cpu()
    if t.numel() < MIN_ITEMS:
        raise ValueError(f"the probe's held-out data have {t.numel()} items; its standard "
                         f"error needs at least {MIN_ITEMS} (give more validation data)")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what}: the held-out losses contain NaN or infinite values (check "
                         "the validation data)")
    return t


def _output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with evaluating(model), torch.no_grad():
        return model(x)


def probe_threshold(
    planner: Planner,
    adapt: Adapt,
    losses: Losses,
    *,
    iterations: int,
    candidates: Sequence[float] = CANDIDATES,
    cap: float | None = None,
    cap_reason: str | None = None,
    knee: float = KNEE,
    old_images: torch.Tensor | None = None,
) -> ProbeSelection:
    """Choose phi by probe adaptations (see the module docstring).

    ``planner``: :meth:`Planner.build` of the model to adapt (its scores make the plans).
    ``adapt(model, plan)``: trains the given copy with TGD at ``plan`` for ``iterations``
    steps (the caller's budget, recorded for the cost) and returns it.
    ``losses(model)``: the per-item losses on the held-out new-domain items (>= ``MIN_ITEMS``).
    ``cap``: the largest phi allowed (the drop bound), ``cap_reason`` its explanation.
    """
    cands = sorted({float(c) for c in candidates})
    if not cands or any(not (0.0 < c <= 1.0) for c in cands):
        raise ValueError(f"candidates must be thresholds in (0, 1], got {list(candidates)!r}")
    if not (0.0 < knee <= 1.0):
        raise ValueError(f"knee must be a fraction in (0, 1], got {knee!r}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"probe iterations must be a positive integer, got {iterations!r}")
    if cap is not None and not (math.isfinite(cap) and cap >= 0):
        raise ValueError(f"cap must be a threshold >= 0, got {cap!r}")
    model = planner.model
    t0 = time.perf_counter()
    base = _check_losses(losses(model), "the un-adapted net")
    old_ref = None if old_images is None else _output(model, old_images)
    allowed = [c for c in cands if cap is None or c <= cap]
    total = sum(p.numel() for p in model.parameters())
    probed: dict[bytes, dict] = {}
    curve: list[dict] = []
    for phi in cands:
        p = planner.make(phi, fingerprint=False)
        point = {"threshold": phi, "maps": _maps(p),
                 "fraction_retrained": p.trainable_fraction(model)}
        if phi not in allowed:
            curve.append({**point, "status": "above the cap"})
            continue
        if point["maps"] == 0:
            curve.append({**point, "status": "retrains nothing", "improvement": 0.0,
                          "standard_error": 0.0})
            continue
        key = b"".join(lp.mask.numpy().tobytes() for lp in p.layers.values())
        if key not in probed:
            try:
                adapted = adapt(copy.deepcopy(model), p)
            except FloatingPointError:  # the training loop stops a probe whose loss blew up
                adapted, got = None, torch.full_like(base, float("nan"))
            else:
                got = torch.as_tensor(losses(adapted), dtype=torch.float64).flatten().cpu()
            if got.shape != base.shape:
                raise ValueError(f"losses() gave {got.numel()} items for the probe at phi = "
                                 f"{phi:g} and {base.numel()} for the un-adapted net")
            if not torch.isfinite(got).all():
                # a probe that diverged: recorded as such, never chosen
                probed[key] = {"loss": float("nan"), "diverged": True}
                curve.append({**point, **probed[key], "status": "diverged"})
                continue
            d = base - got
            rec = {"loss": float(got.mean()), "improvement": float(d.mean()),
                   "standard_error": float(d.std(unbiased=True) / math.sqrt(d.numel()))}
            if old_ref is not None:
                moved = _output(adapted, old_images) - old_ref
                rec["old_domain_change"] = rms(moved) / max(rms(old_ref), 1e-12)
            probed[key] = rec
            del adapted
            status = "probed"
        else:
            status = ("diverged" if probed[key].get("diverged") else
                      "same maps as a smaller phi")
        curve.append({**point, **probed[key], "status": status})
    seconds = time.perf_counter() - t0
    runs = len(probed)
    cost = {"probes": runs, "iterations_per_probe": iterations,
            "iterations": runs * iterations, "bound_iterations": len(cands) * iterations,
            "evaluations": runs + 1, "seconds": seconds}
    tested = [pt for pt in curve if "improvement" in pt and pt["status"] != "retrains nothing"]
    real = [pt for pt in tested if pt["improvement"] > pt["standard_error"]]
    base_mean = float(base.mean())
    cap_text = "" if cap is None else f" (candidates capped at phi <= {cap:.3g}: {cap_reason})"
    if not real:
        why = ("no candidate is below the cap" if not allowed else
               "every candidate retrains nothing" if not tested else
               "no probe improved the held-out loss by more than its standard error")
        return ProbeSelection(0.0, planner.score, 0, 0.0, base_mean, int(base.numel()), knee,
                              cap, cap_reason, iterations, curve, cost,
                              f"nothing to retrain: {why}{cap_text}; the new data need no "
                              f"adaptation that {iterations} probe iterations can show")
    best = max(pt["improvement"] for pt in real)
    pick = min((pt for pt in real if pt["improvement"] >= knee * best),
               key=lambda pt: pt["threshold"])
    best_pt = max(real, key=lambda pt: pt["improvement"])
    reason = (f"phi = {pick['threshold']:g}: the smallest candidate reaching {100 * knee:g}% of "
              f"the best probe improvement (best: phi = {best_pt['threshold']:g}, "
              f"{best:.4g} = {100 * best / base_mean:.1f}% of the un-adapted held-out loss "
              f"{base_mean:.4g}); it improves it by {pick['improvement']:.4g} +- "
              f"{pick['standard_error']:.2g} (SE, {base.numel()} items) after {iterations} "
              f"iterations and retrains {pick['maps']} maps "
              f"({100 * pick['fraction_retrained']:.1f}% of the {total:,} parameters)"
              f"{cap_text}")
    return ProbeSelection(pick["threshold"], planner.score, pick["maps"],
                          pick["fraction_retrained"], base_mean, int(base.numel()), knee, cap,
                          cap_reason, iterations, curve, cost, reason)
