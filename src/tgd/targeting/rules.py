"""Targeting rules: from the channel flow and the consumers' KSE scores to per-channel masks.

- A producer channel is judged by every consumer input channel that reads it: it is retrained
  only if it is meaningless (KSE < threshold) for *every* consumer that reads it.
- Channels summed together (residual additions, gating) form one coupled group, targeted
  together or not at all: the group is judged by all reads of any of its members.
- Channels that leave the network (reach the output, or an operation that is not a conv) and
  channels nobody reads are frozen; so are groups that contain a channel of a layer named in
  ``freeze``. Layers named in ``train`` are retrained entirely (this overrides coupling).
- A norm channel is retrained iff every producer channel it normalises is retrained.
- The threshold is one number, or one per conv layer (``{name: phi}``; layers not named get
  0, nothing retrained): a coupled group spanning several layers is judged by the smallest
  threshold of its members' layers, so it stays targeted together or not at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.cluster.hierarchy import DisjointSet

from tgd.targeting.channels import ChannelFlow, Source


def real_sources(channel) -> list[Source]:
    """The conv output channels among a channel's sources (opaque markers left out), sorted."""
    return sorted(s for s in channel if isinstance(s, tuple))


@dataclass
class Decision:
    """Per conv: the group KSE (max over reads, NaN if unread), leaving flags and mask."""

    kse: dict[str, torch.Tensor]
    leaving: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor]
    consumers: dict[str, list[str]]
    reads: dict[str, list[list[Source]]]


def decide(
    flow: ChannelFlow,
    kse: dict[str, torch.Tensor],
    out_channels: dict[str, int],
    threshold: float | dict[str, float],
    freeze: set[str],
    train: set[str],
) -> Decision:
    # every output channel of every conv, grouped with the channels it is coupled to
    groups = DisjointSet((name, n) for name in flow.convs for n in range(out_channels[name]))
    for coupled in flow.couplings:
        members = real_sources(coupled)
        for s in members[1:]:
            groups.merge(members[0], s)
    reads = {c: [real_sources(ch) for ch in prov] for c, prov in flow.consumers.items()}
    group_kse: dict = {}
    group_consumers: dict = {}
    for consumer, channels in reads.items():
        scores = kse[consumer]
        for i, sources in enumerate(channels):
            for s in sources:
                g = groups[s]
                group_kse[g] = max(group_kse.get(g, -math.inf), float(scores[i]))
                group_consumers.setdefault(g, set()).add(consumer)
    leaving = {groups[s] for s in flow.leaving}
    frozen = {groups[(name, n)] for name in freeze for n in range(out_channels[name])}

    group_threshold = _group_thresholds(groups, flow.convs, out_channels, threshold)
    out = Decision({}, {}, {}, {}, reads)
    for name in flow.convs:
        own = [groups[(name, n)] for n in range(out_channels[name])]
        phi = torch.tensor([group_threshold[g] for g in own], dtype=torch.float32)
        k = torch.tensor([group_kse.get(g, math.nan) for g in own], dtype=torch.float32)
        leave = torch.tensor([g in leaving for g in own], dtype=torch.bool)
        user = torch.tensor([g in frozen for g in own], dtype=torch.bool)
        out.kse[name] = k
        out.leaving[name] = leave
        if name in train:
            out.mask[name] = torch.ones(len(own), dtype=torch.bool)
        else:
            out.mask[name] = (k < phi) & ~leave & ~user  # NaN (unread) compares False
        out.consumers[name] = sorted(set().union(*(group_consumers.get(g, set()) for g in own)))
    return out


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


def norm_mask(prov, conv_masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """Retrain a norm channel iff it has producers and all of them are retrained."""
    mask = []
    for channel in prov:
        sources = real_sources(channel)
        mask.append(bool(sources) and all(bool(conv_masks[p][n]) for p, n in sources))
    return torch.tensor(mask, dtype=torch.bool)


def direct_producer(prov) -> str | None:
    """The conv whose output channels ``0..C-1`` are exactly this tensor's channels, if any."""
    names = set()
    for n, channel in enumerate(prov):
        sources = real_sources(channel)
        if len(sources) != 1 or sources[0][1] != n:
            return None
        names.add(sources[0][0])
    return names.pop() if len(names) == 1 else None
