"""Targeting rules: from the channel flow and the consumers' scores to per-channel masks.

- A producer channel is judged by every consumer input channel that reads it: it is retrained
  only if it is meaningless (score < threshold) for *every* consumer that reads it.
- Channels summed together (residual additions, gating) form one coupled group, targeted
  together or not at all: the group is judged by all reads of any of its members.
- Channels that leave the network (reach the output, or an operation that is not a conv) and
  channels nobody reads are frozen; so are groups that contain a channel of a layer named in
  ``freeze`` or of a conv that makes a gate. Layers named in ``train`` are retrained entirely
  (this overrides coupling).
- A norm channel is retrained iff every producer channel it normalises is retrained.
- The threshold is one number, or one per conv layer (``{name: phi}``; layers not named get
  0, nothing retrained): a coupled group spanning several layers is judged by the smallest
  threshold of its members' layers, so it stays targeted together or not at all.

Each conv gets a role: ``full`` (named in ``train``), ``frozen`` (named in ``freeze``, making a
gate, or with nothing retrainable because all its maps leave the network or nobody reads them)
or ``targeted``.
"""

from __future__ import annotations

import math

import torch
from scipy.cluster.hierarchy import DisjointSet

from tgd.targeting.channels import ChannelFlow, Opaque, Prov, Source
from tgd.targeting.plan import LayerPlan, NormPlan


def real_sources(channel) -> list[Source]:
    """The conv output channels among a channel's sources (opaque markers left out), sorted."""
    return sorted(s for s in channel if not isinstance(s, Opaque))


def decide_layers(
    flow: ChannelFlow,
    scores: dict[str, torch.Tensor],
    out_channels: dict[str, int],
    threshold: float | dict[str, float],
    freeze: set[str],
    train: set[str],
) -> tuple[dict[str, LayerPlan], dict[str, list[list[Source]]]]:
    """Every conv's plan at ``threshold``, and the sources each conv input channel reads.

    ``scores[conv]`` scores each input channel of ``conv``; a conv's ``LayerPlan.kse`` is the
    group score of each of its output channels (the largest over the group's reads, NaN if
    unread).
    """
    # a gate's convs stay as they are unless named in ``train``
    gates = {n: why for n, why in flow.gates.items() if n not in train | freeze}
    # every output channel of every conv, grouped with the channels it is coupled to
    groups = DisjointSet((name, n) for name in flow.convs for n in range(out_channels[name]))
    for coupled in flow.couplings:
        members = real_sources(coupled)
        for s in members[1:]:
            groups.merge(members[0], s)
    reads = {c: [real_sources(ch) for ch in prov] for c, prov in flow.consumers.items()}
    group_score: dict = {}
    group_consumers: dict = {}
    for consumer, channels in reads.items():
        for i, sources in enumerate(channels):
            for s in sources:
                g = groups[s]
                group_score[g] = max(group_score.get(g, -math.inf), float(scores[consumer][i]))
                group_consumers.setdefault(g, set()).add(consumer)
    leaving = {groups[s] for s in flow.leaving}
    held = freeze | set(gates)
    frozen = {groups[(name, n)] for name in held for n in range(out_channels[name])}
    group_threshold = _group_thresholds(groups, flow.convs, out_channels, threshold)

    layers: dict[str, LayerPlan] = {}
    for name in flow.convs:
        own = [groups[(name, n)] for n in range(out_channels[name])]
        phi = torch.tensor([group_threshold[g] for g in own], dtype=torch.float32)
        score = torch.tensor([group_score.get(g, math.nan) for g in own], dtype=torch.float32)
        leave = torch.tensor([g in leaving for g in own], dtype=torch.bool)
        user = torch.tensor([g in frozen for g in own], dtype=torch.bool)
        if name in train:
            mask = torch.ones(len(own), dtype=torch.bool)
        else:
            mask = (score < phi) & ~leave & ~user  # NaN (unread) compares False
        consumers = sorted(set().union(*(group_consumers.get(g, set()) for g in own)))
        if name in train:
            role, reason = "full", "requested"
        elif name in freeze:
            role, reason = "frozen", "requested"
        elif name in gates:
            role, reason = "frozen", gates[name]
        elif not mask.any() and bool((score.isnan() | leave).all()):
            role = "frozen"
            reason = "output layer" if leave.any() else "no consumer"
        else:
            role, reason = "targeted", ""
        if role == "frozen":
            mask = torch.zeros_like(mask)
        layers[name] = LayerPlan(name, role, mask, consumers, [], score, leave, reason)
    return layers, reads


def _group_thresholds(groups: DisjointSet, convs, out_channels, threshold) -> dict:
    """Threshold of every channel group: the smallest over the layers of its members."""
    per_layer = threshold if isinstance(threshold, dict) else {}
    default = 0.0 if isinstance(threshold, dict) else float(threshold)
    out: dict = {}
    for name in convs:
        phi = float(per_layer.get(name, default))
        for n in range(out_channels[name]):
            g = groups[(name, n)]
            out[g] = min(out.get(g, math.inf), phi)
    return out


def decide_norms(
    flow: ChannelFlow, layers: dict[str, LayerPlan], out_channels: dict[str, int]
) -> dict[str, NormPlan]:
    """Every norm's plan from its producers' masks; adds each norm that normalises one conv's
    whole output to that conv's ``LayerPlan.norms``."""
    norms: dict[str, NormPlan] = {}
    conv_masks = {n: lp.mask for n, lp in layers.items()}
    for name, prov in flow.norms.items():
        producer = norm_producer(prov, out_channels)
        if producer is not None:
            layers[producer].norms.append(name)
        norms[name] = NormPlan(
            name, _norm_mask(prov, conv_masks), producer, [real_sources(ch) for ch in prov]
        )
    return norms


def _norm_mask(prov: Prov, conv_masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """Retrain a norm channel iff it has producers and all of them are retrained."""
    mask = []
    for channel in prov:
        sources = real_sources(channel)
        mask.append(bool(sources) and all(bool(conv_masks[p][n]) for p, n in sources))
    return torch.tensor(mask, dtype=torch.bool)


def norm_producer(prov: Prov, out_channels: dict[str, int]) -> str | None:
    """The conv whose whole output a norm normalises, channel ``c`` being its channel ``c``
    (None if the norm's channels come from several convs, are reordered, or are a part)."""
    names = set()
    for n, channel in enumerate(prov):
        sources = real_sources(channel)
        if len(sources) != 1 or sources[0][1] != n:
            return None
        names.add(sources[0][0])
    if len(names) != 1:
        return None
    producer = names.pop()
    return producer if out_channels[producer] == len(prov) else None
