"""``tgd.plan``: from a model and the user's options to a :class:`~tgd.targeting.plan.TGDPlan`.

A fixed or per-layer threshold goes straight to the :class:`~tgd.targeting.planner.Planner`;
``threshold="auto"`` first chooses it with :mod:`tgd.targeting.auto_threshold`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from tgd.targeting.auto_threshold import select_threshold
from tgd.targeting.plan import TGDPlan, check_threshold
from tgd.targeting.planner import Planner


def plan(
    model: nn.Module,
    threshold: float | str | dict[str, float] = 0.3,
    *,
    freeze: Iterable[str] = (),
    train: Iterable[str] = (),
    alpha: float = 1.0,
    k: int = 5,
    example_input: torch.Tensor | tuple | None = None,
    score: str = "kse",
    images=None,
    per_layer: bool = False,
    tolerance: float | None = None,
    noise_level: float | str | None = None,
    budget: float | None = None,
    full_curve: bool = False,
) -> TGDPlan:
    """Plan TGD: a conv's output channel is retrained iff every consumer scores it < threshold.

    ``threshold``: a number in [0, 1]; ``{conv name: phi}`` (one per layer, others 0); or
    ``"auto"``: chosen from ``images`` (unlabelled images of the new domain: a tensor
    ``(N, C, *spatial)``, a dataset or a list of tensors) as the largest phi whose dropped
    kernels change the network's output on them by less than a tolerance; see
    :func:`tgd.targeting.auto_threshold.select_threshold` for ``per_layer``, ``tolerance``,
    ``noise_level``, ``budget`` and ``full_curve`` (evaluate every candidate, for a figure,
    instead of stopping at the choice). The selection (curve, choice, reason) is kept in
    ``plan.selection``.
    ``score``: ``"kse"`` (the paper, from the weights) or, from ``images``, ``"ablation"``
    (output change when a map is zeroed) or ``"taylor"`` (its first-order estimate from one
    backward pass); the targeting rules are the same whatever the score.
    ``freeze``: conv layers to keep entirely (layers whose maps no conv reads, such as the last
    "noise classifier" layer, are always frozen unless named in ``train``).
    ``train``: conv layers to retrain entirely.
    ``example_input``: what the model is run on once to trace its channel flow; by default a
    zero tensor shaped from the first conv (1 sample, the smallest of 4, 8, 16, 32, 64 pixels
    per spatial dim that the model accepts).
    Parameters outside conv and norm layers are frozen and listed in ``other_parameters``.
    """
    auto = isinstance(threshold, str)
    if auto and threshold != "auto":
        raise ValueError(
            f"threshold must be a number in [0, 1], a dict or 'auto', got {threshold!r}"
        )
    if not auto:
        if isinstance(threshold, dict):
            for phi in threshold.values():
                check_threshold(phi)
        else:
            check_threshold(threshold)
        extra = [n for n, v in (("per_layer", per_layer), ("tolerance", tolerance),
                                ("noise_level", noise_level), ("budget", budget),
                                ("full_curve", full_curve)) if v]
        if extra:
            raise ValueError(f"{extra} apply to threshold='auto' only")
    planner = Planner.build(model, freeze=freeze, train=train, alpha=alpha, k=k,
                            example_input=example_input, score=score, images=images)
    if not auto:
        return planner.make(threshold)
    selection = select_threshold(planner, images, per_layer=per_layer, tolerance=tolerance,
                                 noise_level=noise_level, budget=budget, full_curve=full_curve)
    result = planner.make(selection.chosen)
    result.selection = selection.to_dict()
    return result
