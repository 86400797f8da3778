"""Cost of automatic threshold selection (``tgd.plan(model, "auto", images=...)``) for the
paper's DnCNN (width 64, depth 8, 2.5-D input) and MONAI's BasicUNet 3-D (default widths), on a
small batch, measured in forward passes of that batch. Run by hand:

    PYTHONPATH=src .venv/bin/python bench/bench_auto_threshold.py [--repeats 3] [--threads 1]

Per net: the median time of one forward pass of the batch; the planning time (trace + scores);
the selection time (global, early stop at the first failing candidate, i.e. what
``tgd.plan(..., "auto")`` does, and ``full_curve``: the whole coarse grid, what ``tgd kse``
draws); per-layer selection; the number of candidates measured; and the ratio
selection time / (candidates x forward time): the "forward passes per candidate" the issue
bounds. Also the time of the data-driven scores (Taylor: one forward + backward; ablation: one
forward per scored channel, DnCNN only unless --ablation-3d).

The nets are freshly initialised (the selection's cost does not depend on the weights, but
how many candidates it measures does; ``full_curve`` gives the worst case).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.networks.nets import BasicUNet

from tgd.models import DnCNN
from tgd.targeting.auto_threshold import select_threshold
from tgd.targeting.planner import Planner
from tgd.training.methods import planning_input


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ablation-3d", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = {
        "DnCNN 64x8 2.5-D, batch 4x3x64x64": (DnCNN().eval(), torch.randn(4, 3, 64, 64), None),
        "BasicUNet 3-D (32,32,64,128,256,32), batch 1x1x32^3": (
            BasicUNet(3, 1, 1).eval(), torch.randn(1, 1, 32, 32, 32), "skip"),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    for name, (net, x, ablation) in nets.items():
        example = planning_input(net)
        with torch.no_grad():
            fwd, _ = timed(lambda net=net, x=x: net(x), max(args.repeats, 5))
        t_plan, planner = timed(lambda net=net, ex=example: Planner.build(net, example_input=ex),
                                args.repeats)
        print(f"\n{name}: {sum(p.numel() for p in net.parameters())} parameters; "
              f"forward {1000 * fwd:.1f} ms; plan (trace + KSE) {t_plan:.2f} s")
        for label, kw in (("global, early stop", {}), ("global, full curve", {"full_curve": True}),
                          ("per layer", {"per_layer": True})):
            def run(kw=kw, planner=planner, x=x):
                return select_threshold(planner, x, tolerance=0.05, **kw)

            t, sel = timed(run, args.repeats)
            n = len(sel.curve) + sum(len(c) for c in (sel.layer_curves or {}).values())
            print(f"  {label:<20} {t:7.2f} s  {n:3d} candidates measured  "
                  f"{t / max(n, 1) / fwd:5.2f} forward passes per candidate  "
                  f"(chose {sel.maps} maps)")
        t_tay, _ = timed(lambda net=net, x=x, ex=example: Planner.build(
            net, example_input=ex, score="taylor", images=x), args.repeats)
        print(f"  taylor scores        {t_tay:7.2f} s  ({t_tay / fwd:.1f} forward passes, "
              "incl. tracing)")
        if ablation != "skip" or args.ablation_3d:
            t_abl, _ = timed(lambda net=net, x=x, ex=example: Planner.build(
                net, example_input=ex, score="ablation", images=x), 1)
            print(f"  ablation scores      {t_abl:7.2f} s  ({t_abl / fwd:.0f} forward passes)")


if __name__ == "__main__":
    main()
