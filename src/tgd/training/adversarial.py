"""Alternating critic / generator steps for MSE-WGAN and TOD-Net (``TrainConfig.loss``).

One training iteration on the batch ``(x, y, classes)`` (the loop's batch ``i``, a function of
``(seed, i)`` as for MSE training):

1. ``G(x)`` is computed once (train mode: batch-norm statistics update once per iteration, as
   in MSE training);
2. ``n_critic`` critic steps on ``(y, G(x).detach())``: minimise
   ``E[D(G(x))] - E[D(y)] (+ gp_weight * gradient penalty)``, then (without a penalty) clip every
   critic weight to ``[-clip, clip]`` (skipped when ``gan_weight`` is 0: the critic then plays
   no part);
3. one generator step on ``L_G = gan_weight L_GAN + task_weight L_t + mse_weight L_MSE`` with the
   updated critic (``tgd.losses.GeneratorLoss``) plus the method's penalty (EWC), through the
   method's optimizer, so FT / TGD / EWC restrict or regularise the update exactly as with MSE.

The critic is not wrapped in DDP: its gradients are averaged over ranks by an all-reduce, so a
step equals a single-process step on the global batch. Its weights and Adam state are part of
every resume checkpoint (``critic/``, ``critic_optim/``); the frozen segmenter's SHA-256 is
recorded and must match on resume. The torch RNG (gradient-penalty interpolation weights) is
in the resume checkpoint already, so a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib

import torch
import torch.distributed as dist
from torch import nn

from tgd.losses import (
    GeneratorLoss,
    LossWeights,
    TaskLoss,
    clip_weights,
    critic_loss,
    gradient_penalty,
)
from tgd.models import Critic
from tgd.training.checkpoint import flatten_optimizer, unflatten_optimizer
from tgd.training.config import TrainConfig

CRITIC_BETAS = (0.5, 0.9)


def module_sha256(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for k, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def collate_classes(dataset, indices) -> torch.Tensor:
    """The class maps (third item entry) of a batch, stacked."""
    out = []
    for i in indices:
        item = dataset[int(i)]
        if len(item) < 3:
            raise ValueError("the task loss needs (input, target, classes) items: use a labelled "
                             "dataset (tgd.data.labelled.LabelledNoiseAdaptiveDataset)")
        out.append(torch.as_tensor(item[2]))
    return torch.stack(out)


class Adversarial:
    """Critic, its optimizer and the generator objective of one run (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, critic: nn.Module, task: TaskLoss | None = None,
                 segmenter_info: dict | None = None) -> None:
        cfg.validate()
        if cfg.loss == "mse":
            raise ValueError("loss='mse' trains without a critic (the plain loop)")
        if cfg.loss == "tod" and task is None:
            raise ValueError("loss='tod' needs a frozen segmenter (the task network)")
        self.cfg = cfg
        self.critic = critic
        self.task = task if cfg.loss == "tod" else None
        self.weights = LossWeights(gan=cfg.gan_weight,
                                   task=cfg.task_weight if self.task is not None else 0.0,
                                   mse=cfg.mse_weight)
        self.objective = GeneratorLoss(self.weights, critic, self.task)
        self.opt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr, betas=CRITIC_BETAS)
        self.segmenter_info = dict(segmenter_info or {})
        if self.task is not None:
            self.segmenter_info["sha256"] = module_sha256(self.task.segmenter)
        self.last: dict[str, float] = {}
        if cfg.gp_weight == 0:
            clip_weights(critic, cfg.clip)  # the constraint holds from the start

    @property
    def needs_classes(self) -> bool:
        return self.task is not None

    def to(self, device) -> Adversarial:
        self.critic.to(device)
        if self.task is not None:
            self.task.to(device)
        return self

    def _sync_critic_grads(self) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            w = dist.get_world_size()
            for p in self.critic.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(w)

    def critic_steps(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        cfg = self.cfg
        self.critic.train()
        for p in self.critic.parameters():
            p.requires_grad_(True)
        fake = fake.detach()
        value = 0.0
        for _ in range(cfg.n_critic):
            self.opt.zero_grad(set_to_none=True)
            loss = critic_loss(self.critic(real), self.critic(fake))
            if cfg.gp_weight > 0:
                loss = loss + cfg.gp_weight * gradient_penalty(self.critic, real, fake)
            loss.backward()
            self._sync_critic_grads()
            self.opt.step()
            if cfg.gp_weight == 0:
                clip_weights(self.critic, cfg.clip)
            value = float(loss.detach())
        return value

    def step(self, net: nn.Module, model: nn.Module, x, y, classes, opt, penalty=None) -> float:
        """One iteration (critic steps, then the generator step); returns the MSE term."""
        out = net(x)
        # without an adversarial term the critic plays no part: it is not trained (e.g. the
        # task loss with Noise2Noise targets, whose noisy "real" images a critic must not learn)
        d_loss = self.critic_steps(y, out) if self.weights.gan > 0 else None
        for p in self.critic.parameters():  # the generator step must not touch the critic
            p.requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        total, terms = self.objective(out, y, classes)
        if penalty is not None:
            total = total + penalty(model)
        total.backward()
        opt.step()
        for p in self.critic.parameters():
            p.requires_grad_(True)
        self.last = {"critic": d_loss, **terms, "total": float(total.detach())}
        return terms.get("mse", float(nn.functional.mse_loss(out.detach(), y)))

    # ---- resume ------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"critic/{k}": v for k, v in self.critic.state_dict().items()}
        opt_t, opt_s = flatten_optimizer(self.opt.state_dict(), prefix="critic_optim")
        tensors.update(opt_t)
        return tensors, {"optimizer": opt_s, "segmenter": self.segmenter_info}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict | None, source) -> None:
        if meta is None:
            raise ValueError(f"{source} holds no critic state: it is not from a {self.cfg.loss} "
                             "run")
        theirs = meta.get("segmenter", {}).get("sha256")
        if theirs != self.segmenter_info.get("sha256"):
            raise ValueError("cannot resume: the frozen segmenter differs from the interrupted "
                             "run's")
        from tgd.training.methods import load_state_strict

        state = {k[len("critic/"):]: v for k, v in tensors.items() if k.startswith("critic/")}
        load_state_strict(self.critic, state, f"critic in {source}")
        self.opt.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))

    def describe(self) -> dict:
        """What the model checkpoint records about the objective."""
        spec = self.critic.spec() if hasattr(self.critic, "spec") else {}
        if self.weights.gan == 0:
            spec = None  # no adversarial term: the critic plays no part
        constraint = ({"gradient_penalty": self.cfg.gp_weight} if self.cfg.gp_weight > 0
                      else {"weight_clip": self.cfg.clip})
        return {"loss": self.cfg.loss, "weights": dataclasses.asdict(self.weights),
                "critic": spec, "n_critic": self.cfg.n_critic, "critic_lr": self.cfg.critic_lr,
                **constraint, "segmenter": self.segmenter_info}


def make_adversarial(cfg: TrainConfig, *, spatial_dims: int = 2, segmenter: nn.Module | None = None,
                     segmenter_info: dict | None = None) -> Adversarial | None:
    """The critic (seeded from ``cfg.seed``) and objective for ``cfg.loss``; None for "mse"."""
    if cfg.loss == "mse":
        return None
    with torch.random.fork_rng(devices=[]):  # the critic's init leaves the global stream alone
        torch.manual_seed(cfg.seed + 7919)
        critic = Critic(1, cfg.critic_width, 3, spatial_dims)
    task = TaskLoss(segmenter) if (cfg.loss == "tod" and segmenter is not None) else None
    return Adversarial(cfg, critic, task, segmenter_info)
