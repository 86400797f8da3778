"""Wasserstein GAN terms (Arjovsky et al. 2017; Gulrajani et al. 2017 for the gradient penalty).

Signs: the critic ``D`` scores real (normal-dose / long-scan) images high. It maximises
``E[D(x*)] - E[D(G(x))]``, i.e. *minimises* :func:`critic_loss` ``= E[D(G(x))] - E[D(x*)]``;
the generator minimises :func:`generator_adversarial_loss` ``= -E[D(G(x))]``. (The TOD-Net
paper writes ``L_GAN = E[D(G(x))]`` for ``G``, the quantity ``G`` drives up; minimising its
negative is the same thing.)

Lipschitz constraint: either weight clipping as in the paper and the original WGAN (every
critic parameter clamped to ``[-c, c]`` after each critic step, :func:`clip_weights`; the paper
writes it as a bound on the weight norm), or the gradient penalty of WGAN-GP,
``E[(||grad D(x_hat)||_2 - 1)^2]`` on random interpolates ``x_hat`` (:func:`gradient_penalty`).
"""

from __future__ import annotations

import torch
from torch import nn


def _scores(name: str, t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty tensor of critic scores")
    return t


def critic_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """``E[D(G(x))] - E[D(x*)]`` (minimised by the critic)."""
    return _scores("d_fake", d_fake).mean() - _scores("d_real", d_real).mean()


def generator_adversarial_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """``-E[D(G(x))]`` (minimised by the generator)."""
    return -_scores("d_fake", d_fake).mean()


@torch.no_grad()
def clip_weights(critic: nn.Module, clip: float) -> None:
    """Clamp every parameter of ``critic`` to ``[-clip, clip]`` in place."""
    if not clip > 0:
        raise ValueError(f"the weight clip must be positive, got {clip}")
    for p in critic.parameters():
        p.clamp_(-clip, clip)


def weights_within(critic: nn.Module, clip: float) -> bool:
    """Whether every parameter of ``critic`` lies in ``[-clip, clip]``."""
    return all(bool((p.abs() <= clip).all()) for p in critic.parameters())


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty ``mean_i (||grad_x D(x_hat_i)||_2 - 1)^2`` with
    ``x_hat = alpha real + (1 - alpha) fake``; ``alpha`` is ``(batch,)`` or drawn uniformly
    (from ``generator`` when given). Differentiable w.r.t. the critic's parameters."""
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    b = real.shape[0]
    if alpha is None:
        alpha = torch.rand(b, generator=generator, device="cpu").to(real.device, real.dtype)
    if alpha.shape != (b,):
        raise ValueError(f"alpha must be (batch,) = ({b},), got {tuple(alpha.shape)}")
    a = alpha.reshape(b, *([1] * (real.dim() - 1)))
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    d = critic(x_hat)
    (grad,) = torch.autograd.grad(d.sum(), x_hat, create_graph=True)
    norm = grad.reshape(b, -1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean()
