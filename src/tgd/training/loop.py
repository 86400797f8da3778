"""The one training loop behind every method: batches, steps, validation, resumable checkpoints.

Determinism: batch ``i`` is a pure function of (seed, iteration): each epoch's order is a
permutation drawn from ``numpy.random.default_rng([seed, epoch])`` and datasets with random
crops get ``set_epoch(epoch)``; the learning rate is one too (:func:`lr_at`). A resume
checkpoint therefore needs the weights (raw, with TGD's parametrizations), the optimizer state,
the RNG states and the iteration, and a resumed run reaches bit-identical weights to an
uninterrupted one.

With ``torchrun`` each rank takes its contiguous share of the global batch; gradients are
averaged by DDP, so the step equals a single-process step on the global batch (batch-norm
statistics are reduced over ranks, see ``tgd.training.distributed``).
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import Dataset
from tqdm import tqdm

from tgd.losses import image_loss
from tgd.models.traits import model_traits
from tgd.training.adversarial import collate_classes
from tgd.training.checkpoint import (
    capture_rng,
    flatten_optimizer,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    unflatten_optimizer,
)
from tgd.training.config import IMAGE_LOSSES, TrainConfig
from tgd.training.distributed import DistContext
from tgd.training.methods import MethodSetup, load_state_strict

RESUME_DIR = "resume"
KEEP_RESUME = 2


@dataclass
class TrainResult:
    setup: MethodSetup
    iterations: int
    total_iterations: int
    metrics: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.iterations >= self.total_iterations


def steps_per_epoch(n_items: int, batch_size: int) -> int:
    if n_items < batch_size:
        raise ValueError(
            f"the training set has {n_items} items, fewer than one batch of {batch_size}"
        )
    return n_items // batch_size


def total_iterations(cfg: TrainConfig, n_items: int) -> int:
    spe = steps_per_epoch(n_items, cfg.batch_size)
    return cfg.iterations if cfg.iterations is not None else cfg.epochs * spe


def lr_at(cfg: TrainConfig, it: int, total: int) -> float:
    """The learning rate of iteration ``it`` of ``total`` (``cfg.lr_schedule``)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * it / max(total, 1)))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def _item(dataset: Dataset, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    item = dataset[int(i)]
    if not isinstance(item, tuple | list) or len(item) < 2:
        raise ValueError("dataset items must be (input, target) pairs")
    return item[0], item[1]


def collate(dataset: Dataset, indices) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(_item(dataset, i) for i in indices), strict=True)
    try:
        return torch.stack(xs), torch.stack(ys)
    except RuntimeError as err:
        raise ValueError(f"dataset items differ in shape within a batch: {err}") from err


def check_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                what: str = "training") -> None:
    """Clear errors for inputs the network cannot take (before any step is taken)."""
    in_ch = getattr(model, "in_channels", None)
    traits = model_traits(model)
    dims = traits.spatial_dims
    grid, kind = ("D, H, W", "3-D volume patches (a 3-D net)") if dims == 3 else (
        "H, W", "2.5-D slices")
    if x.dim() != dims + 2 or (in_ch is not None and x.shape[1] != in_ch):
        raise ValueError(
            f"{what} inputs must be (batch, {in_ch}, {grid}) {kind}, got {tuple(x.shape)}"
        )
    if y.dim() != dims + 2 or y.shape[1] != 1 or y.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"{what} targets must be (batch, 1, {grid}) matching the inputs, got "
            f"{tuple(y.shape)} for inputs {tuple(x.shape)}"
        )
    m = traits.size_multiple
    if any(s % m for s in x.shape[2:]):
        raise ValueError(f"{what} items of spatial size {tuple(x.shape[2:])}: this "
                         f"{type(model).__name__} needs every size divisible by {m}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError(f"{what} data contain NaN or infinite values")


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 8, max_items: int | None = None,
             device=None, loss: str = "mse") -> float:
    """Mean ``loss`` (a name in ``tgd.losses.IMAGE_LOSSES``; MSE by default) over (up to
    ``max_items`` evenly spaced) items, model in eval mode."""
    fn = image_loss(loss)
    n = len(dataset)
    if n == 0:
        raise ValueError("validation set is empty")
    idx = np.arange(n) if max_items is None or max_items >= n else np.linspace(
        0, n - 1, max_items).round().astype(int)
    was = model.training
    model.eval()
    device = device or next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for s in range(0, len(idx), batch_size):
            x, y = collate(dataset, idx[s:s + batch_size])
            out = model(x.to(device))
            total += float(fn(out, y.to(device))) * y.numel()
            count += y.numel()
    finally:
        model.train(was)
    return total / count


def _resume_files(work_dir: Path) -> list[Path]:
    d = Path(work_dir) / RESUME_DIR
    return sorted(d.glob("step-*.json")) if d.is_dir() else []


def has_resume_state(work_dir: Path) -> bool:
    return bool(_resume_files(work_dir))


def latest_resume_meta(work_dir: Path) -> dict | None:
    """JSON of the newest resume checkpoint (for rebuilding the same setup), or None."""
    for js in reversed(_resume_files(work_dir)):
        try:
            return json.loads(js.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return None


def _load_latest_resume(work_dir: Path):
    errors = []
    for js in reversed(_resume_files(work_dir)):
        try:
            return load_checkpoint(js)
        except (ValueError, FileNotFoundError) as err:  # interrupted save: use the previous one
            errors.append(str(err))
            warnings.warn(f"skipping unusable resume checkpoint {js.name}: {err}", stacklevel=3)
    raise FileNotFoundError(
        f"no usable resume checkpoint in {Path(work_dir) / RESUME_DIR}"
        + (f" ({'; '.join(errors)})" if errors else "")
    )


def _save_resume(work_dir: Path, it: int, setup: MethodSetup, opt, cfg: TrainConfig,
                 history: dict) -> None:
    d = Path(work_dir) / RESUME_DIR
    tensors = {f"model/{k}": v for k, v in setup.model.state_dict().items()}
    opt_t, opt_s = flatten_optimizer(opt.state_dict())
    rng_t, rng_s = capture_rng()
    tensors.update(opt_t)
    tensors.update(rng_t)
    meta = {
        "kind": "resume", "iteration": it, "method": setup.method, "config": cfg.to_dict(),
        "optimizer": opt_s, "rng": rng_s, "history": history,
        "plan": setup.plan.to_dict() if setup.plan is not None else None,
    }
    if setup.adversarial is not None:  # the critic and its optimizer
        adv_t, meta["adversarial"] = setup.adversarial.state()
        tensors.update(adv_t)
    save_checkpoint(d / f"step-{it:08d}", tensors, meta, overwrite=True)
    for old in _resume_files(work_dir)[:-KEEP_RESUME]:
        old.with_suffix(".safetensors").unlink(missing_ok=True)
        old.unlink(missing_ok=True)


def _restore(ckpt, setup: MethodSetup, opt, cfg: TrainConfig) -> tuple[int, dict]:
    meta = ckpt.meta
    if meta.get("kind") != "resume":
        raise ValueError(f"{ckpt.path} is not a resume checkpoint")
    if meta.get("method") != setup.method:
        raise ValueError(f"cannot resume a '{meta.get('method')}' run as '{setup.method}'")
    theirs = TrainConfig.from_dict(meta["config"]).resume_key()
    diff = sorted(k for k, v in cfg.resume_key().items() if theirs.get(k) != v)
    if diff:
        raise ValueError(f"cannot resume: settings differ from the interrupted run: {diff}")
    if setup.plan is not None and meta.get("plan") is not None:
        from tgd.targeting import TGDPlan

        theirs_plan = TGDPlan.from_dict(meta["plan"])
        if any(not torch.equal(theirs_plan.masks[k], m) for k, m in setup.plan.masks.items()):
            raise ValueError("cannot resume: the TGD plan differs from the interrupted run's")
    load_state_strict(setup.model, ckpt.group("model"), f"resume checkpoint {ckpt.path}")
    opt.load_state_dict(unflatten_optimizer(ckpt.tensors, meta["optimizer"]))
    if setup.adversarial is not None:
        setup.adversarial.load_state(ckpt.tensors, meta.get("adversarial"), ckpt.path)
    restore_rng(ckpt.tensors, meta["rng"])
    return int(meta["iteration"]), meta.get("history", {})


def train(
    setup: MethodSetup,
    cfg: TrainConfig,
    train_set: Dataset,
    *,
    val_set: Dataset | None = None,
    val_every: int = 0,
    val_max_items: int | None = None,
    work_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    ctx: DistContext | None = None,
    progress: bool = False,
    stop_after: int | None = None,
    patience: int = 0,
) -> TrainResult:
    """Train ``setup.model`` for ``cfg``'s iterations/epochs; see the module docstring.

    ``checkpoint_every`` > 0 writes resume checkpoints to ``work_dir/resume`` (rank 0);
    ``resume`` continues from the newest one. ``stop_after`` stops after that many iterations
    (as if killed there), for testing resume. Validation (``val_set`` every ``val_every``
    iterations) measures ``cfg.loss``. ``patience`` > 0 stops early once that many validations
    in a row have not improved on the best one, and leaves the model at the best validation's
    weights (``metrics["best_iteration"]``); it needs a validation set and no resume.
    """
    cfg.validate()
    ctx = _check_run(cfg, val_set is not None and bool(val_every), patience,
                     bool(checkpoint_every or resume), work_dir, ctx)
    n = len(train_set)
    spe = steps_per_epoch(n, cfg.batch_size)
    total = total_iterations(cfg, n)

    model = setup.model.to(ctx.device)
    fmt = model_traits(model).memory_format
    if cfg.channels_last:
        model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(setup.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    adv = setup.adversarial.to(ctx.device) if setup.adversarial is not None else None
    start, history = 0, {"val": [], "train_time_s": 0.0, "loss": []}
    if resume:
        start, history = _restore(_load_latest_resume(Path(work_dir)), setup, opt, cfg)
        if start > total:
            raise ValueError(f"the resume checkpoint is at iteration {start}, beyond {total}")
    net = DDP(model) if ctx.active else model
    step = _Step(setup, model, net, opt, adv, cfg, ctx, train_set, history)
    validator = _Validator(model, val_set, val_every, val_max_items, ctx, step.image_loss,
                           patience, history)
    batches = _Batches(train_set, cfg, ctx, spe)

    train_time = float(history.get("train_time_s", 0.0))
    losses: list[float] = []
    bar = tqdm(total=total, initial=start, desc=setup.method, disable=not (progress and ctx.main),
               dynamic_ncols=True)
    checked = False
    validator.begin(start)
    it = start
    try:
        while it < total:
            if stop_after is not None and it >= stop_after:
                break
            mine = batches.indices(it)
            x, y = collate(train_set, mine)
            if not checked:
                check_batch(model, x, y)
                checked = True
            elif not (torch.isfinite(x).all() and torch.isfinite(y).all()):
                raise ValueError(f"training data contain NaN or infinite values (iteration {it})")
            x, y = x.to(ctx.device), y.to(ctx.device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=fmt)
            if cfg.lr_schedule != "constant":
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, it, total)
            t0 = time.perf_counter()
            lv = step(it, x, y, mine)
            train_time += time.perf_counter() - t0
            if not math.isfinite(lv):
                raise FloatingPointError(
                    f"the loss became {lv} at iteration {it}; lower the learning rate"
                )
            losses.append(lv)
            it += 1
            bar.update(1)
            if it % 20 == 0 or it == total:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4g}")
            if validator.due(it, total) and validator(it, train_time):
                break
            history["train_time_s"] = train_time
            history["loss"] = (history.get("loss", []) + [[it, lv]])[-1000:]
            if checkpoint_every and (it % checkpoint_every == 0) and it < total and ctx.main:
                _save_resume(Path(work_dir), it, setup, opt, cfg, history)
    finally:
        bar.close()
    best = validator.restore_best()
    metrics = _metrics(it, start, total, spe, cfg, ctx, train_time, losses, history)
    if best is not None:
        metrics["best_iteration"] = best
        metrics["stopped_early"] = it < total
    return TrainResult(setup, it, total, metrics)


def _check_run(cfg: TrainConfig, validates: bool, patience: int, resumable: bool, work_dir,
               ctx: DistContext | None) -> DistContext:
    """Errors for options that cannot go together; the run's context."""
    if patience and not validates:
        raise ValueError("early stopping (patience) needs a validation set and val_every > 0")
    if patience and (resumable or ctx is not None and ctx.active):
        raise ValueError("early stopping (patience) is for single-process runs without resume "
                         "checkpoints")
    ctx = ctx or DistContext()
    if cfg.batch_size % ctx.world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {ctx.world} processes")
    if resumable and work_dir is None:
        raise ValueError("resumable training needs a work_dir")
    return ctx


class _Batches:
    """The indices of this rank's share of batch ``it``: each epoch a permutation drawn from
    ``(seed, epoch)``, with ``set_epoch(epoch)`` for datasets with random crops."""

    def __init__(self, dataset: Dataset, cfg: TrainConfig, ctx: DistContext, spe: int) -> None:
        self.dataset, self.cfg, self.ctx, self.spe = dataset, cfg, ctx, spe
        self.local = cfg.batch_size // ctx.world
        self.epoch: int | None = None
        self.order: np.ndarray | None = None

    def indices(self, it: int) -> np.ndarray:
        if it // self.spe != self.epoch:
            self.epoch = it // self.spe
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            self.order = epoch_order(self.cfg.seed, self.epoch, len(self.dataset))
        pos, bs = it % self.spe, self.cfg.batch_size
        batch = self.order[pos * bs:(pos + 1) * bs]
        return batch[self.ctx.rank * self.local:(self.ctx.rank + 1) * self.local]


class _Step:
    """One optimisation step on a batch: the image loss (plus the method's penalty), or the
    adversarial objective's critic and generator steps (tgd.training.adversarial)."""

    def __init__(self, setup: MethodSetup, model: nn.Module, net: nn.Module, opt, adv,
                 cfg: TrainConfig, ctx: DistContext, train_set: Dataset, history: dict) -> None:
        self.setup, self.model, self.net, self.opt, self.adv = setup, model, net, opt, adv
        self.cfg, self.ctx, self.train_set, self.history = cfg, ctx, train_set, history
        # the image loss of the step (MSE under the adversarial objectives, whose step is adv's)
        self.image_loss = cfg.loss if cfg.loss in IMAGE_LOSSES else "mse"
        self.loss_fn = image_loss(self.image_loss)

    def __call__(self, it: int, x: torch.Tensor, y: torch.Tensor, mine) -> float:
        """The step's loss (without the penalty)."""
        self.model.train()
        for m in self.setup.eval_modules:
            m.eval()
        setup, adv = self.setup, self.adv
        if adv is not None:
            c = (collate_classes(self.train_set, mine).to(self.ctx.device) if adv.needs_classes
                 else None)
            lv = adv.step(self.net, self.model, x, y, c, self.opt, setup.penalty)
            self.history["adversarial"] = (self.history.get("adversarial", [])
                                           + [[it + 1, adv.last]])[-200:]
            return lv
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.ctx.device.type, torch.bfloat16,
                            enabled=self.cfg.amp == "bf16"):
            out = self.net(x)
        loss = self.loss_fn(out.float(), y)
        full = loss + setup.penalty(self.model) if setup.penalty is not None else loss
        full.backward()
        self.opt.step()
        return float(loss.detach())


class _Validator:
    """Validation on rank 0 every ``every`` iterations (and at the end), recorded in
    ``history["val"]`` as [iteration, training seconds, loss], and early stopping on it
    (``patience``): the best validation's weights are kept to be restored at the end."""

    def __init__(self, model: nn.Module, val_set: Dataset | None, every: int,
                 max_items: int | None, ctx: DistContext, loss: str, patience: int,
                 history: dict) -> None:
        self.model, self.val_set, self.every, self.max_items = model, val_set, every, max_items
        self.ctx, self.loss, self.patience, self.history = ctx, loss, patience, history
        self.best: tuple[float, int, dict] | None = None  # (loss, iteration, weights)
        self.stale = 0

    @property
    def active(self) -> bool:
        return self.val_set is not None and bool(self.every)

    def begin(self, start: int) -> None:
        """Fail now, not at the first validation; measure the curve's starting point."""
        if not self.active:
            return
        vx, vy = _item(self.val_set, 0)
        check_batch(self.model, vx[None], vy[None], "validation")
        if self.ctx.main and start == 0:  # the starting point of the curve (and of stopping)
            v = self._evaluate()
            self.history["val"].append([0, 0.0, v])
            if self.patience:
                self.best = (v, 0, copy.deepcopy(self.model.state_dict()))

    def due(self, it: int, total: int) -> bool:
        return self.active and (it % self.every == 0 or it == total)

    def __call__(self, it: int, train_time: float) -> bool:
        """Validate after iteration ``it``; True when early stopping says stop."""
        if not self.ctx.main:
            return False
        v = self._evaluate()
        self.history["val"].append([it, train_time, v])
        if not self.patience:
            return False
        if self.best is None or v < self.best[0]:
            self.best, self.stale = (v, it, copy.deepcopy(self.model.state_dict())), 0
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore_best(self) -> int | None:
        """Load the best validation's weights (early stopping); its iteration, or None."""
        if self.best is None:
            return None
        self.model.load_state_dict(self.best[2])
        return self.best[1]

    def _evaluate(self) -> float:
        return evaluate(self.model, self.val_set, max_items=self.max_items,
                        device=self.ctx.device, loss=self.loss)


def _metrics(it: int, start: int, total: int, spe: int, cfg: TrainConfig, ctx: DistContext,
             train_time: float, losses: list[float], history: dict) -> dict:
    metrics = {
        "iterations": it,
        "total_iterations": total,
        "steps_per_epoch": spe,
        "epochs": it / spe,
        "global_batch": cfg.batch_size,
        "processes": ctx.world,
        "train_time_s": train_time,
        "time_per_iteration_s": (train_time / it) if it else None,
        "iterations_this_run": it - start,
        "train_loss_last": float(np.mean(losses[-20:])) if losses else None,
        "val": history["val"],
        "loss": history["loss"],
    }
    if history["val"]:
        metrics["val_loss_final"] = history["val"][-1][2]
    return metrics
