"""Does the score mean anything for this network? KSE (or another score) against random maps.

TGD's premise is that low-KSE feature maps matter little, so retraining them costs little of
what the network knew. That holds for some trained networks and not others (without weight
decay, KSE ranked our PET nets' maps no better than chance). The check: drop the ``n`` maps TGD
would retrain at ``threshold`` and measure the output change on the user's images; drop ``n``
maps chosen at random (same targeting rules: never a leaving map, coupled groups together),
``n_random`` times; compare.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tgd.targeting.drop import drop_kernels
from tgd.targeting.importance import as_images, evaluating, forward, rms
from tgd.targeting.plan import TGDPlan
from tgd.targeting.planner import Planner


def _maps(p: TGDPlan) -> int:
    return sum(lp.n_targeted for lp in p.layers.values() if lp.role == "targeted")


def plan_for_count(planner: Planner, n: int) -> TGDPlan:
    """The planner's plan at the largest threshold that retrains at most ``n`` maps."""
    base = planner.make(1.0, fingerprint=False)
    vals = torch.cat([lp.kse[lp.mask] for lp in base.layers.values() if lp.role == "targeted"]
                     or [torch.zeros(0)]).double()
    u = torch.unique(vals).tolist()
    best = planner.make(0.0, fingerprint=False)
    lo, hi = 0, len(u) - 1
    while lo <= hi:  # maps retrained grow with the threshold: bisect over the distinct scores
        mid = (lo + hi) // 2
        phi = (u[mid] + (u[mid + 1] if mid + 1 < len(u) else 1.0)) / 2
        p = planner.make(phi, fingerprint=False)
        if _maps(p) <= n:
            best, lo = p, mid + 1
        else:
            hi = mid - 1
    return best


def _change(model: nn.Module, p: TGDPlan, x: torch.Tensor, ref: torch.Tensor) -> float:
    if _maps(p) == 0:
        return 0.0
    dropped, _ = drop_kernels(model, p)
    with evaluating(dropped), torch.no_grad():
        return rms(dropped(x) - ref)


def _random_scores(planner: Planner, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {c: torch.rand(s.shape, generator=gen) * 0.999 for c, s in planner.scores.items()}


def kse_vs_random(
    model: nn.Module,
    images,
    threshold: float = 0.3,
    n_random: int = 10,
    *,
    seed: int = 0,
    score: str = "kse",
    example_input=None,
    max_images: int = 8,
) -> dict:
    """Compare the output change of dropping the lowest-scoring maps with random maps.

    Drops the maps that ``tgd.plan(model, threshold, score=score)`` retrains (``n`` of them,
    with :func:`tgd.drop_kernels`) and measures the RMS change of the model's output on
    ``images`` (unlabelled images of the new domain: tensor ``(N, C, *spatial)``, dataset or
    list; the first ``max_images`` are used), relative to the output's RMS. Then the same for
    ``n_random`` draws of ``n`` random maps (random scores under the same targeting rules;
    the count can fall short of ``n`` only when coupled groups make ``n`` unreachable).

    Returns plain numbers (JSON-able)::

        {"threshold", "score", "maps": n, "maps_eligible", "images",
         "score_change": relative RMS change when the lowest-scoring maps are dropped,
         "random_changes": [one per draw], "random_maps": [maps dropped per draw],
         "random_median", "random_min", "random_max",
         "rank": draws whose change <= score_change,
         "p_value": (1 + rank) / (1 + n_random),   # one-sided, small = score beats random
         "beats_random": score_change < random_min (all draws worse),
         "verdict": one sentence}

    ``beats_random`` is False when ``n == 0`` (nothing to compare: raise the threshold).
    Raises ``ValueError`` for missing or bad images, ``n_random < 1`` or a bad threshold.
    Deterministic for a given ``seed``. Cost: ``1 + n_random`` forward passes on the images
    plus one plan per bisection step.
    """
    if not isinstance(n_random, int) or n_random < 1:
        raise ValueError(f"n_random must be a positive integer, got {n_random!r}")
    x = as_images(images, model, max_images)
    planner = Planner.build(model, score=score, images=x, example_input=example_input)
    p = planner.make(threshold, fingerprint=False)
    n = _maps(p)
    with evaluating(model), torch.no_grad():
        ref = forward(model, x)
    scale = rms(ref) or 1.0
    eligible = _maps(planner.make(1.0, fingerprint=False))
    own = _change(model, p, x, ref) / scale
    gen = torch.Generator().manual_seed(seed)
    changes, counts = [], []
    for _ in range(n_random):
        rp = plan_for_count(planner.with_scores(_random_scores(planner, gen), "random"), n)
        counts.append(_maps(rp))
        changes.append(_change(model, rp, x, ref) / scale)
    rank = sum(c <= own for c in changes)
    srt = sorted(changes)
    beats = n > 0 and own < srt[0]
    if n == 0:
        verdict = (f"threshold {threshold:g} selects no map under {score}: nothing to compare "
                   "(raise the threshold)")
    elif beats:
        verdict = (f"{score} beats random selection: dropping its {n} lowest maps changes the "
                   f"output by {100 * own:.2f}%, every one of {n_random} random draws by more "
                   f"({100 * srt[0]:.2f}-{100 * srt[-1]:.2f}%)")
    else:
        verdict = (f"{score} does not beat random selection: its {n} lowest maps change the "
                   f"output by {100 * own:.2f}%, {rank} of {n_random} random draws by as "
                   f"little or less ({100 * srt[0]:.2f}-{100 * srt[-1]:.2f}%)")
    return {
        "threshold": float(threshold), "score": score, "maps": n, "maps_eligible": eligible,
        "images": int(x.shape[0]), "score_change": own, "random_changes": changes,
        "random_maps": counts, "random_median": float(srt[len(srt) // 2]) if len(srt) % 2
        else float((srt[len(srt) // 2 - 1] + srt[len(srt) // 2]) / 2),
        "random_min": srt[0], "random_max": srt[-1], "rank": rank,
        "p_value": (1 + rank) / (1 + n_random), "beats_random": bool(beats), "verdict": verdict,
    }


def compare_scores(
    model: nn.Module,
    images,
    threshold: float = 0.3,
    scores=("kse", "ablation", "taylor"),
    *,
    example_input=None,
    max_images: int = 8,
) -> dict:
    """Which score finds the maps that matter least? Each score drops as many maps as KSE
    retrains at ``threshold`` (its lowest-scoring ones); returns ``{"maps": n, "changes":
    {score: relative RMS output change}, "best": score with the smallest change}``. Ties go
    to the earlier score in ``scores`` (KSE first: it needs no data)."""
    x = as_images(images, model, max_images)
    with evaluating(model), torch.no_grad():
        ref = forward(model, x)
    scale = rms(ref) or 1.0
    n = None
    changes = {}
    for s in scores:
        planner = Planner.build(model, score=s, images=x, example_input=example_input)
        if n is None:
            n = _maps(planner.make(threshold, fingerprint=False))
        changes[s] = _change(model, plan_for_count(planner, n), x, ref) / scale
    best = min(changes, key=lambda s: (changes[s], list(changes).index(s)))
    if not math.isfinite(changes[best]):
        best = scores[0]
    return {"maps": n, "changes": changes, "best": best}
