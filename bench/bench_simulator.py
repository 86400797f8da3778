"""Benchmark the PET simulator (run by hand, not in the tests).

    .venv/bin/python bench/bench_simulator.py [--repeats 5] [--paper]

1. One 32-slice 128 x 128 study at all 7 durations in v1 and v2: the first (cold) call builds
   and caches the system matrices; then the median of ``--repeats`` warm calls.
2. ``--paper``: the paper-size training set, 20 v1 studies (BMI low/high alternating) and
   7 low-BMI v2 studies, each at 6 noise levels + the 600-s target, 32 slices per study
   (measured); the paper's studies have 256 slices each (30,720 slices / 20 studies / 6
   levels), extrapolated linearly from the measured 32-slice time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from tgd.repro.sim import simulate_study


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--paper", action="store_true")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load avg {os.getloadavg()}")
    cold, _ = timed(lambda: simulate_study(100))
    print(f"cold (incl. building the system matrices): {cold:.2f} s")
    warm = [timed(lambda i=i: simulate_study(101 + i))[0] for i in range(args.repeats)]
    print(f"warm, 32 slices x 7 durations x (v1, v2): median {statistics.median(warm):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in warm)})")
    if args.paper:
        t0 = time.perf_counter()
        per = []
        for i in range(20):
            per.append(timed(lambda i=i: simulate_study(
                200 + i, bmi="low" if i % 2 else "high", versions=("v1",)))[0])
        for i in range(7):
            per.append(timed(lambda i=i: simulate_study(300 + i, versions=("v2",)))[0])
        total = time.perf_counter() - t0
        print(f"paper-size set, 27 studies x 32 slices x 7 durations (measured): {total:.1f} s "
              f"(median per study {statistics.median(per):.2f} s)")
        print(f"  extrapolated to 256 slices per study (x8): {8 * total / 60:.1f} min")
    print(f"load avg at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
