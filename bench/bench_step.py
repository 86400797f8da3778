"""Cost of one TGD training step vs one plain full fine-tuning step (same net, batch, optimizer).

Run by hand:  .venv/bin/python bench/bench_step.py [--rounds 7] [--batch 8] [--size 64]
              .venv/bin/python bench/bench_step.py --device cuda --batch 32 --size 128
              .venv/bin/python bench/bench_step.py --dims 3 --width 32 --depth 6 --batch 2 \
                  --size 32 --channels-last      (3-D DnCNN on 32^3 patches)

Candidates are interleaved round by round so machine noise hits all of them alike; each
round's time is the median of a few steps, and the report gives the median over rounds.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import statistics
import time
from pathlib import Path

import torch

import tgd
from tgd.models import DnCNN

attach_mod = importlib.import_module("tgd.targeting.attach")


def step_fn(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = (model(x) - y).square().mean()
        loss.backward()
        opt.step()

    return step


def timed(fn, n, device, clock=time.perf_counter):
    times = []
    for _ in range(n):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3, help="steps per candidate per round")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--dims", type=int, choices=(2, 3), default=2,
                    help="2: the paper's 2.5-D DnCNN; 3: a 3-D DnCNN on 1-channel volumes")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-hooks", action="store_true",
                    help="skip the gradient-hook candidates (the pre-fusion TGD layer)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--reference-backward", metavar="FILE",
                    help="another masked_conv.py (e.g. `git show REV:src/tgd/targeting/"
                    "masked_conv.py > old.py`): its fused backward is timed as well")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time (with --threads 1, robust to other jobs "
                    "competing for the cores of a shared machine)")
    ap.add_argument(
        "--fractions", type=float, nargs="+", default=[0.3, 0.5],
        help="retrain this fraction of the feature maps (phi set to that quantile of KSE); a "
        "randomly initialised net has fewer low-KSE maps than a trained one",
    )  # fmt: skip
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    c_in = 3 if args.dims == 2 else 1
    base = DnCNN(in_channels=c_in, width=args.width, depth=args.depth, spatial_dims=args.dims)
    grid = [args.size] * args.dims
    x = torch.randn(args.batch, c_in, *grid, device=device)
    y = torch.randn(args.batch, 1, *grid, device=device)
    base = base.to(device)
    fmt = torch.channels_last if args.dims == 2 else torch.channels_last_3d
    if args.channels_last:
        base = base.to(memory_format=fmt)
        x, y = x.contiguous(memory_format=fmt), y.contiguous(memory_format=fmt)

    cands = {}
    m = copy.deepcopy(base).train()
    cands["plain fine-tuning"] = step_fn(m, torch.optim.Adam(m.parameters(), 1e-3), x, y)
    fractions = {}
    # KSE of the maps a consumer reads (a frozen last layer's outputs have none: NaN)
    all_kse = torch.cat([lp.kse for lp in tgd.plan(base).layers.values() if lp.role == "targeted"])
    for frac in args.fractions:
        phi = round(float(torch.quantile(all_kse, frac)), 4)
        p = tgd.plan(base, phi)
        n_t = sum(lp.n_targeted for lp in p.layers.values() if lp.role == "targeted")
        n_all = sum(lp.out_channels for lp in p.layers.values() if lp.role == "targeted")
        fractions[phi] = n_t / n_all
        for mode in ("activation", "parameter"):
            m = copy.deepcopy(base).train()
            tgd.attach(m, p, mode=mode)
            opt = torch.optim.Adam(m.parameters(), 1e-3)
            cands[f"TGD {mode} phi={phi}"] = step_fn(m, opt, x, y)
        if args.reference_backward:
            spec = importlib.util.spec_from_file_location("ref_masked_conv",
                                                          args.reference_backward)
            ref_mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(ref_mod)
            real = attach_mod.targeted_conv_forward
            attach_mod.targeted_conv_forward = ref_mod.targeted_conv_forward
            try:
                for mode in ("activation", "parameter"):
                    m = copy.deepcopy(base).train()
                    tgd.attach(m, p, mode=mode)
                    cands[f"TGD {mode} phi={phi}, reference"] = step_fn(
                        m, torch.optim.Adam(m.parameters(), 1e-3), x, y)
            finally:
                attach_mod.targeted_conv_forward = real
        if args.no_hooks:
            continue
        # The same plan with the per-layer gradient-mask hooks instead of the fused backward.
        real = attach_mod.fast_path_supported
        attach_mod.fast_path_supported = lambda conv: False
        try:
            m = copy.deepcopy(base).train()
            tgd.attach(m, p, mode="activation")
        finally:
            attach_mod.fast_path_supported = real
        cands[f"TGD activation, hooks phi={phi}"] = step_fn(
            m, torch.optim.Adam(m.parameters(), 1e-3), x, y
        )

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for fn in cands.values():  # warm-up
        fn()
    res = {k: [] for k in cands}
    for _ in range(args.rounds):
        for name, fn in cands.items():
            res[name].append(timed(fn, args.steps, device, clock))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads, "
          f"{args.dims}-D DnCNN {args.width}x{args.depth}, batch {tuple(x.shape)}, Adam"
          + (", channels_last" if args.channels_last else "")
          + (", CPU time" if args.clock == "cpu" else ", wall time"))  # fmt: skip
    for phi, f in fractions.items():
        print(f"phi={phi}: {100 * f:.1f}% of the feature maps of targeted layers retrained")
    ref = statistics.median(res["plain fine-tuning"])
    out = {"torch": torch.__version__, "device": where, "threads": torch.get_num_threads(),
           "dims": args.dims, "width": args.width, "depth": args.depth,
           "batch": list(x.shape), "channels_last": args.channels_last, "clock": args.clock,
           "rounds": args.rounds, "steps": args.steps,
           "retrained_fraction": {str(k): v for k, v in fractions.items()}, "results": {}}
    for name, vals in res.items():
        med = statistics.median(vals)
        out["results"][name] = {"median_ms": 1e3 * med, "ratio_to_plain": med / ref}
        print(f"{name:<36} median {1e3 * med:8.1f} ms/step   ratio to plain {med / ref:5.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
