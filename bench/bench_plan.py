"""Planning time (trace the channel flow + KSE of every conv + rules) for the paper's DnCNN and
MONAI's UNet / BasicUNet with their default widths. Run by hand:

    .venv/bin/python bench/bench_plan.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.networks.nets import BasicUNet, UNet

import tgd
from tgd.models import DnCNN


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    nets = {
        "DnCNN 64x8 (2-D)": (DnCNN(), None),
        "MONAI BasicUNet 2-D (32,32,64,128,256,32)": (BasicUNet(2, 1, 1), None),
        "MONAI BasicUNet 3-D (32,32,64,128,256,32)": (BasicUNet(3, 1, 1), None),
        "MONAI UNet 2-D (16..256, 2 res units)": (
            UNet(2, 1, 1, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2),
            None,
        ),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; default example input "
          "(1 sample, 32 px per spatial dim)")  # fmt: skip
    for name, (net, example) in nets.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            p = tgd.plan(net, 0.3, example_input=example)
            times.append(time.perf_counter() - t0)
        n_conv = len(p.layers)
        n_params = sum(q.numel() for q in net.parameters())
        print(f"{name:<44} {n_conv:3d} convs {n_params / 1e6:6.2f} M params   "
              f"plan median {1e3 * statistics.median(times):8.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
