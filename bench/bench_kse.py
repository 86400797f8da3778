"""KSE of every layer of the paper's DnCNN (64 wide, 8 conv layers): tgd vs the KSE authors' loop.

The reference is the per-input-channel loop with scikit-learn's NearestNeighbors that the KSE
authors' code uses (with the input-channel transpose done right). Run by hand:

    .venv/bin/python bench/bench_kse.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

import tgd
from tgd.models import DnCNN
from tgd.targeting.kse import kse_scores_many, minmax


def authors_loop(weight: torch.Tensor, alpha=1.0, k=5) -> np.ndarray:
    w = weight.detach().numpy().astype(np.float64)
    c_out, c_in = w.shape[:2]
    kernels = w.reshape(c_out, c_in, -1).transpose(1, 0, 2)  # (c_in, c_out, L)
    s = np.abs(kernels).sum((1, 2))
    e = np.zeros(c_in)
    if c_out > 1:
        for c in range(c_in):
            nn_ = NearestNeighbors(n_neighbors=min(k + 1, c_out)).fit(kernels[c])
            dist, _ = nn_.kneighbors(kernels[c])
            dm = dist.sum(1)  # includes the zero distance to itself
            p = dm / dm.sum() if dm.sum() > 0 else np.full(c_out, 1 / c_out)
            e[c] = -(p[p > 0] * np.log2(p[p > 0])).sum()
    t = torch.from_numpy
    return minmax(torch.sqrt(minmax(t(s)) / (1 + alpha * minmax(t(e))))).numpy()


def median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = DnCNN(width=64, depth=8)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    scored = convs[1:]  # every conv that has input feature maps from a previous layer

    ref = [authors_loop(c.weight) for c in scored]
    many = kse_scores_many(scored)
    err = max(float(np.abs(a.numpy() - b).max()) for a, b in zip(many, ref, strict=True))

    # Interleave the candidates so machine noise hits all of them alike.
    results = {"tgd kse_scores_many": [], "tgd per layer (kse_scores)": [],
               "tgd.plan (trace + KSE + masks)": [], "authors' loop (sklearn)": []}  # fmt: skip
    fns = list(
        zip(
            results,
            [
                lambda: kse_scores_many(scored),
                lambda: [tgd.kse_scores(c) for c in scored],
                lambda: tgd.plan(model, 0.3),
                lambda: [authors_loop(c.weight) for c in scored],
            ],
            strict=True,
        )
    )
    for _ in range(max(1, args.repeats // 10)):
        for name, fn in fns:
            reps = 2 if "authors" in name else 10
            results[name].append(median_ms(fn, reps))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}")  # fmt: skip
    print(f"max |tgd - authors' loop| = {err:.2e}")
    base = statistics.median(results["authors' loop (sklearn)"])
    for name, vals in results.items():
        med = statistics.median(vals)
        print(f"{name:<34} median {med:8.2f} ms   speed-up vs authors' loop {base / med:6.1f}x")


if __name__ == "__main__":
    main()
