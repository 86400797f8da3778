"""The targeting plan: which output channels of which conv layer TGD retrains, and why.

``TGDPlan`` is plain data: the masks with the scores and settings that produced them, its JSON
form (``tgd-plan/1``) and the check that it fits a model. It is made by
:mod:`tgd.targeting.planner` (``tgd.plan``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tgd.targeting.geometry import CONV_TYPES, NORM_TYPES, norm_channels

PLAN_FORMAT = "tgd-plan/1"
ROLES = ("targeted", "frozen", "full")
SCORES = ("kse", "ablation", "taylor")


@dataclass
class LayerPlan:
    """One conv layer of the plan.

    ``mask[n]`` is True when output channel ``n`` (its kernel and bias) is retrained. ``kse[n]``
    is the score that decided it: the largest KSE any consumer gives that feature map (or its
    coupled group), NaN if no conv reads it. ``leaving[n]``: the map reaches the model output or
    a non-conv operation. ``role``: ``targeted`` (mask from KSE), ``frozen`` (nothing
    retrained) or ``full`` (everything retrained, by request). ``norms``: the norm layers that
    normalise exactly this conv's output.
    """

    name: str
    role: str
    mask: torch.Tensor
    consumers: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    kse: torch.Tensor | None = None
    leaving: torch.Tensor | None = None
    reason: str = ""

    @property
    def consumer(self) -> str | None:
        """The single consuming conv of a sequential layer (None if none or several)."""
        return self.consumers[0] if len(self.consumers) == 1 else None

    @property
    def n_targeted(self) -> int:
        return int(self.mask.sum())

    @property
    def out_channels(self) -> int:
        return self.mask.numel()


@dataclass
class NormPlan:
    """A norm layer: ``mask[c]`` retrains channel ``c`` (affine weight/bias, running stats)."""

    name: str
    mask: torch.Tensor
    producer: str | None = None  # the conv it directly follows, if it normalises one conv
    sources: list[list[tuple[str, int]]] = field(default_factory=list)  # producers per channel


@dataclass
class TGDPlan:
    """Per-layer TGD masks for one model, with the scores and settings that produced them.

    The JSON form (``to_dict`` / ``from_dict``) is ``tgd-plan/1``; ``score``,
    ``layer_thresholds`` and ``selection`` are optional there (plans written before they
    existed load with score "kse", one global threshold and no selection record).
    """

    threshold: float
    alpha: float
    k: int
    layers: dict[str, LayerPlan]
    norms: dict[str, NormPlan]
    structure: dict[str, list[int]]
    reads: dict[str, list[list[tuple[str, int]]]] = field(default_factory=dict)
    other_parameters: list[str] = field(default_factory=list)
    weights_sha256: str = ""
    # what ranked the maps: "kse" (the paper) or a data-driven "ablation" / "taylor" score
    score: str = "kse"
    # one phi per conv layer (per-layer selection; ``threshold`` is then their maximum)
    layer_thresholds: dict[str, float] | None = None
    # threshold="auto": the sweep (curve), the chosen phi and why (plain JSON-able data)
    selection: dict | None = None

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """``{conv name: BoolTensor[out_channels]}``, True = retrained."""
        return {name: lp.mask for name, lp in self.layers.items()}

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` if this plan was not made for a model of ``model``'s structure."""
        structure = model_structure(model, self.structure)
        if structure != self.structure:
            missing = sorted(set(self.structure) - set(structure))
            changed = sorted(n for n in structure if structure[n] != self.structure[n])
            problems = [
                f"layers missing from the model: {missing}" if missing else "",
                f"layers whose shape differs: {changed}" if changed else "",
            ]
            raise ValueError(
                "the plan does not match this model: " + "; ".join(filter(None, problems))
            )
        modules = dict(model.named_modules())
        for name, lp in self.layers.items():
            if not isinstance(modules[name], CONV_TYPES):
                raise ValueError(f"the plan does not match this model: '{name}' is not a conv")
            if lp.mask.dtype != torch.bool or lp.mask.numel() != modules[name].out_channels:
                raise ValueError(
                    f"plan layer '{name}': mask must be a bool tensor, one per channel"
                )
        for name, n in self.norms.items():
            norm = modules[name]
            if not isinstance(norm, NORM_TYPES) or n.mask.numel() != norm_channels(norm):
                raise ValueError(f"the plan does not match this model: norm '{name}' differs")

    # ---- parameter accounting -------------------------------------------------------------
    def parameter_counts(self, model: nn.Module) -> dict[str, tuple[int, int]]:
        """``{layer name: (trainable, total)}`` parameters of each conv layer and its norms."""
        modules = dict(model.named_modules())
        counts: dict[str, tuple[int, int]] = {}
        for name, lp in self.layers.items():
            per_channel = _per_channel_params(modules[name])
            counts[name] = (per_channel * lp.n_targeted, per_channel * lp.out_channels)
        for name, np_ in self.norms.items():
            per_channel = _per_channel_params(modules[name])
            counts[name] = (per_channel * int(np_.mask.sum()), per_channel * np_.mask.numel())
        return counts

    def trainable_fraction(self, model: nn.Module) -> float:
        """Fraction of all the model's parameters that TGD retrains."""
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(t for t, _ in self.parameter_counts(model).values())
        return trainable / total if total else 0.0

    def summary(self, model: nn.Module | None = None) -> str:
        """A readable per-layer table (pass the model to include parameter percentages)."""
        counts = self.parameter_counts(model) if model is not None else {}
        width = max([len(n) for n in self.layers] + [5]) + 2
        head = f"TGD plan: threshold={self.threshold:g} alpha={self.alpha:g} k={self.k}"
        if self.layer_thresholds is not None:
            head = f"TGD plan: per-layer thresholds (max {self.threshold:g}) alpha={self.alpha:g}"
        if self.score != "kse":
            head += f" score={self.score}"
        rows = [
            head,
            f"{'layer':<{width}}{'role':<10}{'retrained':>11}{'% params':>10}  "
            "consumers / why frozen",
        ]
        for name, lp in self.layers.items():
            pct = ""
            if name in counts and counts[name][1]:
                own = [counts[name]] + [counts[n] for n in lp.norms]
                pct = f"{100 * sum(t for t, _ in own) / sum(a for _, a in own):.1f}"
            why = ", ".join(lp.consumers) if lp.consumers else "-"
            if self.layer_thresholds is not None and name in self.layer_thresholds:
                why = f"phi={self.layer_thresholds[name]:.3g}; {why}"
            if lp.reason:
                why = f"{why} ({lp.reason})"
            n_leave = int(lp.leaving.sum()) if lp.leaving is not None else 0
            if n_leave and lp.role == "targeted":
                why += f"; {n_leave} maps leave the network"
            rows.append(
                f"{name:<{width}}{lp.role:<10}{f'{lp.n_targeted}/{lp.out_channels}':>11}"
                f"{pct:>10}  {why}"
            )
        if model is not None:
            total = sum(p.numel() for p in model.parameters())
            rows.append(
                f"trainable: {100 * self.trainable_fraction(model):.1f}% of {total} parameters"
            )
        if self.selection is not None and self.selection.get("reason"):
            rows.append(f"threshold selection: {self.selection['reason']}")
        if self.other_parameters:
            names = ", ".join(self.other_parameters[:3])
            more = len(self.other_parameters) - 3
            rows.append(
                f"frozen, outside conv/norm layers: {names}"
                + (f" and {more} more" if more > 0 else "")
            )
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.summary()

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        def floats(t):
            return None if t is None else [None if math.isnan(v) else v for v in t.tolist()]

        extra = {"score": self.score}
        if self.layer_thresholds is not None:
            extra["layer_thresholds"] = dict(self.layer_thresholds)
        if self.selection is not None:
            extra["selection"] = self.selection
        return {
            "format": PLAN_FORMAT,
            "threshold": self.threshold,
            **extra,
            "alpha": self.alpha,
            "k": self.k,
            "structure": self.structure,
            "other_parameters": self.other_parameters,
            "weights_sha256": self.weights_sha256,
            "layers": {
                name: {
                    "role": lp.role,
                    "mask": [bool(b) for b in lp.mask.tolist()],
                    "consumers": lp.consumers,
                    "norms": lp.norms,
                    "kse": floats(lp.kse),
                    "leaving": None if lp.leaving is None else lp.leaving.tolist(),
                    "reason": lp.reason,
                }
                for name, lp in self.layers.items()
            },
            "norms": {
                name: {
                    "mask": [bool(b) for b in n.mask.tolist()],
                    "producer": n.producer,
                    "sources": [[list(s) for s in ch] for ch in n.sources],
                }
                for name, n in self.norms.items()
            },
            "reads": {
                c: [[list(s) for s in ch] for ch in chans] for c, chans in self.reads.items()
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

        def floats(v):
            return (
                None
                if v is None
                else torch.tensor([math.nan if x is None else x for x in v], dtype=torch.float32)
            )

        try:
            layers = {}
            for name, d in data["layers"].items():
                if d["role"] not in ROLES:
                    raise ValueError(f"layer '{name}': unknown role {d['role']!r}")
                leaving = d.get("leaving")
                layers[name] = LayerPlan(
                    name=name,
                    role=d["role"],
                    mask=torch.tensor(d["mask"], dtype=torch.bool),
                    consumers=list(d.get("consumers", [])),
                    norms=list(d.get("norms", [])),
                    kse=floats(d.get("kse")),
                    leaving=None if leaving is None else torch.tensor(leaving, dtype=torch.bool),
                    reason=d.get("reason", ""),
                )
            norms = {
                name: NormPlan(
                    name,
                    torch.tensor(d["mask"], dtype=torch.bool),
                    d.get("producer"),
                    [[(str(s[0]), int(s[1])) for s in ch] for ch in d.get("sources", [])],
                )
                for name, d in data.get("norms", {}).items()
            }
            plan_ = cls(
                threshold=float(data["threshold"]),
                alpha=float(data["alpha"]),
                k=int(data["k"]),
                layers=layers,
                norms=norms,
                structure={k: list(v) for k, v in data["structure"].items()},
                reads={
                    c: [[(str(s[0]), int(s[1])) for s in ch] for ch in chans]
                    for c, chans in data.get("reads", {}).items()
                },
                other_parameters=list(data.get("other_parameters", [])),
                weights_sha256=str(data.get("weights_sha256", "")),
                score=str(data.get("score", "kse")),
                layer_thresholds=(
                    None
                    if data.get("layer_thresholds") is None
                    else {str(n): float(v) for n, v in data["layer_thresholds"].items()}
                ),
                selection=data.get("selection"),
            )
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(f"malformed TGD plan: missing or invalid field {err}") from err
        check_threshold(plan_.threshold)
        if plan_.score not in SCORES:
            raise ValueError(f"malformed TGD plan: unknown score {plan_.score!r}")
        for phi in (plan_.layer_thresholds or {}).values():
            check_threshold(phi)
        for name, lp in plan_.layers.items():
            if lp.kse is not None and lp.kse.numel() != lp.mask.numel():
                raise ValueError(f"malformed TGD plan: layer '{name}' has mismatched kse and mask")
        return plan_

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
        per = module.weight.numel() // module.out_channels
        return per + (1 if module.bias is not None else 0)
    return sum(1 for p in (module.weight, module.bias) if p is not None)


def check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number in [0, 1], got {threshold!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1] (KSE is normalised), got {threshold}")


def model_structure(model: nn.Module, names: Iterable[str]) -> dict[str, list[int]]:
    """Weight shapes of the named conv layers and channel counts of the named norm layers."""
    modules = dict(model.named_modules())
    out: dict[str, list[int]] = {}
    for name in names:
        mod = modules.get(name)
        if mod is None:
            continue
        out[name] = list(mod.weight.shape) if isinstance(mod, CONV_TYPES) else [norm_channels(mod)]
    return out
