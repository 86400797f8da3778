"""Online-learning losses, early stopping, the held-out N2N split, and the L2-SP / LoRA
baselines."""

import builtins
import copy

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from tgd.losses import anscombe, image_loss, poisson_deviance
from tgd.models import DnCNN
from tgd.training import TrainConfig, evaluate, prepare, train
from tgd.training.online import n2n_split


def test_losses_by_hand():
    p = torch.tensor([1.0, 4.0])
    t = torch.tensor([1.0, 1.0])
    assert float(image_loss("mse")(p, t)) == pytest.approx(4.5)
    a = anscombe(torch.tensor([0.0, 4.0]))
    assert a.tolist() == pytest.approx([2 * 0.375 ** 0.5, 2 * 4.375 ** 0.5])
    want = ((2 * 4.375 ** 0.5 - 2 * 1.375 ** 0.5) ** 2) / 2
    assert float(image_loss("anscombe")(p, t)) == pytest.approx(want, rel=1e-6)
    # deviance of mu = 4 for y = 1: 2 (1 log(1/4) - (1 - 4)) = 2 (3 - log 4); 0 for mu = y
    assert float(poisson_deviance(p, t)) == pytest.approx((2 * (3 - np.log(4))) / 2, rel=1e-6)
    for name in ("mse", "anscombe", "poisson"):
        x = torch.rand(2, 1, 8, 8) + 0.1
        assert float(image_loss(name)(x, x)) == pytest.approx(0, abs=1e-6)
    # the same relative error of a hot voxel weighs far less on the variance-stabilised scale
    hot, cold = torch.tensor([100.0]), torch.tensor([1.0])

    def ratio(name):
        return float(image_loss(name)(hot * 1.1, hot) / image_loss(name)(cold * 1.1, cold))

    assert ratio("mse") == pytest.approx(1e4, rel=1e-4) and ratio("anscombe") < 200
    with pytest.raises(ValueError, match="unknown image loss"):
        image_loss("l1")
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(iterations=1, loss="l1").validate()


def _data(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g)
    return TensorDataset(x, x[:, 1:2] + 0.1 * torch.randn(n, 1, 16, 16, generator=g))


def test_early_stopping_keeps_the_best_weights():
    torch.manual_seed(0)
    model = DnCNN(width=8, depth=3)
    # a learning rate this large makes the validation loss worse after the first steps
    cfg = TrainConfig(method="scratch", width=8, depth=3, iterations=40, batch_size=4,
                      patch_size=None, lr=0.5).validate()
    setup = prepare("scratch", model, cfg)
    val = _data(8, seed=1)
    res = train(setup, cfg, _data(), val_set=val, val_every=2, patience=3)
    curve = res.metrics["val"]
    best_it, best_v = min(((it, v) for it, _, v in curve), key=lambda p: p[1])
    assert res.metrics["best_iteration"] == best_it and curve[0][0] == 0
    assert res.metrics["stopped_early"] and res.iterations < 40
    assert evaluate(model, val) == pytest.approx(best_v, rel=1e-5)
    with pytest.raises(ValueError, match="patience"):
        train(prepare("scratch", DnCNN(width=8, depth=3), cfg), cfg, _data(), patience=2)


def test_n2n_split_holds_out_slices_in_both_directions():
    rng = np.random.default_rng(0)
    a, b = rng.random((12, 16, 16)).astype(np.float32), rng.random((12, 16, 16)).astype(
        np.float32)
    tr, va = n2n_split(a, b, holdout=4, patch_size=8, seed=0, scale=1.0)
    assert len(va) == 2 * 3 and len(tr) == 2 * 9  # slices 2, 6, 10 held out
    held = {2, 6, 10}
    for i in range(len(va)):
        x, y = va[i]
        z = [2, 6, 10][i % 3]
        src = b if i >= 3 else a
        dst = a if i >= 3 else b
        assert np.allclose(y[0].numpy(), dst[z]) and np.allclose(x[1].numpy(), src[z])
    for i in range(len(tr)):
        _, y = tr[i]
        assert y.shape == (1, 8, 8)
        assert not any(np.allclose(y[0].numpy(), d[z][:8, :8]) for z in held for d in (a, b))
    first = tr[0][0].clone()
    tr.set_epoch(3)
    assert not torch.equal(first, tr[0][0])  # new crops each epoch
    with pytest.raises(ValueError, match="holdout"):
        n2n_split(a, b, holdout=1)
    with pytest.raises(ValueError, match="cannot be split"):
        n2n_split(a[:1], b[:1], holdout=2)


def test_l2sp_penalty_pulls_towards_the_pretrained_weights():
    torch.manual_seed(0)
    model = DnCNN(width=8, depth=3)
    cfg = TrainConfig(method="l2sp", width=8, depth=3, iterations=5, batch_size=4,
                      patch_size=None, l2sp_lambda=0.5).validate()
    setup = prepare("l2sp", copy.deepcopy(model), cfg)
    assert float(setup.penalty(setup.model).detach()) == 0
    with torch.no_grad():
        next(setup.model.parameters()).add_(1.0)
    n = next(model.parameters()).numel()
    assert float(setup.penalty(setup.model).detach()) == pytest.approx(0.25 * n, rel=1e-6)


def test_lora_trains_a_low_rank_update_and_merges_into_the_plain_net():
    pytest.importorskip("peft")
    torch.manual_seed(0)
    model = DnCNN(width=8, depth=4)
    cfg = TrainConfig(method="lora", width=8, depth=4, iterations=4, batch_size=4,
                      patch_size=None, lora_rank=2).validate()
    setup = prepare("lora", copy.deepcopy(model), cfg)
    assert setup.info["batch_norm"] == "frozen"
    assert 0 < setup.info["lora"]["trained_fraction"] < 0.5
    train(setup, cfg, _data())
    state = setup.effective_state_dict()
    out = setup.finish()
    assert type(out) is DnCNN and set(out.state_dict()) == set(model.state_dict())
    for k, v in out.state_dict().items():
        assert torch.equal(v, state[k])
    last = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert torch.equal(out.get_submodule(last).weight, model.get_submodule(last).weight)
    first = out.body[0].weight - model.body[0].weight
    assert 0 < torch.linalg.matrix_rank(first.detach().flatten(1), rtol=1e-3).item() <= 2
    # biases and batch-norm statistics are the pre-trained ones
    for k, v in model.state_dict().items():
        if k.endswith(("bias", "running_mean", "running_var")):
            assert torch.equal(out.state_dict()[k], v), k


def test_lora_without_peft_says_what_to_install(monkeypatch):
    real = builtins.__import__

    def no_peft(name, *a, **k):
        if name == "peft":
            raise ImportError("no module named peft")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    cfg = TrainConfig(method="lora", iterations=1).validate()
    with pytest.raises(ImportError, match=r"tgd\[lora\]"):
        prepare("lora", DnCNN(width=8, depth=3), cfg)
