"""Every method trains a few iterations and changes exactly what it should."""

import copy

import pytest
import torch

import tgd
from tgd.targeting.geometry import output_channel_entries
from tgd.training import EWCPenalty, estimate_fisher, prepare, train

from ..conftest import tiny_cfg


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_scratch_changes_every_parameter(v1_set):
    from tgd.models import DnCNN

    torch.manual_seed(1)
    m = DnCNN(width=8, depth=4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    cfg = tiny_cfg(iterations=3)
    setup = prepare("scratch", m, cfg)
    train(setup, cfg, v1_set)
    changed = _changed(before, setup.finish().state_dict())
    assert {k for k, _ in m.named_parameters()} <= changed


def test_ft_changes_only_last_three_blocks(pretrained, v2_set):
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    cfg = tiny_cfg("ft", iterations=4)
    setup = prepare("ft", pretrained, cfg)
    train(setup, cfg, v2_set)
    after = setup.finish().state_dict()
    # depth 4: blocks body.0 | body.2+3 | body.5+6 | body.8 -> the last three are trained
    trained = {"body.2", "body.3", "body.5", "body.6", "body.8"}
    changed = _changed(before, after)
    assert changed, "FT changed nothing"
    assert {k.rsplit(".", 1)[0] for k in changed} <= trained
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("body.0."))
    assert {"body.2.weight", "body.5.weight", "body.8.weight"} <= changed
    assert setup.fingerprint_before == setup.frozen_fingerprint()


@pytest.mark.parametrize("mode", ["activation", "parameter"])
def test_tgd_changes_only_targeted_kernels(pretrained, v2_set, mode):
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    cfg = tiny_cfg("tgd", iterations=4, mode=mode, weight_decay=1e-2)
    setup = prepare("tgd", pretrained, cfg)
    plan = setup.plan
    assert plan.layers["body.8"].role == "frozen"  # last layer frozen
    assert any(lp.n_targeted for lp in plan.layers.values())
    train(setup, cfg, v2_set)
    fp_after = setup.frozen_fingerprint()
    model = setup.finish()
    after = model.state_dict()
    mods = dict(model.named_modules())
    some_trained_changed = False
    for name, lp in plan.layers.items():
        w_keep = ~output_channel_entries(mods[name], lp.mask).expand_as(mods[name].weight)
        assert torch.equal(before[f"{name}.weight"][w_keep], after[f"{name}.weight"][w_keep])
        some_trained_changed |= not torch.equal(before[f"{name}.weight"][~w_keep],
                                                after[f"{name}.weight"][~w_keep])
        if f"{name}.bias" in before:
            assert torch.equal(before[f"{name}.bias"][~lp.mask], after[f"{name}.bias"][~lp.mask])
        for n in lp.norms:
            for attr in ("weight", "bias", "running_mean", "running_var"):
                k = f"{n}.{attr}"
                assert torch.equal(before[k][~lp.mask], after[k][~lp.mask]), k
    assert torch.equal(before["body.8.weight"], after["body.8.weight"])
    assert some_trained_changed
    assert setup.fingerprint_before == fp_after == tgd.frozen_fingerprint(model, plan)


def test_tgd_n_chains(pretrained, v2_set, v1_set):
    cfg = tiny_cfg("tgd", iterations=3)
    s1 = prepare("tgd", pretrained, cfg)
    train(s1, cfg, v2_set)
    m1 = s1.finish()
    snap = copy.deepcopy(m1.state_dict())
    s2 = prepare("tgd", m1, cfg)  # KSE recomputed on the adapted net
    assert s2.plan.weights_sha256 != s1.plan.weights_sha256
    train(s2, cfg, v1_set)
    assert s2.fingerprint_before == s2.frozen_fingerprint()
    m2 = s2.finish()
    assert _changed(snap, m2.state_dict())


def test_ewc_penalty_zero_at_anchor_and_grows(pretrained, v1_set, v2_set):
    fisher = estimate_fisher(pretrained, v1_set, n_samples=6)
    assert all(bool((f >= 0).all()) for f in fisher.values())
    assert any(bool((f > 0).any()) for f in fisher.values())
    anchor = {k: p.detach().clone() for k, p in pretrained.named_parameters()}
    pen = EWCPenalty(fisher, anchor, lam=10.0)
    at_anchor = pen(pretrained)
    assert torch.equal(at_anchor, torch.zeros(()))
    at_anchor.backward()
    assert all(p.grad is None or not p.grad.any() for p in pretrained.parameters())
    cfg = tiny_cfg("ewc", iterations=4, ewc_lambda=10.0)
    setup = prepare("ewc", pretrained, cfg, fisher=fisher)
    train(setup, cfg, v2_set)
    assert float(pen(setup.finish()).detach()) > 0


def test_ewc_without_fisher_is_a_clear_error(pretrained):
    with pytest.raises(ValueError, match="Fisher"):
        prepare("ewc", pretrained, tiny_cfg("ewc"))


def test_nan_data_and_wrong_shapes_are_refused(pretrained):
    from torch.utils.data import TensorDataset

    cfg = tiny_cfg("scratch", iterations=1)
    x = torch.randn(4, 3, 16, 16)
    y = torch.randn(4, 1, 16, 16)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train(prepare("scratch", copy.deepcopy(pretrained), cfg), cfg, TensorDataset(bad, y))
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        train(prepare("scratch", copy.deepcopy(pretrained), cfg), cfg,
              TensorDataset(x[:, :2], y))
    with pytest.raises(ValueError, match="targets"):
        train(prepare("scratch", copy.deepcopy(pretrained), cfg), cfg,
              TensorDataset(x, torch.randn(4, 1, 8, 8)))
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(prepare("scratch", copy.deepcopy(pretrained), cfg), cfg,
              TensorDataset(x[:2], y[:2]))


@pytest.mark.parametrize("bn", ["auto", "train"])
def test_tgd_batch_norm_policy(pretrained, v2_set, bn):
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    cfg = tiny_cfg("tgd", iterations=3, bn=bn)
    setup = prepare("tgd", pretrained, cfg)
    assert setup.info["batch_norm"] == ("frozen" if bn == "auto" else "train")
    train(setup, cfg, v2_set)
    after = setup.finish().state_dict()
    stats = [k for k in before if "running_" in k]
    same = all(torch.equal(before[k], after[k]) for k in stats)
    assert same == (bn == "auto")  # frozen: running statistics never change
    assert setup.fingerprint_before == setup.frozen_fingerprint()


def test_frozen_batch_norm_refused_for_scratch():
    with pytest.raises(ValueError, match="pre-trained"):
        tiny_cfg("scratch", bn="frozen").validate()
