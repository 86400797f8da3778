"""KSE of every layer of the paper's DnCNN (64 wide, 8 conv layers): tgd vs the KSE authors' loop.

The reference is the per-input-channel loop with scikit-learn's NearestNeighbors that the KSE
authors' code uses (with the input-channel transpose done right). Run by hand:

    .venv/bin/python bench/bench_kse.py [--repeats 50]

``--wide`` instead times the widest layers of MONAI's zoo (random weights of their shapes):
the shape's own exact path (sorted line for 1x1 kernels, one ``addmm`` per channel for wide
ones) against the batched Gram path every layer took before, on the same first ``--channels``
input channels (the cost is per input channel), interleaved, ratio of medians; then the
default path on the whole layer:

    PYTHONPATH=src .venv/bin/python bench/bench_kse.py --wide [--repeats 5] [--channels 32]
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
import tgd.targeting.kse as kse_module
from tgd.models import DnCNN
from tgd.targeting.geometry import kernels_per_input_channel
from tgd.targeting.kse import kse_from_kernels, kse_scores_many, minmax


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


# (where it occurs, conv weight shape): the widest layers of bench/zoo_coverage.py's networks
WIDE_LAYERS = [
    ("DnCNN 64x8 3x3 (Gram path both ways)", (64, 64, 3, 3)),
    ("SEResNet50 layer4 1x1 2048->512", (512, 2048, 1, 1)),
    ("SEResNet50 layer4 1x1 512->2048", (2048, 512, 1, 1)),
    ("MedNeXtS 1x1 expansion 128->512", (512, 128, 1, 1)),
    ("ResNet18/SEResNet50 layer4 3x3 512->512", (512, 512, 3, 3)),
    ("ResNet18 3-D layer4 3x3x3 512->512", (512, 512, 3, 3, 3)),
    ("VNet 3-D 5x5x5 256->256", (256, 256, 5, 5, 5)),
]


def gram_only(kernels: torch.Tensor) -> torch.Tensor:
    """``kse_from_kernels`` with every layer on the batched Gram path (the code before issue 14)."""
    path = kse_module._density_path
    kse_module._density_path = lambda n, length: "gram"
    try:
        return kse_from_kernels(kernels)
    finally:
        kse_module._density_path = path


def wide(repeats: int, channels: int):
    import os

    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"thread(s), torch {torch.__version__}, load average {load:.1f}")  # fmt: skip
    print(f"| layer | C_in x N x L | path | Gram path, {channels} channels | new path, "
          f"{channels} channels | speed-up | max abs diff | new path, whole layer |")  # fmt: skip
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, shape in WIDE_LAYERS:
        torch.manual_seed(0)
        kern = kernels_per_input_channel(torch.randn(shape))
        part = kern[:channels]
        c, n, length = kern.shape
        diff = float((gram_only(part) - kse_from_kernels(part)).abs().max())
        times = {"gram": [], "new": []}
        for _ in range(repeats):  # interleaved round by round
            times["gram"].append(median_ms(lambda p=part: gram_only(p), 1))
            times["new"].append(median_ms(lambda p=part: kse_from_kernels(p), 1))
        full = median_ms(lambda k=kern: kse_from_kernels(k), 3)
        g, f = statistics.median(times["gram"]), statistics.median(times["new"])
        path = kse_module._density_path(n, length)
        print(f"| {name} | {c} x {n} x {length} | {path} | {g:.1f} ms | {f:.2f} ms | "
              f"{g / f:.0f}x | {diff:.1e} | {full:.1f} ms |", flush=True)  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--wide", action="store_true", help="time the zoo's widest layers instead")
    ap.add_argument("--channels", type=int, default=32, help="input channels timed with --wide")
    args = ap.parse_args()
    if args.wide:
        torch.set_num_threads(1)
        wide(args.repeats, args.channels)
        return
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
