"""threshold="auto" by probe adaptations with the training loop (tgd.training.probe): planted
dead maps that the new domain needs are retrained, a new domain that needs nothing retrains
nothing and says so, the cost stays within its bound, bad inputs fail before any probe."""

import pytest
import torch
from torch.utils.data import TensorDataset

from tests.conftest import tiny_cfg
from tests.targeting.test_auto_threshold import Net
from tgd.training import loop
from tgd.training.probe import select_by_probe


def pairs(net, n, seed):
    x = torch.randn(n, 2, 12, 12, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return TensorDataset(x, net(x))


def cfg(**kw):
    return tiny_cfg("tgd", threshold="auto", lr=1e-2, **kw)


WEAK = [2, 5, 6]  # maps of c2 read by weak kernels of c3: the lowest KSE of that layer


def planted(live: bool) -> Net:
    """Net whose c2 maps ``WEAK`` are read by weak c3 kernels; ``live=False``: their producing
    kernels are 0 (dead maps that carry nothing), ``live=True``: they carry signal."""
    net = Net(dead=False)
    with torch.no_grad():
        net.c3.weight[:, WEAK] *= 0.25
        shape = net.c2.weight[WEAK].shape
        net.c2.weight[WEAK] = (torch.randn(shape, generator=torch.Generator().manual_seed(7))
                               * 0.6 if live else 0.0)
    return net


def test_planted_dead_maps_the_new_domain_needs_are_retrained():
    torch.manual_seed(0)
    teacher = planted(live=True)  # the new domain needs what the dead maps can carry
    train_set, val_set = pairs(teacher, 32, 1), pairs(teacher, 8, 2)
    plan = select_by_probe(planted(live=False), cfg(), train_set, val_set, iterations=40,
                           noise_level=10.0)
    sel = plan.selection
    assert sel["rule"] == "probe" and sel["chosen"] > 0
    pick = next(pt for pt in sel["curve"] if pt["threshold"] == sel["chosen"])
    assert pick["improvement"] > 3 * pick["standard_error"] > 0
    assert pick["improvement"] > 0.5 * sel["base_loss"]
    assert set(WEAK) <= set(torch.nonzero(plan.layers["c2"].mask).flatten().tolist())
    # the knee: larger phi retrain more and buy no more than 10 % beyond it
    larger = [pt for pt in sel["curve"] if pt["threshold"] > sel["chosen"]]
    assert larger and all(pt["maps"] >= pick["maps"] for pt in larger)
    assert all(pt["improvement"] < pick["improvement"] / 0.9 for pt in larger)
    assert sel["cost"]["iterations"] == sel["cost"]["probes"] * 40
    assert sel["cost"]["iterations"] <= sel["cost"]["bound_iterations"] == 9 * 40
    assert sel["cap"] is not None and sel["cap_reason"]


def test_the_drop_bound_caps_the_candidates():
    teacher = planted(live=True)
    plan = select_by_probe(planted(live=False), cfg(), pairs(teacher, 32, 1),
                           pairs(teacher, 8, 2), iterations=5, noise_level=1.0)
    sel = plan.selection
    assert sel["cap"] < 0.9 and sel["chosen"] <= sel["cap"]
    assert {pt["status"] for pt in sel["curve"] if pt["threshold"] > sel["cap"]} == \
        {"above the cap"}


def test_a_new_domain_that_needs_nothing_retrains_nothing():
    torch.manual_seed(0)
    model = Net(dead=False)
    same = pairs(model, 32, 1)  # the "new" domain is what the net already does exactly
    plan = select_by_probe(model, cfg(), same, pairs(model, 8, 2), iterations=10,
                           noise_level=1.0)
    sel = plan.selection
    assert sel["chosen"] == 0.0 and sel["maps"] == 0
    assert not any(lp.mask.any() for lp in plan.layers.values())
    assert sel["reason"].startswith("nothing to retrain")


def test_the_probe_runs_no_more_iterations_than_its_bound(monkeypatch):
    steps = []
    real = loop._Step.__call__

    def counting(self, *a, **k):
        steps.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(loop._Step, "__call__", counting)
    teacher = Net(dead=False)
    plan = select_by_probe(Net(dead=True), cfg(), pairs(teacher, 16, 1), pairs(teacher, 8, 2),
                           iterations=6, noise_level=1.0)
    cost = plan.selection["cost"]
    assert len(steps) == cost["iterations"] <= cost["bound_iterations"]


def test_bad_inputs_fail_before_any_probe(monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("a probe ran")

    monkeypatch.setattr("tgd.training.probe.train", no_training)
    net = Net(dead=True)
    good = pairs(net, 16, 1)
    with pytest.raises(ValueError, match="needs validation data"):
        select_by_probe(net, cfg(), good, None, noise_level=1.0)
    with pytest.raises(ValueError, match="at least 4"):
        select_by_probe(net, cfg(), good, pairs(net, 3, 2), noise_level=1.0)
    bad = pairs(net, 8, 2)
    bad.tensors[0][1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        select_by_probe(net, cfg(), good, bad, noise_level=1.0)
    bad_train = pairs(net, 16, 3)
    bad_train.tensors[1][0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        select_by_probe(net, cfg(), bad_train, pairs(net, 8, 2), noise_level=1.0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        select_by_probe(net, cfg(), pairs(net, 2, 1), pairs(net, 8, 2), noise_level=1.0)
    with pytest.raises(ValueError, match="--probe-iterations"):
        select_by_probe(net, cfg(), good, pairs(net, 8, 2), iterations=0, noise_level=1.0)
    with pytest.raises(ValueError, match="image loss"):
        select_by_probe(net, cfg(loss="wgan"), good, pairs(net, 8, 2), noise_level=1.0)
    with pytest.raises(ValueError, match="noise level"):
        select_by_probe(net, cfg(), good, pairs(net, 8, 2), noise_level=0.0)
