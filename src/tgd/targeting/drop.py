"""Kernel dropping (paper Fig. 4): zero the kernels behind low-KSE feature maps, to choose phi.

For every ``targeted`` layer of the plan and every feature map ``n`` it marks (KSE < threshold),
the dropped copy zeroes:

- the producing kernels: the conv's weight row ``n`` and bias ``n``;
- each norm channel whose producers are all dropped (affine weight and bias, so the map is
  exactly zero after the norm, and ReLU keeps it zero);
- the consuming kernels: every consumer input channel whose producers are all dropped.

``fraction_zeroed`` is the number of parameter entries set to zero by these rules (each entry
counted once, whether or not it was already zero) divided by all the model's parameters. Both
producing and consuming kernels are counted, which is what makes the paper's 51.4% at
threshold 0.3 consistent with about 30% of the feature maps dropped (1 - 0.7^2 = 0.51).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from tgd.targeting.geometry import input_channel_entries, output_channel_entries
from tgd.targeting.plan import TGDPlan
from tgd.targeting.planner import Planner


def drop_kernels(model: nn.Module, tgd_plan: TGDPlan) -> tuple[nn.Module, float]:
    """Copy of ``model`` with the kernels behind low-KSE maps zeroed, and the fraction zeroed."""
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError("drop_kernels needs a plain model: detach() TGD first")
    tgd_plan.check(model)
    dropped_model = copy.deepcopy(model)
    modules = dict(dropped_model.named_modules())
    zero: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}

    def mark(p: nn.Parameter | None, m: torch.Tensor) -> None:
        if p is None:
            return
        m = m.to(p.device).expand_as(p)
        prev = zero.get(id(p))
        zero[id(p)] = (p, m if prev is None else prev[1] | m)

    def is_dropped(source) -> bool:
        lp = tgd_plan.layers.get(source[0])
        return lp is not None and lp.role == "targeted" and bool(lp.mask[source[1]])

    def all_dropped(sources) -> bool:
        return bool(sources) and all(is_dropped(s) for s in sources)

    for name, lp in tgd_plan.layers.items():
        if lp.role != "targeted":
            continue
        conv = modules[name]
        mark(conv.weight, output_channel_entries(conv, lp.mask))
        mark(conv.bias, lp.mask)
    for name, npl in tgd_plan.norms.items():
        chans = torch.tensor([all_dropped(src) for src in npl.sources], dtype=torch.bool)
        if chans.numel() and chans.any():
            mark(modules[name].weight, chans)
            mark(modules[name].bias, chans)
    for consumer, reads in tgd_plan.reads.items():
        chans = torch.tensor([all_dropped(src) for src in reads], dtype=torch.bool)
        if chans.numel() and chans.any():
            conv = modules[consumer]
            mark(conv.weight, input_channel_entries(conv, chans))

    n_zeroed = 0
    with torch.no_grad():
        for p, m in zero.values():
            p.masked_fill_(m, 0)
            n_zeroed += int(m.sum())
    total = sum(p.numel() for p in model.parameters())
    return dropped_model, (n_zeroed / total if total else 0.0)


def drop_sweep(
    model: nn.Module,
    thresholds: Iterable[float] = (0.0, 0.3, 0.4, 0.5, 0.6),
    evaluate: Callable[[nn.Module], float | dict] | None = None,
    **plan_kwargs,
) -> list[dict]:
    """Per threshold: the fraction of parameters dropped and, if given, ``evaluate(dropped)``.

    ``plan_kwargs`` are :meth:`Planner.build`'s (``freeze``, ``train``, ``alpha``, ``k``,
    ``score``...): the model is traced and scored once, then planned at each threshold.
    """
    planner = Planner.build(model, **plan_kwargs)
    rows = []
    for phi in thresholds:
        p = planner.make(phi)
        dropped, fraction = drop_kernels(model, p)
        n_maps = sum(lp.n_targeted for lp in p.layers.values() if lp.role == "targeted")
        row = {"threshold": float(phi), "fraction_dropped": fraction, "maps_dropped": n_maps}
        if evaluate is not None:
            row["metric"] = evaluate(dropped)
        rows.append(row)
    return rows
