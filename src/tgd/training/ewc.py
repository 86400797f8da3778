"""Elastic Weight Consolidation (Kirkpatrick et al. 2017), the regulariser the paper compares to.

The penalty ``(lambda / 2) * sum_i F_i (theta_i - theta*_i)^2`` keeps the weights near the
pre-trained anchor ``theta*`` in proportion to the diagonal Fisher information ``F``. Unlike TGD,
EWC needs the **pre-training data** (or a Fisher stored with the pre-trained net): ``tgd train``
stores one next to the checkpoint (``fisher_samples``), ``tgd finetune --method ewc`` can
estimate it from ``--fisher-data``. Batch-norm running statistics are not protected by EWC.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm


def estimate_fisher(
    model: nn.Module, dataset: Dataset, n_samples: int = 64, seed: int = 0, progress=False
) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher: mean over samples of the squared gradient of the per-sample
    training loss (MSE), with the model in eval mode (batch norm uses its running statistics).

    Samples are ``n_samples`` items drawn without replacement with ``seed``.
    """
    if len(dataset) == 0:
        raise ValueError("cannot estimate the Fisher information on an empty dataset")
    n = min(int(n_samples), len(dataset))
    if n < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    params = {k: p for k, p in model.named_parameters()}
    fisher = {k: torch.zeros_like(p) for k, p in params.items()}
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    try:
        for i in tqdm(idx.tolist(), desc="Fisher", disable=not progress, leave=False):
            x, y = dataset[i][:2]
            x, y = x.unsqueeze(0).to(dev), y.unsqueeze(0).to(dev)
            grads = torch.autograd.grad(
                nn.functional.mse_loss(model(x), y), list(params.values()), allow_unused=True
            )
            for (k, _), g in zip(params.items(), grads, strict=True):
                if g is not None:
                    fisher[k] += g.detach() ** 2
    finally:
        model.train(was_training)
    return {k: f / n for k, f in fisher.items()}


class EWCPenalty(nn.Module):
    """``penalty(model)``; exactly zero while every weight equals its anchor."""

    def __init__(
        self, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], lam: float
    ) -> None:
        super().__init__()
        missing = sorted(set(anchor) ^ set(fisher))
        if missing:
            raise ValueError(f"Fisher and anchor cover different parameters: {missing}")
        self.names: Sequence[str] = sorted(fisher)
        self.lam = float(lam)
        for i, k in enumerate(self.names):
            if fisher[k].shape != anchor[k].shape:
                raise ValueError(f"Fisher and anchor of '{k}' differ in shape")
            if not torch.isfinite(fisher[k]).all() or bool((fisher[k] < 0).any()):
                raise ValueError(f"Fisher of '{k}' has negative or non-finite entries")
            self.register_buffer(f"f{i}", fisher[k].detach().clone())
            self.register_buffer(f"a{i}", anchor[k].detach().clone())

    def forward(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        missing = [k for k in self.names if k not in params]
        if missing:
            raise ValueError(f"the model has no parameters {missing} of the EWC anchor")
        total = None
        for i, k in enumerate(self.names):
            p = params[k]
            if p.shape != getattr(self, f"a{i}").shape:
                raise ValueError(f"parameter '{k}' does not match the EWC anchor's shape")
            term = (getattr(self, f"f{i}") * (p - getattr(self, f"a{i}")).square()).sum()
            total = term if total is None else total + term
        return 0.5 * self.lam * total
