"""Automatic threshold selection (``tgd.plan(model, "auto", images=...)``): the paper's own
procedure for choosing phi, automated on unlabelled images of the new domain.

The paper dropped the low-KSE kernels at a few thresholds, looked at the images and kept the
largest phi without visible change. Here, for each candidate phi, the kernels TGD would retrain
are dropped (:func:`tgd.drop_kernels`: producing kernels, the norms in between and the
consuming kernels) and the RMS change of the network's output on the images is measured;
the chosen phi is the largest one whose change stays within a tolerance.

**Tolerance.** ``tolerance`` is a fraction of a yardstick measured on the images:

- with ``noise_level`` (a number, or ``"estimate"`` to estimate it from the images with
  :func:`tgd.targeting.noise_level.estimate_noise_level`; for a Noise2Noise pair pass
  :func:`~tgd.targeting.noise_level.noise_level_from_pair`): the yardstick is the RMS noise of
  the input, default fraction ``NOISE_FRACTION`` = 0.1 (a denoiser whose output moves by a
  tenth of its input's noise is visually unchanged);
- otherwise the RMS of the network's own output on the images, default fraction
  ``REL_TOLERANCE`` = 0.05 (e.g. a classifier's logits move by 5 % RMS).

**Candidates.** Only thresholds at which the plan changes matter: just above each distinct
decisive score of a retrainable map (the midpoint to the next one), so every candidate retrains
at least one more map and ties (e.g. maps that carry nothing, all at score 0) go together.
Up to ``COARSE`` of them, evenly spread over the maps, are measured in increasing order until
the first one over the tolerance; the step where it crossed is then bisected down to single
candidates. The choice is the largest candidate below the first crossing (a later candidate
that happens to pass again is not taken). Cost: one deep copy and one forward pass of the
images per measured candidate, about ``COARSE + log2(maps)`` at most.

**Per layer** (``per_layer=True``): each layer's own curve is measured with only that layer
dropped (up to ``LAYER_STEPS`` candidates plus bisection). A common change level ``r`` then
gives every layer its largest phi whose own change stays <= ``r`` (layers give up maps until
their marginal damage is equal), and ``r`` is bisected over the measured levels for the largest
whose *combined* plan meets the stopping rule.

**Budget.** ``budget`` (a fraction of the model's parameters) is the alternative stopping
rule: the largest selection that retrains at most that fraction. Given alone it replaces the
tolerance; given with ``tolerance`` both must hold.

If nothing passes, the chosen phi is 0 (nothing retrained) and the reason says so: every map
the score singles out matters on these images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from tgd.targeting.drop import drop_kernels
from tgd.targeting.importance import as_images, evaluating, forward, rms
from tgd.targeting.noise_level import estimate_noise_level
from tgd.targeting.plan import TGDPlan
from tgd.targeting.planner import Planner

NOISE_FRACTION = 0.1
REL_TOLERANCE = 0.05
COARSE = 16
LAYER_STEPS = 8


@dataclass
class Selection:
    """The outcome of a threshold selection; ``to_dict()`` is what the plan JSON records."""

    mode: str  # "global" or "per_layer"
    score: str
    rule: str  # "tolerance", "budget" or "tolerance+budget"
    tolerance: float | None  # allowed RMS output change (absolute, in output units)
    tolerance_basis: str
    budget: float | None
    chosen: float | dict[str, float]
    maps: int
    fraction: float
    change: float
    reference_rms: float
    noise_level: float | None
    images: int
    curve: list[dict] = field(default_factory=list)
    layer_curves: dict[str, list[dict]] | None = None
    reason: str = ""

    @property
    def threshold(self) -> float:
        """The global phi, or the largest of the per-layer ones."""
        if isinstance(self.chosen, dict):
            return max(self.chosen.values(), default=0.0)
        return float(self.chosen)

    def to_dict(self) -> dict:
        return {
            "method": "auto",
            "mode": self.mode,
            "score": self.score,
            "rule": self.rule,
            "tolerance": self.tolerance,
            "tolerance_basis": self.tolerance_basis,
            "budget": self.budget,
            "chosen": self.chosen,
            "maps": self.maps,
            "fraction_retrained": self.fraction,
            "change": self.change,
            "relative_change": self.change / self.reference_rms if self.reference_rms else None,
            "reference_rms": self.reference_rms,
            "noise_level": self.noise_level,
            "images": self.images,
            "curve": self.curve,
            "layer_curves": self.layer_curves,
            "reason": self.reason,
        }


def _maps(p: TGDPlan) -> int:
    return sum(lp.n_targeted for lp in p.layers.values() if lp.role == "targeted")


def _candidates(scores: torch.Tensor) -> list[float]:
    """Thresholds just above each distinct score (< 1): each retrains one more tie group."""
    u = torch.unique(scores[scores < 1.0].double()).tolist()
    nxt = u[1:] + [1.0]
    return [(a + b) / 2 for a, b in zip(u, nxt, strict=True)]


def retrainable_scores(planner: Planner, layer: str | None = None) -> torch.Tensor:
    """Decisive scores of the maps TGD could retrain (those retrained at phi = 1, and the ones
    at exactly 1), over the network or one layer."""
    p = planner.make(1.0, fingerprint=False)
    vals = []
    for name, lp in p.layers.items():
        if lp.role != "targeted" or (layer is not None and name != layer):
            continue
        ok = ~lp.kse.isnan() & ~lp.leaving
        vals.append(lp.kse[ok & (lp.mask | (lp.kse >= 1.0))])
    return torch.cat(vals) if vals else torch.zeros(0)


class _Meter:
    """RMS output change of dropped plans on a fixed batch; identical masks measured once."""

    def __init__(self, planner: Planner, x: torch.Tensor):
        self.planner, self.x = planner, x
        with evaluating(planner.model), torch.no_grad():
            self.ref = forward(planner.model, x)
        self.reference_rms = rms(self.ref)
        self.total = sum(p.numel() for p in planner.model.parameters())
        self._cache: dict[bytes, float] = {}
        self.evaluations = 0

    def point(self, threshold) -> dict:
        p = self.planner.make(threshold, fingerprint=False)
        key = b"".join(lp.mask.numpy().tobytes() for lp in p.layers.values())
        if key not in self._cache:
            if not any(lp.mask.any() for lp in p.layers.values()):
                self._cache[key] = 0.0
            else:
                dropped, _ = drop_kernels(self.planner.model, p)
                with evaluating(dropped), torch.no_grad():
                    self._cache[key] = rms(dropped(self.x) - self.ref)
                self.evaluations += 1
        return {
            "threshold": threshold if isinstance(threshold, dict) else float(threshold),
            "maps": _maps(p),
            "fraction_retrained": p.trainable_fraction(self.planner.model),
            "change": self._cache[key],
        }


def _sweep(n: int, measure, ok, coarse: int, full: bool) -> tuple[int, dict[int, dict]]:
    """Largest index below the first failing one among candidates ``0..n-1`` (coarse pass in
    increasing order, then bisection of the crossing step); -1 if the first fails."""
    points: dict[int, dict] = {}

    def get(j):
        if j not in points:
            points[j] = measure(j)
        return points[j]

    if n == 0:
        return -1, points
    grid = sorted({round(v) for v in torch.linspace(0, n - 1, min(n, coarse)).tolist()})
    last, fail = -1, None
    for j in grid:
        if ok(get(j)):
            if fail is None:
                last = j
        elif fail is None:
            fail = j
            if not full:
                break
    if fail is None:
        return last, points  # the grid ends at n - 1: every candidate passed
    return _bisect(last, fail, lambda j: ok(get(j))), points


def _bisect(a: int, b: int, passes) -> int:
    """The last passing index in ``(a, b)`` given that ``a`` passes (or is -1) and ``b`` fails
    (or is past the end), for a monotone ``passes``."""
    while b - a > 1:
        mid = (a + b) // 2
        if passes(mid):
            a = mid
        else:
            b = mid
    return a


def select_threshold(
    planner: Planner,
    images,
    *,
    per_layer: bool = False,
    tolerance: float | None = None,
    noise_level: float | str | None = None,
    budget: float | None = None,
    max_images: int = 8,
    full_curve: bool = False,
) -> Selection:
    """Choose phi (or one phi per layer) from unlabelled ``images`` of the new domain.

    ``planner``: :meth:`tgd.targeting.planner.Planner.build` of the model (any score).
    ``images``: tensor ``(N, C, *spatial)``, dataset or list (the first ``max_images`` used).
    ``tolerance``: fraction of the noise level (with ``noise_level``) or of the output's RMS
    (without); ``budget``: at most this fraction of the parameters retrained.
    ``full_curve``: keep measuring the coarse grid past the first failure (for a figure).
    """
    x = as_images(images, planner.model, max_images)
    if tolerance is not None and (not math.isfinite(tolerance) or tolerance <= 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    if budget is not None and not (0.0 < budget <= 1.0):
        raise ValueError(f"budget must be a fraction of the parameters in (0, 1], got {budget!r}")
    meter = _Meter(planner, x)
    noise = None
    if noise_level is not None:
        if noise_level == "estimate":
            noise = estimate_noise_level(x)
            source = "estimated from the images"
        else:
            noise = float(noise_level)
            if not math.isfinite(noise) or noise <= 0:
                raise ValueError(f"noise_level must be positive, 'estimate' or None, got "
                                 f"{noise_level!r}")
            source = "given"
        if noise <= 0:
            raise ValueError("the images' noise level is 0: give noise_level or tolerance "
                             "relative to the output (noise_level=None)")
    use_tol = tolerance is not None or budget is None
    if use_tol:
        if noise is not None:
            frac = NOISE_FRACTION if tolerance is None else tolerance
            tol = frac * noise
            basis = f"{frac:g} x the input's RMS noise {noise:.4g} ({source})"
        else:
            frac = REL_TOLERANCE if tolerance is None else tolerance
            tol = frac * meter.reference_rms
            basis = f"{frac:g} x the output's RMS {meter.reference_rms:.4g} on the images"
    else:
        tol, basis = None, "none (budget only)"
    rule = "+".join(r for r, on in (("tolerance", use_tol), ("budget", budget is not None)) if on)

    def ok(pt):
        return (tol is None or pt["change"] <= tol) and (
            budget is None or pt["fraction_retrained"] <= budget)

    layer_curves = None
    if not per_layer:
        cands = _candidates(retrainable_scores(planner))
        chosen_j, points = _sweep(len(cands), lambda j: meter.point(cands[j]), ok, COARSE,
                                  full_curve)
        chosen = cands[chosen_j] if chosen_j >= 0 else 0.0
        curve = [points[j] for j in sorted(points)]
        nxt = points.get(chosen_j + 1)
    else:
        chosen, curve, layer_curves, nxt = _per_layer(planner, meter, ok, tol, full_curve)
    final = meter.point(chosen)
    curve.insert(0, meter.point({} if per_layer else 0.0))
    sel = Selection("per_layer" if per_layer else "global", planner.score, rule, tol, basis,
                    budget, chosen, final["maps"], final["fraction_retrained"], final["change"],
                    meter.reference_rms, noise, int(x.shape[0]), curve, layer_curves)
    sel.reason = _reason(sel, nxt)
    return sel


def _per_layer(planner, meter, ok, tol, full_curve):
    base = planner.make(1.0, fingerprint=False)
    layers = [n for n, lp in base.layers.items() if lp.role == "targeted"]
    solo_ok = (lambda pt: pt["change"] <= tol) if tol is not None else (lambda pt: True)
    layer_curves: dict[str, list[dict]] = {}
    steps: dict[str, list[tuple[float, float]]] = {}  # layer -> [(prefix max change, phi)]
    for name in layers:
        cands = _candidates(retrainable_scores(planner, name))
        if not cands:
            continue
        last, points = _sweep(len(cands), lambda j, c=cands, n=name: meter.point({n: c[j]}),
                              solo_ok, LAYER_STEPS, full_curve)
        layer_curves[name] = [{**points[j], "threshold": cands[j]} for j in sorted(points)]
        worst, prefix = 0.0, []
        for j in sorted(points):
            if j > last:
                break
            worst = max(worst, points[j]["change"])
            prefix.append((worst, cands[j]))
        steps[name] = prefix
    levels = sorted({lvl for prefix in steps.values() for lvl, _ in prefix})

    def thresholds_at(i):
        if i < 0:
            return {}
        out = {}
        for name, prefix in steps.items():
            phis = [phi for lvl, phi in prefix if lvl <= levels[i]]
            if phis:
                out[name] = phis[-1]
        return out

    points: dict[int, dict] = {}

    def get(i):
        if i not in points:
            points[i] = {**meter.point(thresholds_at(i)), "level": levels[i]}
        return points[i]

    a = _bisect(-1, len(levels), lambda i: ok(get(i)))
    curve = [points[i] for i in sorted(points)]
    return thresholds_at(a), curve, layer_curves, points.get(a + 1)


def _reason(sel: Selection, nxt: dict | None) -> str:
    limit = []
    if sel.tolerance is not None:
        limit.append(f"RMS output change <= {sel.tolerance:.4g} ({sel.tolerance_basis})")
    if sel.budget is not None:
        limit.append(f"at most {100 * sel.budget:.3g}% of the parameters retrained")
    limit = " and ".join(limit)
    what = "per-layer thresholds" if sel.mode == "per_layer" else f"phi = {sel.threshold:.3g}"
    if sel.maps == 0:
        first = sel.curve[1] if len(sel.curve) > 1 else nxt
        detail = ""
        if first is not None:
            detail = (f": dropping even the lowest-{sel.score} maps ({first['maps']} maps) "
                      f"changes the output by {first['change']:.4g}")
        return (f"nothing to retrain: no candidate meets {limit}{detail}. Every map the "
                f"{sel.score} score singles out matters on these {sel.images} images; TGD "
                "would retrain nothing (loosen the tolerance, give a budget, or try another "
                "score)")
    text = (f"{what}: the largest selection with {limit}; it retrains {sel.maps} maps "
            f"({100 * sel.fraction:.1f}% of the parameters) and dropping them changes the "
            f"output by {sel.change:.4g} on {sel.images} images")
    if nxt is not None:
        text += (f"; the next candidate ({nxt['maps']} maps) changes it by {nxt['change']:.4g}"
                 + (f", {100 * nxt['fraction_retrained']:.1f}% of the parameters"
                    if sel.budget is not None else ""))
    else:
        text += "; every candidate passed (the score leaves no map that matters)"
    return text
