"""The targeting plan: which output channels of which conv layer TGD retrains, and why."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tgd.kse import kse_scores_many
from tgd.targeting.fingerprint import weights_fingerprint
from tgd.targeting.graph import CONV_TYPES, ConvLink, conv_links

PLAN_FORMAT = "tgd-plan/1"
ROLES = ("targeted", "frozen", "full")


@dataclass
class LayerPlan:
    """One conv layer of the plan.

    ``mask[n]`` is True when output channel ``n`` (its kernel, bias and the channel of every
    norm layer in ``norms``) is retrained. ``kse[n]`` is the consumer's KSE score of that
    feature map (None for layers without a consumer). ``role``: ``targeted`` (mask from KSE),
    ``frozen`` (nothing retrained) or ``full`` (everything retrained, by request).
    """

    name: str
    role: str
    mask: torch.Tensor
    consumer: str | None = None
    norms: list[str] = field(default_factory=list)
    kse: torch.Tensor | None = None
    reason: str = ""

    @property
    def n_targeted(self) -> int:
        return int(self.mask.sum())

    @property
    def out_channels(self) -> int:
        return self.mask.numel()


def _channel_dim_sizes(conv: nn.Module) -> tuple[int, int]:
    """(number of weight elements per output channel, out_channels) of a conv module."""
    return conv.weight.numel() // conv.out_channels, conv.out_channels


@dataclass
class TGDPlan:
    """Per-layer TGD masks for one model, with the KSE scores and settings that produced them."""

    threshold: float
    alpha: float
    k: int
    layers: dict[str, LayerPlan]
    structure: dict[str, list[int]]
    other_parameters: list[str] = field(default_factory=list)
    weights_sha256: str = ""

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """``{conv name: BoolTensor[out_channels]}``, True = retrained."""
        return {name: lp.mask for name, lp in self.layers.items()}

    # ---- parameter accounting -------------------------------------------------------------
    def parameter_counts(self, model: nn.Module) -> dict[str, tuple[int, int]]:
        """``{layer name: (trainable, total)}`` parameters of each conv layer and its norms."""
        modules = dict(model.named_modules())
        counts: dict[str, tuple[int, int]] = {}
        for name, lp in self.layers.items():
            per = [_per_channel_params(modules[name])]
            per += [_per_channel_params(modules[n]) for n in lp.norms]
            per_channel = sum(per)
            counts[name] = (per_channel * lp.n_targeted, per_channel * lp.out_channels)
        return counts

    def trainable_fraction(self, model: nn.Module) -> float:
        """Fraction of all the model's parameters that TGD retrains."""
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(t for t, _ in self.parameter_counts(model).values())
        return trainable / total if total else 0.0

    def summary(self, model: nn.Module | None = None) -> str:
        """A readable per-layer table (pass the model to include parameter counts)."""
        counts = self.parameter_counts(model) if model is not None else {}
        head = f"TGD plan: threshold={self.threshold:g} alpha={self.alpha:g} k={self.k}"
        rows = [head, f"{'layer':<28}{'role':<10}{'retrained':>12}{'% params':>10}  consumer"]
        for name, lp in self.layers.items():
            pct = ""
            if name in counts and counts[name][1]:
                pct = f"{100 * counts[name][0] / counts[name][1]:.1f}"
            cons = lp.consumer or f"- ({lp.reason})"
            rows.append(
                f"{name:<28}{lp.role:<10}{f'{lp.n_targeted}/{lp.out_channels}':>12}"
                f"{pct:>10}  {cons}"
            )
        if model is not None:
            rows.append(
                f"trainable: {100 * self.trainable_fraction(model):.1f}% of "
                f"{sum(p.numel() for p in model.parameters())} parameters"
            )
        if self.other_parameters:
            rows.append(f"frozen (not conv/norm): {', '.join(self.other_parameters)}")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.summary()

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": PLAN_FORMAT,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "k": self.k,
            "structure": self.structure,
            "other_parameters": self.other_parameters,
            "weights_sha256": self.weights_sha256,
            "layers": {
                name: {
                    "role": lp.role,
                    "mask": [bool(b) for b in lp.mask.tolist()],
                    "consumer": lp.consumer,
                    "norms": lp.norms,
                    "kse": None if lp.kse is None else lp.kse.tolist(),
                    "reason": lp.reason,
                }
                for name, lp in self.layers.items()
            },
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The plan as JSON text; also written to ``path`` if given (never over an existing one)."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            with open(path, "x", encoding="utf-8") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_dict(cls, data: dict) -> TGDPlan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a TGD plan (expected format '{PLAN_FORMAT}')")
        try:
            layers = {}
            for name, d in data["layers"].items():
                if d["role"] not in ROLES:
                    raise ValueError(f"layer '{name}': unknown role {d['role']!r}")
                kse = d.get("kse")
                layers[name] = LayerPlan(
                    name=name,
                    role=d["role"],
                    mask=torch.tensor(d["mask"], dtype=torch.bool),
                    consumer=d.get("consumer"),
                    norms=list(d.get("norms", [])),
                    kse=None if kse is None else torch.tensor(kse, dtype=torch.float32),
                    reason=d.get("reason", ""),
                )
            plan = cls(
                threshold=float(data["threshold"]),
                alpha=float(data["alpha"]),
                k=int(data["k"]),
                layers=layers,
                structure={k: list(v) for k, v in data["structure"].items()},
                other_parameters=list(data.get("other_parameters", [])),
                weights_sha256=str(data.get("weights_sha256", "")),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed TGD plan: missing or invalid field {err}") from err
        _check_threshold(plan.threshold)
        return plan

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> TGDPlan:
        """Load a plan from JSON text or from a ``.json`` file path."""
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"TGD plan is not valid JSON: {err}") from err
        return cls.from_dict(data)


def _per_channel_params(module: nn.Module) -> int:
    """Parameters of ``module`` that belong to one output channel."""
    if isinstance(module, CONV_TYPES):
        per, _ = _channel_dim_sizes(module)
        return per + (1 if module.bias is not None else 0)
    return sum(1 for p in (module.weight, module.bias) if p is not None)


def _check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number in [0, 1], got {threshold!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1] (KSE is normalised), got {threshold}")


def model_structure(model: nn.Module, links: dict[str, ConvLink]) -> dict[str, list[int]]:
    """Weight shapes of the planned conv and norm layers: what a plan must match to be attached."""
    modules = dict(model.named_modules())
    out: dict[str, list[int]] = {}
    for name, link in links.items():
        out[name] = list(modules[name].weight.shape)
        for n in link.norms:
            norm = modules[n]
            out[n] = [getattr(norm, "num_features", None) or norm.num_channels]
    return out


def plan(
    model: nn.Module,
    threshold: float = 0.3,
    *,
    freeze: Iterable[str] = (),
    train: Iterable[str] = (),
    alpha: float = 1.0,
    k: int = 5,
) -> TGDPlan:
    """Plan TGD: output channel ``n`` of a conv is retrained iff its consumer's KSE[n] < threshold.

    ``freeze``: conv layers to keep entirely (layers without a consuming conv, such as the
    last "noise classifier" layer, are always frozen unless named in ``train``).
    ``train``: conv layers to retrain entirely.
    Parameters outside conv and norm layers are frozen and listed in ``other_parameters``.
    """
    _check_threshold(threshold)
    links = conv_links(model)
    if not links:
        raise ValueError(f"{type(model).__name__} has no conv layer: there is nothing to target")
    freeze, train = set(freeze), set(train)
    for label, names in (("freeze", freeze), ("train", train)):
        unknown = sorted(names - set(links))
        if unknown:
            raise ValueError(f"{label}: {unknown} are not conv layers of the model {sorted(links)}")
    both = sorted(freeze & train)
    if both:
        raise ValueError(f"layers named in both freeze and train: {both}")

    modules = dict(model.named_modules())
    consumers = [link.consumer for link in links.values() if link.consumer is not None]
    scores = dict(
        zip(consumers, kse_scores_many([modules[c] for c in consumers], alpha, k), strict=True)
    )
    layers: dict[str, LayerPlan] = {}
    for name, link in links.items():
        n_out = modules[name].out_channels
        kse = scores[link.consumer].cpu() if link.consumer is not None else None
        if kse is not None and kse.numel() != n_out:
            raise ValueError(
                f"conv '{name}' has {n_out} output channels but its consumer "
                f"'{link.consumer}' reads {kse.numel()}"
            )
        if name in train:
            role, mask, reason = "full", torch.ones(n_out, dtype=torch.bool), "requested"
        elif name in freeze:
            role, mask, reason = "frozen", torch.zeros(n_out, dtype=torch.bool), "requested"
        elif kse is None:
            role, mask, reason = "frozen", torch.zeros(n_out, dtype=torch.bool), "no consumer"
        else:
            role, mask, reason = "targeted", kse < threshold, ""
        layers[name] = LayerPlan(name, role, mask, link.consumer, list(link.norms), kse, reason)

    covered = set(links) | {n for link in links.values() for n in link.norms}
    other = [
        pname for pname, _ in model.named_parameters() if pname.rsplit(".", 1)[0] not in covered
    ]
    result = TGDPlan(
        float(threshold), float(alpha), int(k), layers, model_structure(model, links), other
    )
    result.weights_sha256 = weights_fingerprint(model, result)
    return result
