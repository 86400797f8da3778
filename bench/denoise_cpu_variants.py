"""Other ways to run the inference net on the CPU, against `tgd denoise`'s (folded batch norm,
channels_last), interleaved, CPU time with 1 torch thread, ratio of medians to eager NCHW.

Run by hand:  PYTHONPATH=src .venv/bin/python bench/denoise_cpu_variants.py [--rounds 5]

Candidates on 16 slices of 128x128 (paper-size 2.5-D DnCNN 64x8, batch 8 unless named):
eager NCHW; the prepared net (what `tgd denoise` runs); the same with batch 16; TorchScript
trace + freeze; + `torch.jit.optimize_for_inference`; the body converted to MKL-DNN tensors
(`torch.utils.mkldnn.to_mkldnn`, blocked layout kept between layers). Each output is compared
with eager's.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import numpy as np
import torch
from torch.utils import mkldnn

from tgd.data import slices_25d
from tgd.inference import prepare_for_inference
from tgd.models import DnCNN


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = DnCNN(in_channels=3, width=64, depth=8)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    vol = np.random.default_rng(0).uniform(0.5, 2, (16, 128, 128)).astype(np.float32)
    stack = slices_25d(vol)
    fast = prepare_for_inference(model)
    cl = torch.channels_last

    def run(f, bs=8, channels_last=True):
        outs = []
        for s in range(0, len(stack), bs):
            x = stack[s:s + bs]
            outs.append(f(x.contiguous(memory_format=cl) if channels_last else x))
        return torch.cat(outs)

    with torch.inference_mode():
        example = stack[:8].contiguous(memory_format=cl)
        frozen = torch.jit.freeze(torch.jit.trace(fast, example))
        optimized = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(fast,
                                                                                      example)))
        body = mkldnn.to_mkldnn(copy.deepcopy(fast.body))

    def mkldnn_forward(x):
        return x[:, 1:2] - body(x.to_mkldnn()).to_dense()

    cands = {"eager NCHW": lambda: run(model, channels_last=False),
             "tgd denoise's net": lambda: run(fast),
             "same, batch 16": lambda: run(fast, 16),
             "TorchScript frozen": lambda: run(frozen),
             "optimize_for_inference": lambda: run(optimized),
             "MKL-DNN tensors": lambda: run(mkldnn_forward, channels_last=False)}
    with torch.inference_mode():
        outs = {k: f() for k, f in cands.items()}
        times = {k: [] for k in cands}
        for _ in range(args.rounds):
            for k, f in cands.items():
                t0 = time.process_time()
                f()
                times[k].append(time.process_time() - t0)
    base = statistics.median(times["eager NCHW"])
    ref = outs["eager NCHW"]
    print(f"torch {torch.__version__}, 1 thread, CPU time, median of {args.rounds} rounds")
    for k in cands:
        err = float((outs[k] - ref).abs().max() / ref.abs().max())
        print(f"{k:<24} x{base / statistics.median(times[k]):.3f} vs eager   max rel err {err:.1e}")


if __name__ == "__main__":
    main()
