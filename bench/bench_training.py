"""Benchmark of the training methods and of inference (results: docs/benchmarks.md, section 5).

    .venv/bin/python bench/bench_training.py [--quick]

1. Fine-tuning vs training from scratch, on the same small simulated data: v1-net trained on v1
   studies; v2-net trained from scratch on v2 studies; then TGD, FT and EWC from v1-net on a
   subset of the v2 studies (as in the paper: fewer studies for fine-tuning). Validation loss
   on held-out v2 studies is recorded against training wall time (validation excluded). Reported:
   the time each method needs to reach v2-net's final validation loss within 2 %, as a fraction
   of v2-net's training time, and the time per iteration of every method.
2. TGD-N2N online learning: wall time of adapting v1-net to one 32-slice 128x128 study.
3. Denoising throughput of the paper's net (width 64, depth 8) on 128x128 slices: eager NCHW
   forward vs channels_last vs channels_last + batch norm folded (what ``tgd denoise`` runs),
   interleaved in rounds (median of rounds); GFLOP/s against the best 3x3 conv throughput
   measured here.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import time

import numpy as np
import torch

import tgd
from tgd.data import NoiseAdaptiveDataset
from tgd.inference import denoise_volume, prepare_for_inference
from tgd.models import DnCNN
from tgd.repro.datasets import study_pairs
from tgd.repro.sim import simulate_study
from tgd.training import TrainConfig, estimate_fisher, prepare, train
from tgd.workflows.online import adapt_online


def log(*a):
    print(*a, flush=True)


def conv_flops_per_slice(model: DnCNN, h: int, w: int) -> float:
    total = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            kh, kw = m.kernel_size
            total += 2 * m.in_channels * m.out_channels * kh * kw * h * w
    return float(total)


def time_to_reach(curve, target):
    """First training time at which the validation loss is <= target (None if never)."""
    for it, t, v in curve:
        if v <= target:
            return t, it
    return None, None


def part1(args, res):
    sim = {"n_slices": args.slices, "shape": args.shape}
    seeds_train = list(range(args.n_train))
    seeds_val = [100 + i for i in range(args.n_val)]
    t0 = time.perf_counter()
    st = {s: simulate_study(s, versions=("v1", "v2"), **sim) for s in seeds_train + seeds_val}
    log(f"simulated {len(st)} studies in {time.perf_counter() - t0:.1f} s")
    ds = {
        v: NoiseAdaptiveDataset(study_pairs([st[s] for s in seeds_train], v),
                                patch_size=args.patch)
        for v in ("v1", "v2")
    }
    ft_set = NoiseAdaptiveDataset(study_pairs([st[s] for s in seeds_train[: args.n_ft]], "v2"),
                                  patch_size=args.patch)
    val = NoiseAdaptiveDataset(study_pairs([st[s] for s in seeds_val], "v2"))

    def cfg(method, iters, **kw):
        return TrainConfig(method=method, width=args.width, depth=8, batch_size=args.batch,
                           patch_size=args.patch, iterations=iters, seed=0, **kw)

    runs = {}

    def go(name, method, model, data, iters, fisher=None, **kw):
        c = cfg(method, iters, **kw)
        setup = prepare(method, model, c, fisher=fisher)
        r = train(setup, c, data, val_set=val, val_every=args.val_every,
                  val_max_items=args.val_items)
        m = r.metrics
        runs[name] = {"iterations": m["iterations"], "train_time_s": m["train_time_s"],
                      "time_per_iteration_s": m["time_per_iteration_s"], "val": m["val"],
                      "val_final": m["val"][-1][2]}
        if setup.fingerprint_before is not None:
            runs[name]["frozen_preserved"] = setup.fingerprint_before == setup.frozen_fingerprint()
        if setup.plan is not None:
            runs[name]["trained_fraction"] = setup.plan.trainable_fraction(setup.model)
        log(f"{name:>8}: {m['iterations']} it, {m['train_time_s']:.1f} s, "
            f"{1000 * m['time_per_iteration_s']:.1f} ms/it, val {m['val'][-1][2]:.5g}")
        return setup.finish()

    if args.v1:  # reuse a v1-net trained by an earlier run with the same settings
        from tgd.training import load_model

        v1, ck = load_model(args.v1)
        log(f"v1-net loaded from {args.v1}")
    else:
        torch.manual_seed(0)
        v1 = go("v1-net", "scratch", DnCNN(width=args.width), ds["v1"], args.iters_scratch)
        if args.save_v1:
            from tgd.training import save_model

            save_model(args.save_v1, v1, {"method": "scratch", "bench": vars(args)})
    if args.reference:  # v2-net's record from an earlier run with the same settings
        with open(args.reference) as fh:
            runs["v2-net"] = json.load(fh)["part1"]["runs"]["v2-net"]
        runs["v2-net"]["from"] = args.reference
        log(f"v2-net reference taken from {args.reference}")
    else:
        torch.manual_seed(0)
        go("v2-net", "scratch", DnCNN(width=args.width), ds["v2"], args.iters_scratch)
    fisher = estimate_fisher(v1, ds["v1"], 64)
    go("TGD", "tgd", copy.deepcopy(v1), ft_set, args.iters_ft, threshold=0.3, mode="parameter")
    go("TGD-act", "tgd", copy.deepcopy(v1), ft_set, args.iters_ft, threshold=0.3,
       mode="activation")
    go("FT", "ft", copy.deepcopy(v1), ft_set, args.iters_ft)
    go("EWC", "ewc", copy.deepcopy(v1), ft_set, args.iters_ft, fisher=fisher,
       ewc_lambda=args.ewc_lambda)
    from tgd.training import evaluate

    v1_on_v2 = evaluate(v1, val, max_items=args.val_items)
    step = step_times(args, v1, ds["v2"], fisher)
    res["step_times"] = step
    log("median time per iteration (interleaved):",
        {k: f"{1000 * v:.1f} ms" for k, v in step.items()})
    target_ref = runs["v2-net"]["val_final"]
    target = 1.02 * target_ref
    t_v2 = runs["v2-net"]["train_time_s"]
    t_v2_2pct, _ = time_to_reach(runs["v2-net"]["val"], target)
    summary = {"v2_val_final": target_ref, "target_within_2pct": target,
               "v1_net_on_v2_val": v1_on_v2, "v2_train_time_s": t_v2,
               "v2_time_to_within_2pct_s": t_v2_2pct}
    n_v2 = runs["v2-net"]["iterations"]
    for name, key in (("TGD", "tgd"), ("TGD-act", "tgd-act"), ("FT", "ft"), ("EWC", "ewc")):
        t, it = time_to_reach(runs[name]["val"], target)
        summary[name] = {
            "time_to_target_s": t, "iteration": it,
            "fraction_of_v2_time": None if t is None else t / t_v2,
            # load-independent: iterations x interleaved median time per iteration
            "fraction_of_v2_time_normalised": None if it is None
            else it * step[key] / (n_v2 * step["scratch"]),
            "val_final": runs[name]["val_final"]}
    res["part1"] = {"runs": runs, "summary": summary, "settings": vars(args)}
    log(json.dumps(summary, indent=1))
    return v1


def step_times(args, v1, data, fisher, rounds=7, steps=3):
    """Median time of one training iteration per method, interleaved round by round."""
    from tgd.training.loop import collate

    x, y = collate(data, range(args.batch))
    fns = {}
    for key in ("scratch", "ft", "tgd", "tgd-act", "ewc"):
        method = key.split("-")[0]
        torch.manual_seed(0)
        model = DnCNN(width=args.width) if method == "scratch" else copy.deepcopy(v1)
        c = TrainConfig(method=method, width=args.width, iterations=1, threshold=0.3,
                        mode="activation" if key == "tgd-act" else "parameter")
        setup = prepare(method, model, c, fisher=fisher if method == "ewc" else None)
        model.train()
        for m in setup.eval_modules:
            m.eval()
        opt = torch.optim.Adam(setup.params, lr=1e-3)

        def fn(model=model, opt=opt, setup=setup):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(x), y)
            if setup.penalty is not None:
                loss = loss + setup.penalty(model)
            loss.backward()
            opt.step()

        fn()
        fns[key] = fn
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[k].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def part2(args, res, v1):
    t0 = time.perf_counter()
    st = simulate_study(500, n_slices=32, shape=128, durations=(120, 600), versions=("v2",),
                        unseen="bladder")
    h1, h2 = st.noise2noise("v2", 120)
    log(f"online study simulated in {time.perf_counter() - t0:.1f} s")
    c = TrainConfig(method="online", width=args.width, batch_size=16, patch_size=64,
                    epochs=args.online_epochs, threshold=0.3)
    t0 = time.perf_counter()
    setup, r, scale = adapt_online(copy.deepcopy(v1), h1, h2, c)
    adapted = setup.finish()
    t_adapt = time.perf_counter() - t0
    t0 = time.perf_counter()
    den = denoise_volume(adapted, 0.5 * (h1 + h2), scale=scale)
    t_den = time.perf_counter() - t0
    res["part2"] = {"epochs": args.online_epochs, "iterations": r.iterations,
                    "adapt_wall_s": t_adapt, "train_time_s": r.metrics["train_time_s"],
                    "time_per_iteration_s": r.metrics["time_per_iteration_s"],
                    "denoise_s": t_den, "slices": den.shape[0], "width": args.width}
    log(json.dumps(res["part2"], indent=1))


@torch.inference_mode()
def part3(args, res):
    torch.manual_seed(0)
    model = DnCNN(width=64, depth=8)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    z, hw, bs = 32, 128, 8
    vol = np.random.default_rng(0).uniform(0.5, 2.0, (z, hw, hw)).astype(np.float32)
    from tgd.data import slices_25d

    stack = slices_25d(vol)

    def eager():
        for s in range(0, z, bs):
            model(stack[s:s + bs])

    cl_only = prepare_for_inference(model, fold_bn=False, channels_last=True)
    folded = prepare_for_inference(model, fold_bn=True, channels_last=True)
    folded_nchw = prepare_for_inference(model, fold_bn=True, channels_last=False)

    def run_cl():
        denoise_volume(cl_only, vol, scale=1.0, batch_size=bs, prepared=True)

    def run_folded():
        denoise_volume(folded, vol, scale=1.0, batch_size=bs, prepared=True)

    def run_folded_nchw():
        denoise_volume(folded_nchw, vol, scale=1.0, batch_size=bs, prepared=True,
                       channels_last=False)

    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval()
    x_nchw = torch.randn(bs, 64, hw, hw)
    conv_cl = copy.deepcopy(conv).to(memory_format=torch.channels_last)
    x_cl = x_nchw.contiguous(memory_format=torch.channels_last)
    conv_flops = 2 * 64 * 64 * 9 * hw * hw * bs

    cands = {"eager NCHW (model.eval())": eager, "channels_last": run_cl,
             "folded BN, NCHW": run_folded_nchw,
             "tgd denoise (folded BN + channels_last)": run_folded,
             "conv 64->64 NCHW": lambda: conv(x_nchw),
             "conv 64->64 channels_last": lambda: conv_cl(x_cl)}
    for f in cands.values():
        f()
    times = {k: [] for k in cands}
    for _ in range(args.rounds):
        for k, f in cands.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    flops = conv_flops_per_slice(model, hw, hw)
    out = {}
    for k, ts in times.items():
        med = statistics.median(ts)
        if k.startswith("conv"):
            out[k] = {"median_s": med, "gflops": conv_flops / med / 1e9}
        else:
            out[k] = {"median_s": med, "slices_per_s": z / med, "gflops": flops * z / med / 1e9}
    best_conv = max(out[k]["gflops"] for k in out if k.startswith("conv"))
    base = out["eager NCHW (model.eval())"]["slices_per_s"]
    for v in out.values():
        if "slices_per_s" in v:
            v["speedup_vs_eager"] = v["slices_per_s"] / base
            v["fraction_of_best_conv"] = v["gflops"] / best_conv
    res["part3"] = {"volume": [z, hw, hw], "batch": bs, "gflop_per_slice": flops / 1e9,
                    "rounds": args.rounds, "results": out, "best_conv_gflops": best_conv}
    log(json.dumps(res["part3"], indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings to check the script")
    ap.add_argument("--parts", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--shape", type=int, default=128)
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=6)
    ap.add_argument("--n-ft", type=int, default=2)
    ap.add_argument("--n-val", type=int, default=2)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters-scratch", type=int, default=3000)
    ap.add_argument("--iters-ft", type=int, default=1500)
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--val-items", type=int, default=64)
    ap.add_argument("--ewc-lambda", type=float, default=1000.0)
    ap.add_argument("--online-epochs", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--v1", default=None, help="load v1-net from this checkpoint")
    ap.add_argument("--save-v1", default=None, help="save the trained v1-net here")
    ap.add_argument("--reference", default=None,
                    help="take v2-net's run (curve, time) from this earlier results JSON")
    args = ap.parse_args()
    if args.quick:
        args.shape, args.slices, args.n_train, args.n_val, args.width = 32, 4, 2, 1, 8
        args.iters_scratch, args.iters_ft, args.val_every, args.online_epochs = 30, 20, 10, 1
        args.rounds = 2
    torch.manual_seed(0)
    res = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "cpus": os.cpu_count(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "tgd": tgd.__version__},
           "uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout}
    log(res["machine"], res["uptime_before"])
    v1 = None
    if 1 in args.parts or 2 in args.parts:
        v1 = part1(args, res)
    if 2 in args.parts:
        part2(args, res, v1)
    if 3 in args.parts:
        part3(args, res)
    res["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout
    log(res["uptime_after"])
    if args.json:
        with open(args.json, "x") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
