"""threshold="auto", per-layer selection, data-driven scores and the KSE-vs-random check."""

import json

import pytest
import torch
from torch import nn

import tgd
from tgd.targeting import Planner
from tgd.targeting.auto_threshold import select_threshold
from tgd.targeting.noise_level import estimate_noise_level, noise_level_from_pair
from tgd.targeting.premise import compare_scores, kse_vs_random

DEAD = {"c1": [1, 4], "c2": [2, 5, 6]}


class Net(nn.Module):
    """conv-tanh-conv-tanh-conv; a map is "dead" when its consumer's kernels reading it are 0."""

    def __init__(self, dead: bool = True, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = nn.Conv2d(2, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 1, 3, padding=1)
        with torch.no_grad():
            for c in (self.c1, self.c2, self.c3):
                # live kernels of similar size, so every live map carries a similar share
                c.weight.copy_(torch.randn(c.weight.shape, generator=g) * 0.4)
                c.bias.zero_()
            if dead:
                self.c2.weight[:, DEAD["c1"]] = 0
                self.c3.weight[:, DEAD["c2"]] = 0

    def forward(self, x):
        return self.c3(torch.tanh(self.c2(torch.tanh(self.c1(x)))))


def images(n=4, seed=1):
    return torch.randn(n, 2, 16, 16, generator=torch.Generator().manual_seed(seed))


def retrained(p):
    return {n: torch.nonzero(lp.mask).flatten().tolist() for n, lp in p.layers.items()
            if lp.mask.any()}


@pytest.mark.parametrize("score", ["kse", "ablation", "taylor"])
@pytest.mark.parametrize("per_layer", [False, True])
def test_auto_retrains_exactly_the_planted_dead_maps(score, per_layer):
    net = Net()
    p = tgd.plan(net, "auto", images=images(), score=score, per_layer=per_layer)
    assert retrained(p) == DEAD
    sel = p.selection
    assert sel["maps"] == 5 and sel["change"] < 1e-6 and sel["score"] == score
    assert sel["mode"] == ("per_layer" if per_layer else "global")
    # the next step retrains a live map and changes the output beyond the tolerance
    if per_layer:  # each layer's own curve shows its next map matters
        for name, curve in sel["layer_curves"].items():
            n_dead = len(DEAD[name])
            assert any(pt["maps"] > n_dead and pt["change"] > sel["tolerance"] for pt in curve)
    else:
        assert any(pt["maps"] > 5 and pt["change"] > sel["tolerance"] for pt in sel["curve"])
    assert "retrains 5 maps" in sel["reason"]
    assert p.layers["c3"].role == "frozen"  # last layer frozen whatever the score
    if per_layer:
        assert set(p.layer_thresholds) == {"c1", "c2"}


@pytest.mark.parametrize("score", ["kse", "ablation", "taylor"])
def test_auto_retrains_nothing_when_every_map_matters(score, capsys):
    net = Net(dead=False)
    p = tgd.plan(net, "auto", images=images(), score=score)
    assert not any(m.any() for m in p.masks.values())
    assert p.threshold == 0.0
    assert p.selection["maps"] == 0
    assert p.selection["reason"].startswith("nothing to retrain")
    assert "matters" in p.summary(net)


def test_budget_is_an_alternative_stopping_rule():
    net = Net(dead=False)
    p = tgd.plan(net, "auto", images=images(), budget=0.3)
    assert 0 < p.trainable_fraction(net) <= 0.3
    assert p.selection["rule"] == "budget" and p.selection["tolerance"] is None
    # with both, the tolerance still holds (here it allows nothing)
    p2 = tgd.plan(net, "auto", images=images(), budget=0.3, tolerance=0.05)
    assert p2.selection["rule"] == "tolerance+budget" and p2.selection["maps"] == 0
    pl = tgd.plan(net, "auto", images=images(), budget=0.3, per_layer=True)
    assert 0 < pl.trainable_fraction(net) <= 0.3


def test_looser_tolerance_retrains_more_and_the_curve_is_recorded():
    net = Net()
    tight = tgd.plan(net, "auto", images=images(), tolerance=0.01)
    loose = tgd.plan(net, "auto", images=images(), tolerance=0.5)
    assert loose.selection["maps"] > tight.selection["maps"] == 5
    assert loose.selection["change"] <= loose.selection["tolerance"]
    curve = loose.selection["curve"]
    assert curve[0]["threshold"] == 0.0 and curve[0]["change"] == 0.0
    assert [pt["maps"] for pt in curve] == sorted(pt["maps"] for pt in curve)


def test_noise_level_tolerance():
    net = Net()
    p = tgd.plan(net, "auto", images=images(), noise_level=2.0, tolerance=0.1)
    assert p.selection["tolerance"] == pytest.approx(0.2)
    assert p.selection["noise_level"] == 2.0
    p = tgd.plan(net, "auto", images=images(), noise_level="estimate")
    assert "estimated" in p.selection["tolerance_basis"]


def test_noise_level_estimates():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    clean = (5 + 0.1 * xx + 0.05 * yy).expand(4, 1, 64, 64)
    noisy = clean + 0.3 * torch.randn(clean.shape, generator=g)
    assert estimate_noise_level(noisy) == pytest.approx(0.3, rel=0.1)
    assert estimate_noise_level(noisy[:, :, :16].unsqueeze(2).expand(4, 1, 4, 16, 64)
                                .contiguous() + 0.3 * torch.randn(4, 1, 4, 16, 64,
                                                                  generator=g)) > 0
    a = clean + 0.3 * torch.randn(clean.shape, generator=g)
    assert noise_level_from_pair(noisy, a) == pytest.approx(0.3, rel=0.05)
    with pytest.raises(ValueError, match="NaN"):
        estimate_noise_level(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        noise_level_from_pair(noisy, a[:1])


def test_bad_inputs_give_clear_errors():
    net = Net()
    with pytest.raises(ValueError, match="no images"):
        tgd.plan(net, "auto")
    with pytest.raises(ValueError, match="no images"):
        tgd.plan(net, "auto", images=torch.zeros(0, 2, 16, 16))
    with pytest.raises(ValueError, match="no images"):
        tgd.plan(net, "auto", images=[])
    with pytest.raises(ValueError, match="2-D network"):
        tgd.plan(net, "auto", images=torch.zeros(2, 2, 4, 16, 16))
    with pytest.raises(ValueError, match="do not fit the model"):
        tgd.plan(net, "auto", images=torch.zeros(2, 3, 16, 16))
    bad = images()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tgd.plan(net, "auto", images=bad)
    with pytest.raises(ValueError, match="NaN"):
        tgd.plan(net, 0.3, score="ablation", images=bad)
    with pytest.raises(ValueError, match="no images"):
        tgd.plan(net, 0.3, score="taylor")
    with pytest.raises(ValueError, match="score must be one of"):
        tgd.plan(net, 0.3, score="magnitude")
    with pytest.raises(ValueError, match="'auto'"):
        tgd.plan(net, "automatic", images=images())
    with pytest.raises(ValueError, match="apply to threshold='auto' only"):
        tgd.plan(net, 0.3, per_layer=True)
    with pytest.raises(ValueError, match="tolerance"):
        tgd.plan(net, "auto", images=images(), tolerance=-1)
    with pytest.raises(ValueError, match="budget"):
        tgd.plan(net, "auto", images=images(), budget=1.5)
    with pytest.raises(ValueError, match="noise_level"):
        tgd.plan(net, "auto", images=images(), noise_level=float("nan"))


def test_images_from_a_dataset_and_a_single_image():
    net = Net()
    ds = [(im, im) for im in images(3)]
    assert retrained(tgd.plan(net, "auto", images=ds)) == DEAD
    assert retrained(tgd.plan(net, "auto", images=images(1)[0])) == DEAD
    with pytest.raises(ValueError, match="differ in shape"):
        tgd.plan(net, "auto", images=[torch.zeros(2, 8, 8), torch.zeros(2, 9, 9)])


def test_data_driven_scores_follow_the_same_rules():
    net = Net()
    for score in ("ablation", "taylor"):
        p = tgd.plan(net, 0.01, score=score, images=images())
        assert p.score == score and retrained(p) == DEAD
        for name in ("c1", "c2"):
            assert p.layers[name].kse.max() <= 1 and p.layers[name].kse.min() >= 0
    # ablation and taylor agree on a net that is nearly linear around zero input (up to the
    # noise of the random output projection)
    a = Planner.build(net, score="ablation", images=0.01 * images()).scores
    t = Planner.build(net, score="taylor", images=0.01 * images()).scores
    assert torch.corrcoef(torch.stack([a["c3"], t["c3"]]))[0, 1] > 0.8


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 6, 3, padding=1)
        self.c = nn.Conv2d(6, 1, 3, padding=1)
        with torch.no_grad():
            self.c.weight[:, :3] *= 0.01

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.c(torch.relu(self.b(h) + h))


@pytest.mark.parametrize("score", ["ablation", "taylor"])
def test_coupled_groups_stay_together_under_data_driven_scores(score):
    torch.manual_seed(0)
    net = Residual()
    p = tgd.plan(net, "auto", images=images(), score=score, tolerance=0.3)
    assert torch.equal(p.masks["a"], p.masks["b"])
    pl = tgd.plan(net, "auto", images=images(), score=score, tolerance=0.3, per_layer=True)
    assert torch.equal(pl.masks["a"], pl.masks["b"])


def test_plan_json_keeps_the_selection_and_old_plans_still_load():
    net = Net()
    p = tgd.plan(net, "auto", images=images(), per_layer=True, score="taylor")
    q = tgd.TGDPlan.from_json(p.to_json())
    assert q.selection == json.loads(json.dumps(p.selection))
    assert q.layer_thresholds == p.layer_thresholds and q.score == "taylor"
    assert all(torch.equal(q.masks[n], m) for n, m in p.masks.items())
    old = tgd.plan(net, 0.3).to_dict()
    for key in ("score", "layer_thresholds", "selection"):
        old.pop(key, None)
    o = tgd.TGDPlan.from_dict(old)
    assert o.score == "kse" and o.layer_thresholds is None and o.selection is None
    bad = p.to_dict()
    bad["score"] = "magic"
    with pytest.raises(ValueError, match="score"):
        tgd.TGDPlan.from_dict(bad)


def test_per_layer_dict_threshold():
    net = Net()
    p = tgd.plan(net, {"c1": 0.01, "c2": 0.0})
    assert retrained(p) == {"c1": DEAD["c1"]}
    with pytest.raises(ValueError, match="unknown conv"):
        tgd.plan(net, {"nope": 0.3})
    handle = tgd.attach(net, p)
    handle.detach()


def test_select_threshold_is_cheap_in_forward_passes():
    net = Net(dead=False)
    planner = Planner.build(net)
    sel = select_threshold(planner, images(), tolerance=0.5)
    n_candidates = len(torch.unique(torch.cat([planner.scores["c2"], planner.scores["c3"]])))
    assert len(sel.curve) <= min(n_candidates, 16) + 6


def test_kse_vs_random_contract():
    net = Net()
    r = kse_vs_random(net, images(), threshold=0.01, n_random=5, seed=3)
    assert r["maps"] == 5 and r["score_change"] < 1e-6
    assert len(r["random_changes"]) == 5 and r["random_maps"] == [5] * 5
    assert r["beats_random"] and r["rank"] == 0 and r["p_value"] == pytest.approx(1 / 6)
    assert r["random_min"] <= r["random_median"] <= r["random_max"]
    assert "beats random" in r["verdict"]
    json.dumps(r)
    assert kse_vs_random(net, images(), 0.01, 5, seed=3) == r
    none = kse_vs_random(net, images(), threshold=0.0, n_random=2)
    assert none["maps"] == 0 and not none["beats_random"]
    with pytest.raises(ValueError, match="n_random"):
        kse_vs_random(net, images(), n_random=0)
    with pytest.raises(ValueError, match="no images"):
        kse_vs_random(net, None)


def test_compare_scores():
    net = Net()
    r = compare_scores(net, images(), threshold=0.01)
    assert r["maps"] == 5 and set(r["changes"]) == {"kse", "ablation", "taylor"}
    assert all(c < 1e-6 for c in r["changes"].values()) and r["best"] == "kse"
