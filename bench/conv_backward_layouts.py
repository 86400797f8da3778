"""Would parameter mode in NCHW gain from computing its conv backward in channels_last?
(issue 16: there the input gradient is about 2x cheaper). Times, for one 64->64 3x3 conv on
8x64x64x64, the backward of plain fine-tuning (input + full weight gradient), parameter mode's
(input gradient + 32 weight rows, as 19 targeted rows padded to oneDNN's 16-block), the same
with the gradient and input converted to channels_last and the input gradient converted back,
and the conversions alone. CPU time, 1 thread, interleaved, medians.

Run by hand:  .venv/bin/python bench/conv_backward_layouts.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

CL = torch.channels_last
ARGS = ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cb = torch.ops.aten.convolution_backward
    x, g = torch.randn(8, 64, 64, 64), torch.randn(8, 64, 64, 64)
    w = torch.randn(64, 64, 3, 3)
    rows = torch.arange(32)

    def plain():
        return cb(g, x, w, None, *ARGS, [True, True, False])

    def parameter_nchw():
        gx = cb(g, x, w, None, *ARGS, [True, False, False])[0]
        gw = cb(g.index_select(1, rows), x, w.index_select(0, rows), None, *ARGS,
                [False, True, False])[1]
        return gx, gw

    def parameter_via_channels_last():
        gc, xc = g.contiguous(memory_format=CL), x.contiguous(memory_format=CL)
        gx = cb(gc, xc, w, None, *ARGS, [True, False, False])[0]
        gs = gc.movedim(1, -1).reshape(-1, 64).index_select(1, rows).view(8, 64, 64, 32)
        gw = cb(gs.movedim(-1, 1), xc, w.index_select(0, rows), None, *ARGS,
                [False, True, False])[1]
        return gx.contiguous(), gw

    def conversions():
        g.contiguous(memory_format=CL)
        return x.contiguous(memory_format=CL).contiguous()

    cands = {"plain backward (NCHW)": plain, "parameter mode, NCHW": parameter_nchw,
             "parameter mode via channels_last": parameter_via_channels_last,
             "the three layout conversions alone": conversions}
    a, b = parameter_nchw(), parameter_via_channels_last()
    times = {k: [] for k in cands}
    for _ in range(args.rounds):
        for k, f in cands.items():
            t0 = time.process_time()
            f()
            times[k].append(time.process_time() - t0)
    print(f"torch {torch.__version__}, 1 thread, CPU time, median of {args.rounds}; max |diff| "
          f"of the two parameter-mode results: input grad {float((a[0] - b[0]).abs().max()):.1e}"
          f", weight grad {float((a[1] - b[1]).abs().max()):.1e}")
    for k, ts in times.items():
        print(f"{k:<36} {1000 * statistics.median(ts):6.1f} ms")


if __name__ == "__main__":
    main()
