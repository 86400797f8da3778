"""Planning time (trace the channel flow + KSE of every conv + rules) for the paper's DnCNN and
MONAI's UNet / BasicUNet with their default widths: the default example input (the smallest
size the model accepts) against a fixed 32-pixel input, timed interleaved. Run by hand:

    PYTHONPATH=src .venv/bin/python bench/bench_plan.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from monai.networks.nets import BasicUNet, UNet

import tgd
from tgd.targeting.channels import example_input_for, trace_channels, trace_smallest


def _ms(fn, times):
    t0 = time.perf_counter()
    fn()
    times.append(1e3 * (time.perf_counter() - t0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    from tgd.models import DnCNN

    nets = {
        "DnCNN 64x8 (2-D)": DnCNN(),
        "MONAI BasicUNet 2-D (32,32,64,128,256,32)": BasicUNet(2, 1, 1),
        "MONAI BasicUNet 3-D (32,32,64,128,256,32)": BasicUNet(3, 1, 1),
        "MONAI UNet 2-D (16..256, 2 res units)": UNet(
            2, 1, 1, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2
        ),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("model | plan (default input) | plan (32 px) | trace (default) | trace (32 px)")
    for name, net in nets.items():
        x32 = example_input_for(net, 32)
        t = {k: [] for k in ("plan", "plan32", "trace", "trace32")}
        for _ in range(args.repeats):  # interleaved round by round
            _ms(lambda net=net: tgd.plan(net, 0.3), t["plan"])
            _ms(lambda net=net, x=x32: tgd.plan(net, 0.3, example_input=x), t["plan32"])
            _ms(lambda net=net: trace_smallest(net), t["trace"])
            _ms(lambda net=net, x=x32: trace_channels(net, x), t["trace32"])
        med = {k: statistics.median(v) for k, v in t.items()}
        print(f"{name} | {med['plan']:.1f} ms | {med['plan32']:.1f} ms | {med['trace']:.1f} ms | "
              f"{med['trace32']:.1f} ms")  # fmt: skip
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
