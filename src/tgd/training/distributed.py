"""Multi-process training with ``torchrun``: process group, plan broadcast, cross-rank batch norm.

Every rank loads the same checkpoint; rank 0's weights are broadcast anyway, the TGD plan is
computed on rank 0 and broadcast as JSON, and every rank checks the plan against its own
weights' fingerprint. DDP wraps the model *after* ``tgd.attach``: it then sees the
``parametrizations.*.original`` parameters, and broadcasts the TGD buffers (masks, pre-trained
copies) from rank 0, which are identical on every rank.

Batch norm: per-rank batch statistics would make a 2-process run differ from a single process
with the same global batch, and ``nn.SyncBatchNorm`` runs on GPUs only, so ``DistBatchNorm``
(a ``BatchNorm`` subclass, so TGD plans it like one) reduces the statistics over all ranks with
a differentiable all-reduce, on gloo and nccl alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as diff_all_reduce

from tgd.targeting.geometry import BATCH_NORMS


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def init_from_env(timeout_s: float = 300.0) -> DistContext:
    """Join the ``torchrun`` process group if ``WORLD_SIZE > 1`` (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(0, 1, default_device())
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    rank = dist.get_rank()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    return DistContext(rank, dist.get_world_size(), dev)


def broadcast_module(model: nn.Module, ctx: DistContext) -> None:
    """Make every parameter and buffer equal to rank 0's."""
    if not ctx.active:
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, 0)


def broadcast_text(text: str | None, ctx: DistContext) -> str:
    """Rank 0's ``text`` on every rank (as a uint8 tensor: nothing is pickled)."""
    if not ctx.active:
        return text
    dev = ctx.device
    data = (text or "").encode() if ctx.main else b""
    n = torch.tensor([len(data)], dtype=torch.int64, device=dev)
    dist.broadcast(n, 0)
    buf = torch.zeros(int(n), dtype=torch.uint8, device=dev)
    if ctx.main:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return bytes(buf.cpu().tolist()).decode()


def check_same_on_all_ranks(value: str, what: str, ctx: DistContext) -> None:
    """Raise on every rank if ``value`` (e.g. a hash) is not the same on all ranks."""
    if not ctx.active:
        return
    mine = value.encode()
    ref = broadcast_text(value if ctx.main else None, ctx).encode()
    bad = torch.tensor([int(mine != ref)], device=ctx.device)
    dist.all_reduce(bad)
    if int(bad):
        raise RuntimeError(f"{what} differs between ranks ({int(bad)} rank(s) disagree)")


class DistBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are taken over the whole global batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        n_local = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dims), n_local])
        stats = diff_all_reduce(stats)
        n = stats[-1]
        mean = stats[:-1] / n
        centred = x - mean.view(shape)
        var = diff_all_reduce(centred.square().sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                if m is None:
                    m = 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * n / (n - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y


_DIST_BN_TYPES: dict[type, type] = {}


def _dist_bn_type(cls: type) -> type:
    if cls not in _DIST_BN_TYPES:
        # Subclass the original type too, so isinstance checks (and TGD planning) still hold.
        _DIST_BN_TYPES[cls] = type(f"Dist{cls.__name__}", (DistBatchNorm, cls), {})
    return _DIST_BN_TYPES[cls]


def convert_batchnorm(model: nn.Module) -> nn.Module:
    """Switch every BatchNorm1d/2d/3d to its cross-rank version in place (same parameters)."""
    for mod in model.modules():
        if type(mod) in BATCH_NORMS:
            mod.__class__ = _dist_bn_type(type(mod))
    return model
