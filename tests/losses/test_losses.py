"""Each loss against values computed by hand on tiny tensors."""

import math

import pytest
import torch
from torch import nn

from tgd.losses import (
    GeneratorLoss,
    LossWeights,
    TaskLoss,
    clip_weights,
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty,
    mse_loss,
    one_hot,
    soft_dice,
    soft_dice_loss,
    weights_within,
)


def logit(p):
    return math.log(p / (1 - p))


def two_class_logits(p1):
    """(1, 2, 1, N) logits whose softmax gives class-1 probabilities p1."""
    z = torch.tensor([logit(p) for p in p1], dtype=torch.float64)
    return torch.stack([torch.zeros_like(z), z])[None, :, None, :]


def test_wgan_terms_by_hand():
    d_real = torch.tensor([1.0, 3.0])
    d_fake = torch.tensor([0.0, 2.0])
    assert critic_loss(d_real, d_fake).item() == pytest.approx(1.0 - 2.0)
    assert generator_adversarial_loss(d_fake).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="non-empty"):
        critic_loss(torch.tensor([]), d_fake)


def test_clip_weights_by_hand():
    lin = nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-0.5, 0.005, 0.2]]))
        lin.bias.fill_(-0.003)
    assert not weights_within(lin, 0.01)
    clip_weights(lin, 0.01)
    assert torch.equal(lin.weight, torch.tensor([[-0.01, 0.005, 0.01]]))
    assert lin.bias.item() == pytest.approx(-0.003)
    assert weights_within(lin, 0.01)
    with pytest.raises(ValueError, match="positive"):
        clip_weights(lin, 0.0)


def test_gradient_penalty_by_hand():
    # D(x) = 3 x0 + 4 x1: gradient norm 5 everywhere, penalty (5 - 1)^2 = 16
    critic = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[3.0, 4.0]]))
    real, fake = torch.randn(2, 1, 1, 2), torch.randn(2, 1, 1, 2)
    gp = gradient_penalty(critic, real, fake, alpha=torch.tensor([0.3, 0.9]))
    assert gp.item() == pytest.approx(16.0)
    gp.backward()  # d/dw of (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    assert torch.allclose(critic[1].weight.grad, torch.tensor([[2 * 4 * 3 / 5, 2 * 4 * 4 / 5]]))
    with pytest.raises(ValueError, match="differ in shape"):
        gradient_penalty(critic, real, fake[:1])


def test_soft_dice_by_hand():
    # class 1: p = [.2, .6, .9], g = [0, 1, 1]: 2 * 1.5 / (1.7 + 2) = 0.810811
    # class 0: p = [.8, .4, .1], g = [1, 0, 0]: 2 * 0.8 / (1.3 + 1) = 0.695652
    logits = two_class_logits([0.2, 0.6, 0.9])
    labels = torch.tensor([[[0, 1, 1]]])
    d1, d0 = 3.0 / 3.7, 1.6 / 2.3
    assert soft_dice_loss(logits, labels, eps=0).item() == pytest.approx(1 - d1)
    assert soft_dice_loss(logits, labels, eps=0, include_background=True).item() == \
        pytest.approx(((1 - d0) + (1 - d1)) / 2)
    # per-sample: a second sample with p1 = .5 everywhere and g = [1, 1, 1]: 3 / 4.5
    logits2 = torch.cat([logits, two_class_logits([0.5, 0.5, 0.5])])
    labels2 = torch.tensor([[[0, 1, 1]], [[1, 1, 1]]])
    per = soft_dice(torch.softmax(logits2, 1), one_hot(labels2, 2).double(), reduction="sample",
                    eps=0)
    assert per[:, 1].tolist() == pytest.approx([d1, 3 / 4.5])
    # batch: class 1 pooled over both samples: 2 (1.5 + 1.5) / (1.7 + 1.5 + 2 + 3)
    assert soft_dice_loss(logits2, labels2, eps=0).item() == pytest.approx(1 - 6 / 8.2)


def test_soft_dice_rejects_bad_labels():
    logits = two_class_logits([0.2, 0.6, 0.9])
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        soft_dice_loss(logits, torch.tensor([[[0, 2, 1]]]))
    with pytest.raises(ValueError, match="do not match"):
        soft_dice_loss(logits, torch.tensor([[[0, 1]]]))
    with pytest.raises(ValueError, match="integer"):
        one_hot(torch.tensor([0.5]), 2)


def _segmenter():
    """logits (0, 2 x): class-1 probability sigmoid(2 x), with a batch norm to check freezing."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.0, 2.0]).reshape(2, 1, 1, 1))
    return nn.Sequential(nn.BatchNorm2d(1), conv)


def test_task_loss_frozen_and_by_hand():
    seg = _segmenter()
    before = {k: v.clone() for k, v in seg.state_dict().items()}
    task = TaskLoss(seg, eps=0)
    task.train()
    assert not seg.training and not any(p.requires_grad for p in seg.parameters())
    # x = logit(p) / 2 gives class-1 probability p (batch norm in eval: identity at init
    # up to its eps)
    x = torch.tensor([logit(0.2), logit(0.6), logit(0.9)]).reshape(1, 1, 1, 3) / 2
    x = (x * math.sqrt(1 + 1e-5)).requires_grad_(True)
    loss = task(x, torch.tensor([[[0, 1, 1]]]))
    assert loss.item() == pytest.approx(1 - 3.0 / 3.7, rel=1e-5)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in seg.parameters())
    for k, v in seg.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_generator_loss_combination_by_hand():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[1.0, -1.0, 2.0]]))
    task = TaskLoss(_segmenter(), eps=0)
    out = (torch.tensor([logit(0.2), logit(0.6), logit(0.9)]) / 2 * math.sqrt(1 + 1e-5)
           ).reshape(1, 1, 1, 3)
    target = out + torch.tensor([0.1, -0.2, 0.3]).reshape(1, 1, 1, 3)
    labels = torch.tensor([[[0, 1, 1]]])
    gen = GeneratorLoss(LossWeights(gan=0.5, task=2.0, mse=10.0), critic, task)
    total, terms = gen(out, target, labels)
    d = float(critic(out).detach())
    mse = (0.01 + 0.04 + 0.09) / 3
    dice_l = 1 - 3.0 / 3.7
    assert terms["gan"] == pytest.approx(-d)
    assert terms["mse"] == pytest.approx(mse, rel=1e-5)
    assert terms["task"] == pytest.approx(dice_l, rel=1e-5)
    assert total.item() == pytest.approx(0.5 * -d + 2.0 * dice_l + 10.0 * mse, rel=1e-5)
    # the MSE-only combination is exactly the MSE
    only = GeneratorLoss(LossWeights(gan=0, task=0, mse=1))
    assert torch.equal(only(out, target)[0], mse_loss(out, target))


def test_generator_loss_checks():
    with pytest.raises(ValueError, match="needs a critic"):
        GeneratorLoss(LossWeights(gan=1, task=0, mse=1))
    with pytest.raises(ValueError, match="needs a task loss"):
        GeneratorLoss(LossWeights(gan=0, task=1, mse=1))
    with pytest.raises(ValueError, match=">= 0"):
        LossWeights(gan=-1)
    with pytest.raises(ValueError, match="at least one"):
        LossWeights(0, 0, 0)
    gen = GeneratorLoss(LossWeights(gan=0, task=1, mse=1), task=TaskLoss(_segmenter()))
    with pytest.raises(ValueError, match="needs labels"):
        gen(torch.zeros(1, 1, 1, 3), torch.zeros(1, 1, 1, 3))
    with pytest.raises(ValueError, match="differ"):
        mse_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 1))
