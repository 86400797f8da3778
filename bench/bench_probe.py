"""Cost of ``threshold="auto"`` by probe adaptations (``tgd.training.select_by_probe``) against
its stated bound: probes x iterations training steps, plus one evaluation of the validation
items per probe and one before, plus the drop bound (a few forward passes). Run by hand:

    PYTHONPATH=src .venv/bin/python bench/bench_probe.py [--repeats 3] [--threads 2]

The paper's DnCNN (width 64, depth 8, 2.5-D), batches of 16 patches of 32^2, 16 validation
slices of 64^2; the cap is lifted (``cap_tolerance`` 1e9) so that every candidate whose plan
differs is probed: the worst case. Interleaved per round: the selection, and a plain TGD run
of the same iterations at phi 0.3 (one probe's training). Reported: medians, and
selection time / (probes x one run's time), the overhead factor over the training the probes
must do.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import TensorDataset

import tgd
from tgd.models import DnCNN
from tgd.training import TrainConfig, prepare, train
from tgd.training.distributed import DistContext
from tgd.training.probe import select_by_probe


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = DnCNN(width=64, depth=8)
    clean = torch.rand(64, 1, 32, 32, generator=g)
    train_set = TensorDataset(clean.repeat(1, 3, 1, 1) + 0.1 * torch.randn(64, 3, 32, 32,
                                                                           generator=g), clean)
    vclean = torch.rand(16, 1, 64, 64, generator=g)
    val_set = TensorDataset(vclean.repeat(1, 3, 1, 1) + 0.1 * torch.randn(16, 3, 64, 64,
                                                                          generator=g), vclean)
    cfg = TrainConfig(method="tgd", width=64, depth=8, batch_size=16, patch_size=None,
                      iterations=args.iterations, threshold="auto")
    sel_t, run_t, probes = [], [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        plan = select_by_probe(model, cfg, train_set, val_set, iterations=args.iterations,
                               noise_level=0.1, cap_tolerance=1e9)
        sel_t.append(time.perf_counter() - t0)
        probes = plan.selection["cost"]["probes"]
        m = DnCNN(width=64, depth=8)
        m.load_state_dict(model.state_dict())
        c = TrainConfig(method="tgd", width=64, depth=8, batch_size=16, patch_size=None,
                        iterations=args.iterations, threshold=0.3)
        setup = prepare("tgd", m, c, plan=tgd.plan(m, 0.3))
        t0 = time.perf_counter()
        train(setup, c, train_set, ctx=DistContext())
        run_t.append(time.perf_counter() - t0)
    s, r = statistics.median(sel_t), statistics.median(run_t)
    print(f"selection: {s:.2f} s median of {args.repeats} ({', '.join(f'{x:.2f}' for x in sel_t)})"
          f"; {probes} probes x {args.iterations} iterations (bound 9 x {args.iterations})")
    print(f"one TGD run of {args.iterations} iterations: {r:.2f} s median "
          f"({', '.join(f'{x:.2f}' for x in run_t)})")
    print(f"selection / (probes x one run) = {s / (probes * r):.2f}; "
          f"selection / (9 x one run) = {s / (9 * r):.2f}")


if __name__ == "__main__":
    main()
