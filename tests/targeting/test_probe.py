"""The probe rule of threshold="auto" (tgd.targeting.probe) on known losses: the knee, the
nothing-needed case, the cap, identical plans probed once, the cost and the bad inputs."""

import pytest
import torch

from tests.targeting.test_auto_threshold import Net
from tgd.targeting import Planner
from tgd.targeting.probe import CANDIDATES, MIN_ITEMS, probe_threshold

ITEMS = 8


def planner():
    return Planner.build(Net(dead=True))


def fake(gain_of_maps, noise=0.0):
    """``adapt`` records the plan's retrained maps on the copy; ``losses`` gives every item
    1 - gain(maps) (+ a fixed per-item spread ``noise``)."""
    calls = []
    spread = noise * torch.linspace(-1, 1, ITEMS, dtype=torch.float64)

    def adapt(model, plan):
        model.maps = sum(lp.n_targeted for lp in plan.layers.values() if lp.role == "targeted")
        calls.append(model.maps)
        return model

    def losses(model):
        if not hasattr(model, "maps"):  # the un-adapted net
            return torch.ones(ITEMS, dtype=torch.float64)
        return 1.0 - gain_of_maps(model.maps) + spread

    return adapt, losses, calls


def test_the_knee_is_the_smallest_phi_with_nearly_the_best_gain():
    p = planner()
    total = sum(lp.n_targeted for lp in p.make(0.95).layers.values())
    adapt, losses, calls = fake(lambda m: 0.5 * min(m / total, 1.0) ** 0.5, noise=1e-3)
    sel = probe_threshold(p, adapt, losses, iterations=7)
    probed = [pt for pt in sel.curve if "improvement" in pt and pt["maps"]]
    best = max(pt["improvement"] for pt in probed)
    assert sel.chosen > 0 and sel.maps > 0
    pick = next(pt for pt in sel.curve if pt["threshold"] == sel.chosen)
    assert pick["improvement"] >= 0.9 * best
    smaller = [pt for pt in probed if pt["threshold"] < sel.chosen]
    assert smaller and all(pt["improvement"] < 0.9 * best for pt in smaller)
    # every candidate recorded; identical plans probed once; the cost within its bound
    assert [pt["threshold"] for pt in sel.curve] == list(CANDIDATES)
    assert len(calls) == len(set(calls)) == sel.cost["probes"] <= len(CANDIDATES)
    assert sel.cost["iterations"] == 7 * len(calls) <= sel.cost["bound_iterations"] == 63
    d = sel.to_dict()
    assert d["rule"] == "probe" and d["chosen"] == sel.chosen and "smallest candidate" in \
        d["reason"]


def test_nothing_is_retrained_when_no_probe_beats_its_standard_error():
    adapt, losses, calls = fake(lambda m: -0.01 * m, noise=1e-3)  # every probe makes it worse
    sel = probe_threshold(planner(), adapt, losses, iterations=5)
    assert sel.chosen == 0.0 and sel.maps == 0 and sel.fraction == 0.0
    assert "nothing to retrain" in sel.reason and "standard error" in sel.reason
    assert calls  # it did probe


def test_a_gain_within_the_noise_is_not_taken():
    # mean gain 1e-4 but the per-item spread of the differences is 1e-2: not more than its SE
    adapt, losses, _ = fake(lambda m: 1e-4, noise=1e-2)
    sel = probe_threshold(planner(), adapt, losses, iterations=5)
    assert sel.chosen == 0.0 and "standard error" in sel.reason


def test_the_cap_excludes_candidates():
    adapt, losses, calls = fake(lambda m: 0.1 * m)
    sel = probe_threshold(planner(), adapt, losses, iterations=3, cap=0.35, cap_reason="test")
    assert sel.chosen <= 0.35
    assert [pt["status"] for pt in sel.curve if pt["threshold"] > 0.35] == \
        ["above the cap"] * 6
    assert "capped at phi <= 0.35" in sel.reason
    none = probe_threshold(planner(), adapt, losses, iterations=3, cap=0.05, cap_reason="x")
    assert none.chosen == 0.0 and "no candidate is below the cap" in none.reason


def test_old_domain_change_is_recorded():
    def adapt(model, plan):
        with torch.no_grad():
            model.c3.bias += 0.5
        return model

    def losses(model):
        return torch.full((ITEMS,), 1.0 - float(model.c3.bias.detach().abs().sum()),
                          dtype=torch.float64) + torch.linspace(0, 1e-3, ITEMS,
                                                                dtype=torch.float64)

    old = torch.randn(3, 2, 8, 8)
    sel = probe_threshold(planner(), adapt, losses, iterations=2, old_images=old)
    probed = [pt for pt in sel.curve if pt["status"] == "probed"]
    assert probed and all(pt["old_domain_change"] > 0 for pt in probed)


def test_bad_inputs_fail_before_any_probe():
    adapt, losses, calls = fake(lambda m: 0.1)
    p = planner()
    with pytest.raises(ValueError, match="at least 4"):
        probe_threshold(p, adapt, lambda m: torch.ones(MIN_ITEMS - 1), iterations=2)
    with pytest.raises(ValueError, match="NaN"):
        probe_threshold(p, adapt, lambda m: torch.tensor([1.0, float("nan"), 1, 1]),
                        iterations=2)
    with pytest.raises(ValueError, match="iterations"):
        probe_threshold(p, adapt, losses, iterations=0)
    with pytest.raises(ValueError, match="candidates"):
        probe_threshold(p, adapt, losses, iterations=2, candidates=(0.0, 0.5))
    with pytest.raises(ValueError, match="knee"):
        probe_threshold(p, adapt, losses, iterations=2, knee=1.5)
    assert calls == []


def test_a_diverged_probe_is_flagged_and_never_chosen():
    def adapt(model, plan):
        model.maps = sum(lp.n_targeted for lp in plan.layers.values())
        return model

    def losses(model):
        if not hasattr(model, "maps"):
            return torch.ones(ITEMS, dtype=torch.float64)
        if model.maps > 5:
            return torch.full((ITEMS,), float("nan"), dtype=torch.float64)
        return 0.5 + torch.linspace(0, 1e-3, ITEMS, dtype=torch.float64)

    sel = probe_threshold(planner(), adapt, losses, iterations=2)
    diverged = [pt for pt in sel.curve if pt["status"] == "diverged"]
    assert diverged and all(pt["maps"] > 5 for pt in diverged)
    assert 0 < sel.maps <= 5


def test_a_probe_whose_training_raised_is_flagged_and_never_chosen():
    def adapt(model, plan):
        maps = sum(lp.n_targeted for lp in plan.layers.values())
        if maps > 5:  # what the training loop does when a probe's loss becomes non-finite
            raise FloatingPointError("the training loss became nan at iteration 3")
        model.maps = maps
        return model

    def losses(model):
        if not hasattr(model, "maps"):
            return torch.ones(ITEMS, dtype=torch.float64)
        return 0.5 + torch.linspace(0, 1e-3, ITEMS, dtype=torch.float64)

    sel = probe_threshold(planner(), adapt, losses, iterations=2)
    diverged = [pt for pt in sel.curve if pt["status"] == "diverged"]
    assert diverged and all(pt["maps"] > 5 for pt in diverged)
    assert 0 < sel.maps <= 5
