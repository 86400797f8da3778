"""Findings are decided on replicates: verdicts follow the per-replicate effects."""

import dataclasses

import numpy as np
import pytest

from tgd.repro.experiments.findings import (
    all_findings,
    finetuning_findings,
    online_findings,
    quality_times,
    time_to_quality,
)
from tgd.repro.experiments.presets import get_preset
from tgd.repro.experiments.replicates import aggregate, run_replicates
from tgd.repro.experiments.reproduce import run_once


def _ft_rep(tgd_bias, ft_bias=-5.0, v1_bias=-7.0, ft_high=13.0, tgd_time=20.0):
    rows = []
    for test in ("v2 low BMI", "v2 high BMI", "v1 low BMI"):
        for net, bias, cov, nrmse in (("v1-net", v1_bias, 6.0, 0.100),
                                      ("v2-net", -4.0, 8.0, 0.110),
                                      ("FT-net", ft_bias, 7.0, 0.105),
                                      ("TGD-net (parameter)", tgd_bias, 6.2, 0.101)):
            if test == "v2 high BMI":
                cov = {"FT-net": ft_high, "TGD-net (parameter)": 10.2}.get(net, 10.0)
            rows.append({"net": net, "test": test, "lesion_bias_vsnl_pct": bias,
                         "liver_cov_pct": cov, "nrmse": nrmse, "psnr_db": 30.0})
    curve = [[0, 0.0, 2.0], [50, 50.0, 1.2], [100, 100.0, 1.0], [150, 150.0, 1.01],
             [200, 200.0, 0.99]]
    tgd_curve = [[0, 0.0, 1.5], [50, tgd_time, 1.01], [100, 2 * tgd_time, 0.99]]
    training = [{"name": "v2-net", "train_time_s": 200.0, "val_curve": curve},
                {"name": "TGD-net (parameter)", "train_time_s": 2 * tgd_time,
                 "val_curve": tgd_curve}]
    return {"finetuning": {"rows": rows, "training": training}}


def _verdicts(findings):
    return {f["id"]: f["verdict"] for f in findings}


def test_verdicts_follow_the_replicates():
    rng = np.random.default_rng(0)
    good = [_ft_rep(-3.0 + rng.normal(0, 0.2)) for _ in range(4)]
    v = _verdicts(finetuning_findings(good))
    assert v["tgd_vs_ft_bias"] == "holds" and v["tgd_vs_v1_bias"] == "holds"
    assert v["tgd_keeps_cov"] == "holds"        # 6.2 vs 6.0: +3 %, margin +15 %
    assert v["tgd_vs_ft_forgetting"] == "holds"  # high BMI: FT 13 vs TGD 10.2
    assert v["tgd_retains_v1"] == "holds"        # NRMSE +1 %, margin +5 %
    assert v["time"] == "holds"                  # 20 s of 100 s
    bad = [_ft_rep(-6.0 + rng.normal(0, 0.2), tgd_time=90.0) for _ in range(4)]
    v = _verdicts(finetuning_findings(bad))
    assert v["tgd_vs_ft_bias"] == "does not hold" and v["time"] == "does not hold"
    # an effect that changes sign between replicates decides nothing
    mixed = [_ft_rep(b) for b in (-3.0, -7.0, -3.5, -6.5)]
    assert _verdicts(finetuning_findings(mixed))["tgd_vs_ft_bias"] == "inconclusive"
    f = next(x for x in finetuning_findings(good) if x["id"] == "tgd_vs_ft_bias")
    assert len(f["per_replicate"]) == 4 and f["ci"][0] < f["effect"] < f["ci"][1]
    assert f["effect"] > 0  # signed: TGD-net's bias minus FT-net's
    assert f["unit"] == "points" and f["test"]["name"] == "superiority"


def test_time_to_quality_and_unreached_targets():
    assert time_to_quality([[0, 0.0, 3.0], [10, 5.0, 1.019], [20, 9.0, 0.9]], 1.0) == 5.0
    assert time_to_quality([[0, 0.0, 3.0], [10, 5.0, 1.5]], 1.0) is None
    rep = _ft_rep(-3.0)
    rep["finetuning"]["training"][1]["val_curve"] = [[0, 0.0, 2.0], [50, 10.0, 1.5]]
    q = quality_times(rep)
    assert q["v2-net"]["seconds"] == 100.0 and q["v2-net"]["reached"]
    assert not q["TGD-net (parameter)"]["reached"]
    f = next(x for x in finetuning_findings([rep, rep]) if x["id"] == "time")
    # a replicate whose TGD-net never reached the target has no value, so nothing is decided
    assert f["verdict"] == "inconclusive" and f["n_missing"] == 2


def test_online_findings():
    def rep(new_nrmse, new_cov):
        return {"online": {"rows": [
            {"net": "v2-net", "unseen_nrmse_pct": 40.0, "background_cov_pct": 10.0},
            {"net": "TGD-N2N (mse)", "unseen_nrmse_pct": new_nrmse,
             "background_cov_pct": new_cov}]}}

    v = _verdicts(online_findings([rep(10.0, 10.5), rep(12.0, 10.2), rep(11.0, 9.9)], ["mse"]))
    assert v == {"tgd_n2n_mse_unseen": "holds", "tgd_n2n_mse_cov": "holds"}
    # more error than the v2-net, and 40 % more noise against a +15 % margin
    v = _verdicts(online_findings([rep(45.0, 14.0), rep(46.0, 14.5), rep(44.0, 13.9)], ["mse"]))
    assert v == {"tgd_n2n_mse_unseen": "does not hold", "tgd_n2n_mse_cov": "does not hold"}


def test_aggregate_means_and_intervals():
    reps = [[{"net": "a", "test": "t", "x": 1.0, "y": float("inf"), "study": 3}],
            [{"net": "a", "test": "t", "x": 3.0, "y": float("inf"), "study": 4}]]
    (row,) = aggregate(reps, ("net", "test"))
    assert row["x"] == 2.0 and row["n_replicates"] == 2
    assert row["x_ci"][0] < 2.0 < row["x_ci"][1]
    assert row["y"] == float("inf") and "y_ci" not in row and "study" not in row


@pytest.mark.slow
def test_replicates_in_processes_equal_replicates_in_process():
    """The pool runs each replicate exactly as the sequential path does (deterministic)."""
    p = dataclasses.replace(get_preset("tiny"), replicates=2, realizations=2)
    seq = run_replicates(run_once, p, ("threshold",), progress=False, log=None)
    par = run_replicates(run_once, dataclasses.replace(p, workers=2), ("threshold",),
                         progress=False, log=None)
    assert [r["seed"] for r in par] == [0, 1]
    for a, b in zip(seq, par, strict=True):
        assert a["threshold"]["rows"] == b["threshold"]["rows"]
        assert a["threshold"]["random"] == b["threshold"]["random"]
    res = {"replicates": seq, "preset": p.to_dict()}
    assert {f["id"] for f in all_findings(res)} == {"premise_kse", "drop_image", "drop_share"}


def test_replicate_seeds_never_overlap_between_base_seeds():
    q = get_preset("quick")
    assert q.seeds() == (0, 1)  # two base seeds pooled: 12 replicates (the power analysis)
    a = set(dataclasses.replace(q, base_seeds=(0,)).replicate_seeds())
    b = set(dataclasses.replace(q, base_seeds=(1,)).replicate_seeds())
    assert len(a) == q.replicates >= 3 and not a & b
    assert set(q.replicate_seeds()) == a | b and len(q.replicate_seeds()) == 2 * q.replicates
    assert dataclasses.replace(q, base_seeds=()).replicate_seeds() == sorted(a)  # seed alone
    assert get_preset("medium").replicates >= 5 and get_preset("paper").replicates >= 5


def test_premise_gate_sees_planted_dead_kernels():
    """The threshold experiment's premise check: on a net whose low-KSE maps are planted dead
    (their kernels zero), dropping KSE's choice changes nothing, dropping as many random maps
    per layer does."""
    import torch

    import tgd
    from tgd.models import DnCNN
    from tgd.repro.experiments.threshold import random_plan

    torch.manual_seed(0)
    net = DnCNN(width=16, depth=4).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for conv, nxt in zip(convs[:-1], convs[1:], strict=True):
            conv.weight[:4] = 0   # maps 0-3 of each hidden layer are dead ...
            nxt.weight[:, :4] = 0  # ... and nothing reads them
    plan = tgd.plan(net, 0.05)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        ref = net(x)
    dropped, _ = tgd.drop_kernels(net, plan)
    with torch.no_grad():
        kse_change = float((dropped(x) - ref).norm() / ref.norm())
    rng = np.random.default_rng(0)
    rand = []
    for _ in range(5):
        rp = random_plan(plan, rng)
        assert {n: lp.n_targeted for n, lp in rp.layers.items()} == {
            n: lp.n_targeted for n, lp in plan.layers.items()}
        d, _ = tgd.drop_kernels(net, rp)
        with torch.no_grad():
            rand.append(float((d(x) - ref).norm() / ref.norm()))
    assert sum(lp.n_targeted for lp in plan.layers.values()) > 0
    assert kse_change < 1e-6 < min(rand)
