"""From a model to plans, in three steps: trace, score, decide.

- :func:`trace`: run the model once and record its channel flow (:mod:`tgd.targeting.channels`);
- :func:`score_reads`: score every conv's input channels (KSE from the weights, or a data-driven
  importance score from :mod:`tgd.targeting.importance`);
- decide: :func:`tgd.targeting.rules.decide_layers` and
  :func:`~tgd.targeting.rules.decide_norms` apply the targeting rules at a threshold and give
  each conv and norm its role and mask.

A :class:`Planner` holds the result of the first two steps, so threshold selection makes many
plans from one model without tracing or scoring it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from tgd.targeting.channels import ChannelFlow, trace_channels, trace_smallest
from tgd.targeting.fingerprint import weights_fingerprint
from tgd.targeting.geometry import CONV_TYPES
from tgd.targeting.importance import importance_scores
from tgd.targeting.kse import kse_scores_many
from tgd.targeting.plan import SCORES, TGDPlan, check_threshold, model_structure
from tgd.targeting.rules import decide_layers, decide_norms, norm_producer


def trace(
    model: nn.Module,
    example_input: torch.Tensor | tuple | None = None,
    freeze: set[str] = frozenset(),
    train: set[str] = frozenset(),
) -> ChannelFlow:
    """The model's channel flow; ``freeze`` and ``train`` must name conv layers it calls."""
    if not any(isinstance(m, CONV_TYPES) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no conv layer: there is nothing to target")
    if example_input is None:
        flow = trace_smallest(model)
    else:
        flow = trace_channels(model, example_input)
    if not flow.convs:
        raise ValueError(f"{type(model).__name__} called no conv layer on the example input")
    for label, names in (("freeze", freeze), ("train", train)):
        unknown = sorted(set(names) - set(flow.convs))
        if unknown:
            raise ValueError(f"{label}: {unknown} are not conv layers of the model {flow.convs}")
    both = sorted(set(freeze) & set(train))
    if both:
        raise ValueError(f"layers named in both freeze and train: {both}")
    return flow


def score_reads(
    model: nn.Module,
    flow: ChannelFlow,
    score: str = "kse",
    *,
    alpha: float = 1.0,
    k: int = 5,
    images=None,
) -> dict[str, torch.Tensor]:
    """``{conv: score of each of its input channels}`` (on the CPU), by ``score``."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    modules = dict(model.named_modules())
    if score == "kse":
        convs = [modules[c] for c in flow.convs]
        scores = dict(zip(flow.convs, kse_scores_many(convs, alpha, k), strict=True))
    else:
        scores = importance_scores(model, flow, images, score)
    for name in flow.convs:
        if scores[name].numel() != len(flow.consumers[name]):
            raise ValueError(
                f"conv '{name}' scores {scores[name].numel()} input channels but reads "
                f"{len(flow.consumers[name])}"
            )
    return {n: s.detach().cpu() for n, s in scores.items()}


@dataclass
class Planner:
    """Everything a plan needs except the threshold: traced channel flow and per-read scores.

    ``scores[conv]`` scores each input channel of ``conv``; :meth:`make` applies the targeting
    rules at a threshold (one number, or one per conv layer).
    """

    model: nn.Module
    flow: ChannelFlow
    scores: dict[str, torch.Tensor]
    out_channels: dict[str, int]
    freeze: set[str]
    train: set[str]
    alpha: float
    k: int
    score: str = "kse"

    @classmethod
    def build(
        cls,
        model: nn.Module,
        *,
        freeze: Iterable[str] = (),
        train: Iterable[str] = (),
        alpha: float = 1.0,
        k: int = 5,
        example_input: torch.Tensor | tuple | None = None,
        score: str = "kse",
        images=None,
    ) -> Planner:
        """Trace and score ``model`` (see :func:`trace` and :func:`score_reads`)."""
        freeze, train = set(freeze), set(train)
        flow = trace(model, example_input, freeze, train)
        modules = dict(model.named_modules())
        out_channels = {name: modules[name].out_channels for name in flow.convs}
        scores = score_reads(model, flow, score, alpha=alpha, k=k, images=images)
        return cls(model, flow, scores, out_channels, freeze, train, float(alpha), int(k), score)

    def with_scores(self, scores: dict[str, torch.Tensor], score: str) -> Planner:
        """The same model and rules with other per-read scores (e.g. random ones)."""
        return Planner(self.model, self.flow, scores, self.out_channels, self.freeze,
                       self.train, self.alpha, self.k, score)  # fmt: skip

    def make(self, threshold: float | dict[str, float], *, fingerprint: bool = True) -> TGDPlan:
        """The plan at ``threshold`` (a number, or ``{conv name: phi}``: others get 0)."""
        if isinstance(threshold, dict):
            unknown = sorted(set(threshold) - set(self.flow.convs))
            if unknown:
                raise ValueError(f"per-layer thresholds for unknown conv layers {unknown}")
            for phi in threshold.values():
                check_threshold(phi)
            layer_thresholds = {n: float(v) for n, v in threshold.items()}
            global_phi = max(layer_thresholds.values(), default=0.0)
        else:
            check_threshold(threshold)
            layer_thresholds, global_phi = None, float(threshold)
        layers, reads = decide_layers(
            self.flow, self.scores, self.out_channels, threshold, self.freeze, self.train
        )
        norms = decide_norms(self.flow, layers, self.out_channels)
        covered = set(layers) | set(norms)
        other = [
            p for p, _ in self.model.named_parameters() if p.rsplit(".", 1)[0] not in covered
        ]
        result = TGDPlan(
            global_phi,
            self.alpha,
            self.k,
            layers,
            norms,
            model_structure(self.model, [*layers, *norms]),
            reads,
            other,
            score=self.score,
            layer_thresholds=layer_thresholds,
        )
        if fingerprint:
            result.weights_sha256 = weights_fingerprint(self.model, result)
        return result


def conv_blocks(model: nn.Module, example_input=None) -> list[tuple[str, list[str]]]:
    """``[(conv name, [names of the norms that directly follow it])]`` in forward order."""
    flow = trace_smallest(model) if example_input is None else trace_channels(model, example_input)
    modules = dict(model.named_modules())
    out_channels = {name: modules[name].out_channels for name in flow.convs}
    norms: dict[str, list[str]] = {}
    for name, prov in flow.norms.items():
        producer = norm_producer(prov, out_channels)
        if producer is not None:
            norms.setdefault(producer, []).append(name)
    return [(name, norms.get(name, [])) for name in flow.convs]
