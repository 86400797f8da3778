"""Where the time of `tgd online` (TGD-N2N on one study) goes: data, forward, backward,
optimizer, and the I/O after training (denoising and writing the result).

Run by hand:  .venv/bin/python bench/bench_online.py [--iters 40] [--width 64] [--channels-last]
              .venv/bin/python bench/bench_online.py --device cuda --iters 100

The study is a 32-slice 128x128 pair of independent noisy realizations of a smooth synthetic
body (the timing does not depend on the anatomy), the net the paper's DnCNN (width 64, depth 8,
randomly initialised: a pre-trained one costs the same). The steps replicate
``tgd.training.loop.train`` (same dataset, collate, checks, TGD setup with frozen batch norm,
Adam) with a timer around each phase; ``--compare-train`` also times ``train()`` itself for the
same iterations, to show the replica accounts for its time. Per-iteration numbers are medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import tgd
from tgd.inference import denoise_volume
from tgd.models import DnCNN, model_traits
from tgd.training.config import TrainConfig
from tgd.training.loop import collate, epoch_order, steps_per_epoch, train
from tgd.training.methods import prepare
from tgd.training.online import n2n_dataset


def synthetic_study(z=32, hw=128, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:hw, :hw] / hw - 0.5
    body = ((yy / 0.35) ** 2 + (xx / 0.45) ** 2 < 1).astype(np.float32)
    clean = np.stack([body * (1 + 0.5 * np.sin(6 * xx + k / 5)) for k in range(z)]) + 0.01
    h1 = rng.poisson(clean * 40).astype(np.float32) / 40
    h2 = rng.poisson(clean * 40).astype(np.float32) / 40
    return h1, h2


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--amp", choices=("none", "bf16"), default="none")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch intra-op threads")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time per phase (with --threads 1, robust to other "
                    "jobs on a shared machine)")
    ap.add_argument("--compare-train", action="store_true",
                    help="also time tgd.training.train for the same iterations")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    now = time.process_time if args.clock == "cpu" else time.perf_counter
    device = torch.device(args.device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    h1, h2 = synthetic_study(args.slices)
    cfg = TrainConfig(method="online", width=args.width, batch_size=args.batch,
                      patch_size=args.patch, iterations=args.iters,
                      channels_last=args.channels_last, amp=None if args.amp == "none" else "bf16")
    ds = n2n_dataset(h1, h2, patch_size=cfg.patch_size, seed=cfg.seed, min_items=cfg.batch_size)
    t_data_setup = time.perf_counter() - t0
    model = DnCNN(width=args.width).to(device)
    t0 = time.perf_counter()
    plan = tgd.plan(model, cfg.threshold)
    setup = prepare("online", model, cfg, plan=plan)
    t_plan = time.perf_counter() - t0

    net = setup.model
    fmt = model_traits(net).memory_format
    if cfg.channels_last:
        net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(setup.params, lr=cfg.lr)
    n, spe = len(ds), steps_per_epoch(len(ds), cfg.batch_size)
    phases = {k: [] for k in ("data", "forward", "backward", "optimizer")}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16")
    for it in range(args.iters + 2):  # two warm-up steps, not counted
        epoch, pos = divmod(it, spe)
        ds.set_epoch(epoch)
        batch = epoch_order(cfg.seed, epoch, n)[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        ta = now()
        x, y = collate(ds, batch)
        assert torch.isfinite(x).all() and torch.isfinite(y).all()
        x, y = x.to(device), y.to(device)
        if cfg.channels_last:
            x = x.contiguous(memory_format=fmt)
        sync(device)
        tb = now()
        net.train()
        for m in setup.eval_modules:
            m.eval()
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = nn.functional.mse_loss(net(x).float(), y)
        sync(device)
        tc = now()
        loss.backward()
        sync(device)
        td = now()
        opt.step()
        float(loss.detach())
        te = now()
        if it >= 2:
            for v, dt in zip(phases.values(), (tb - ta, tc - tb, td - tc, te - td), strict=True):
                v.append(dt)
    med = {k: statistics.median(v) for k, v in phases.items()}
    step = sum(med.values())
    adapted = setup.finish()
    vol = 0.5 * (h1 + h2)
    t0 = time.perf_counter()
    den = denoise_volume(adapted, vol, scale=ds.scale)
    t_denoise = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        from tgd.data import write_nifti

        t0 = time.perf_counter()
        write_nifti(Path(d) / "denoised.nii.gz", den, np.eye(4))
        t_write = time.perf_counter() - t0
    res = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
        "clock": args.clock, "width": args.width, "batch": [args.batch, 3, args.patch, args.patch],
        "channels_last": args.channels_last, "amp": args.amp, "iterations_timed": args.iters,
        "per_iteration_ms": {k: 1e3 * v for k, v in med.items()}, "step_ms": 1e3 * step,
        "setup_s": {"dataset": t_data_setup, "plan_and_attach": t_plan},
        "after_training_s": {"denoise": t_denoise, "write_nifti": t_write},
    }
    if args.compare_train:
        model2 = DnCNN(width=args.width).to(device)
        setup2 = prepare("online", model2, cfg, plan=tgd.plan(model2, cfg.threshold))
        t0 = time.perf_counter()
        r = train(setup2, cfg, ds)
        res["train_s"] = time.perf_counter() - t0
        res["train_time_per_iteration_ms"] = 1e3 * r.metrics["time_per_iteration_s"]
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
