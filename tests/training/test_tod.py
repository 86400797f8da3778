"""MSE-WGAN / TOD-Net training: critic constraint, frozen segmenter, TGD, kill-and-resume."""

from __future__ import annotations

import pytest
import torch

import tgd
from tgd.data.labelled import LabelledNoiseAdaptiveDataset
from tgd.losses import weights_within
from tgd.models import DnCNN, Segmenter
from tgd.repro.datasets import study_pairs
from tgd.training import prepare, train
from tgd.training.adversarial import make_adversarial
from tgd.training.loop import RESUME_DIR

from ..conftest import DURS, tiny_cfg

pytest.importorskip("monai")


@pytest.fixture(scope="module")
def labelled(studies):
    return LabelledNoiseAdaptiveDataset(study_pairs(studies["v2"], "v2", DURS, classes=True),
                                        patch_size=16)


def segmenter():
    torch.manual_seed(5)
    seg = Segmenter("unet", n_classes=4, width=4)
    seg.train()
    seg(torch.randn(4, 1, 16, 16))  # non-trivial batch-norm running statistics
    return seg.eval()


def tod_cfg(method="scratch", **kw):
    base = {"loss": "tod", "iterations": 6, "mse_weight": 10.0, "n_critic": 2}
    base.update(kw)
    return tiny_cfg(method, **base)


def run(method, pretrained_state, data, seg, cfg=None, **kw):
    torch.manual_seed(0)
    m = DnCNN(width=8, depth=4)
    m.load_state_dict(pretrained_state)
    cfg = cfg or tod_cfg(method)
    setup = prepare(method, m, cfg)
    setup.adversarial = make_adversarial(cfg, segmenter=seg, segmenter_info={"name": "test"})
    res = train(setup, cfg, data, **kw)
    return setup, res


def test_labelled_items_crop_classes_with_images(labelled, studies):
    x, y, c = labelled[3]
    assert x.shape == (3, 16, 16) and y.shape == (1, 16, 16) and c.shape == (16, 16)
    assert c.dtype == torch.int64 and int(c.max()) <= 3
    full = LabelledNoiseAdaptiveDataset(study_pairs(studies["v2"], "v2", DURS, classes=True))
    assert full[3][2].shape == full[3][1].shape[1:]


@pytest.mark.parametrize("method", ["scratch", "tgd"])
def test_segmenter_bit_identical_and_critic_clipped(method, pretrained_state, labelled):
    seg = segmenter()
    before = {k: v.clone() for k, v in seg.state_dict().items()}
    torch.manual_seed(0)
    m = DnCNN(width=8, depth=4)
    m.load_state_dict(pretrained_state)
    cfg = tod_cfg(method, clip=0.01)
    setup = prepare(method, m, cfg)
    adv = make_adversarial(cfg, segmenter=seg)
    setup.adversarial = adv
    checks = []
    original = adv.critic_steps

    def checked(real, fake):
        v = original(real, fake)
        checks.append(weights_within(adv.critic, 0.01))
        return v

    adv.critic_steps = checked
    w0 = {k: v.clone() for k, v in setup.effective_state_dict().items()}
    train(setup, cfg, labelled)
    assert checks == [True] * 6
    after = seg.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not seg.training
    moved = setup.effective_state_dict()
    assert any(not torch.equal(w0[k], moved[k]) for k in w0)
    if method == "tgd":  # only the targeted kernels moved
        assert setup.frozen_fingerprint() == setup.fingerprint_before
        fp = tgd.frozen_fingerprint(setup.model, setup.plan)
        setup.finish()
        assert fp == setup.fingerprint_before


@pytest.mark.parametrize("method,gp", [("scratch", 0.0), ("tgd", 0.0), ("scratch", 10.0)])
def test_tod_kill_and_resume_is_bit_identical(tmp_path, pretrained_state, labelled, method, gp):
    cfg = tod_cfg(method, iterations=8, gp_weight=gp)
    ref, _ = run(method, pretrained_state, labelled, segmenter(), cfg)
    run(method, pretrained_state, labelled, segmenter(), cfg, work_dir=tmp_path,
        checkpoint_every=3, stop_after=5)
    resumed, res = run(method, pretrained_state, labelled, segmenter(), cfg, work_dir=tmp_path,
                       checkpoint_every=3, resume=True)
    assert res.metrics["iterations_this_run"] == 5
    a, b = ref.effective_state_dict(), resumed.effective_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = ref.adversarial.critic.state_dict(), resumed.adversarial.critic.state_dict()
    assert all(torch.equal(ca[k], cb[k]) for k in ca)


def test_resume_refuses_another_segmenter(tmp_path, pretrained_state, labelled):
    cfg = tod_cfg(iterations=4)
    run("scratch", pretrained_state, labelled, segmenter(), cfg, work_dir=tmp_path,
        checkpoint_every=2, stop_after=3)
    assert list((tmp_path / RESUME_DIR).glob("*.json"))
    other = segmenter()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="segmenter differs"):
        run("scratch", pretrained_state, labelled, other, cfg, work_dir=tmp_path, resume=True)


def test_wgan_needs_no_labels_and_tod_does(pretrained_state, v2_set):
    cfg = tod_cfg(loss="wgan", iterations=2)
    setup, res = run("scratch", pretrained_state, v2_set, None, cfg)
    assert res.iterations == 2 and set(setup.adversarial.last) >= {"critic", "gan", "mse"}
    with pytest.raises(ValueError, match="classes"):
        run("scratch", pretrained_state, v2_set, segmenter(), tod_cfg(iterations=2))
    with pytest.raises(ValueError, match="frozen segmenter"):
        run("scratch", pretrained_state, v2_set, None, tod_cfg(iterations=2))
