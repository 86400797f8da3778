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

from tgd.targeting.channels import _OPAQUE_PREFIX, ChannelFlow, Source


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def real_sources(channel) -> list[Source]:
    return sorted(s for s in channel if s[0] != _OPAQUE_PREFIX)


@dataclass
class Decision:
    """Per conv: the group KSE (max over reads, NaN if unread), leaving flags and mask."""

    kse: dict[str, torch.Tensor]
    leaving: dict[str, torch.Tensor]
    user_frozen: dict[str, torch.Tensor]
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
    uf = _UnionFind()
    for coupled in flow.couplings:
        members = real_sources(coupled)
        for s in members[1:]:
            uf.union(members[0], s)
    reads = {c: [real_sources(ch) for ch in prov] for c, prov in flow.consumers.items()}
    group_kse: dict = {}
    group_consumers: dict = {}
    for consumer, channels in reads.items():
        scores = kse[consumer]
        for i, sources in enumerate(channels):
            for s in sources:
                g = uf.find(s)
                group_kse[g] = max(group_kse.get(g, -math.inf), float(scores[i]))
                group_consumers.setdefault(g, set()).add(consumer)
    leaving = {uf.find(s) for s in flow.leaving}
    frozen = {uf.find((name, n)) for name in freeze for n in range(out_channels[name])}

    group_threshold = _group_thresholds(uf, flow.convs, out_channels, threshold)
    out = Decision({}, {}, {}, {}, {}, reads)
    for name in flow.convs:
        groups = [uf.find((name, n)) for n in range(out_channels[name])]
        phi = torch.tensor([group_threshold[g] for g in groups], dtype=torch.float32)
        k = torch.tensor([group_kse.get(g, math.nan) for g in groups], dtype=torch.float32)
        leave = torch.tensor([g in leaving for g in groups], dtype=torch.bool)
        user = torch.tensor([g in frozen for g in groups], dtype=torch.bool)
        out.kse[name] = k
        out.leaving[name] = leave
        out.user_frozen[name] = user
        if name in train:
            out.mask[name] = torch.ones(len(groups), dtype=torch.bool)
        else:
            out.mask[name] = (k < phi) & ~leave & ~user  # NaN (unread) compares False
        out.consumers[name] = sorted(set().union(*(group_consumers.get(g, set()) for g in groups)))
    return out


def _group_thresholds(uf: _UnionFind, convs, out_channels, threshold) -> dict:
    """Threshold of every channel group: the smallest over the layers of its members."""
    per_layer = threshold if isinstance(threshold, dict) else {}
    default = 0.0 if isinstance(threshold, dict) else float(threshold)
    out: dict = {}
    for name in convs:
        phi = float(per_layer.get(name, default))
        for n in range(out_channels[name]):
            g = uf.find((name, n))
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
