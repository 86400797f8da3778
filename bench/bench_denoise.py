"""`tgd denoise` throughput against the eager NCHW forward of the same net (2.5-D or 3-D).

Run by hand:  .venv/bin/python bench/bench_denoise.py [--dims 2] [--rounds 5] [--compile]
              .venv/bin/python bench/bench_denoise.py --dims 3 --width 32 --depth 6
              .venv/bin/python bench/bench_denoise.py --device cuda --compile --amp

Candidates, interleaved round by round on one volume (median over rounds):
- eager NCHW: ``model.eval()`` under ``torch.inference_mode``, batches of ``--batch`` slices
  (2.5-D) or the whole volume (3-D), what a user would write; like ``tgd denoise`` it is
  timed from the host volume (numpy) to a host array, so on a GPU both pay the transfers;
- ``tgd denoise``: ``denoise_volume`` (batch norm folded, channels_last, inference mode);
- with ``--compile``: the same through ``torch.compile`` (its one-off compile time is reported
  apart, with the number of studies it takes to pay back);
- with ``--amp``: the same in bfloat16 autocast (its largest error is reported).
The net is the paper's DnCNN (width 64, depth 8) with non-trivial batch-norm statistics.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tgd.data import slices_25d
from tgd.inference import denoise_volume, prepare_for_inference
from tgd.models import DnCNN


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, choices=(2, 3), default=2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--amp", action="store_true", help="also time bfloat16 autocast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch intra-op threads")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time (with --threads 1, robust to other jobs on a "
                    "shared machine)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    now = time.process_time if args.clock == "cpu" else time.perf_counter
    device = torch.device(args.device)
    torch.manual_seed(0)
    c_in = 3 if args.dims == 2 else 1
    model = DnCNN(in_channels=c_in, width=args.width, depth=args.depth, spatial_dims=args.dims)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = model.to(device).eval()
    z, hw, bs = args.slices, args.size, args.batch
    vol = np.random.default_rng(0).uniform(0.5, 2.0, (z, hw, hw)).astype(np.float32)

    @torch.inference_mode()
    def eager():
        # from the host volume to a host array, as `tgd denoise` is timed
        if args.dims == 2:
            stack = slices_25d(vol).to(device)
        else:
            stack = torch.from_numpy(vol)[None, None].to(device)
        if args.dims == 2:
            out = torch.cat([model(stack[s:s + bs]) for s in range(0, z, bs)])
        else:
            out = model(stack)
        return out.squeeze(1).squeeze(0).float().cpu().numpy()

    fast = prepare_for_inference(model)
    kw = dict(scale=1.0, batch_size=bs, prepared=True, chunk=None)

    cands = {"eager NCHW": eager, "tgd denoise": lambda: denoise_volume(fast, vol, **kw)}
    compile_s = None
    if args.compile:
        sync(device)
        t0 = time.perf_counter()
        # a fresh prepared net, so the compiled graph is built here, timed
        fast_c = prepare_for_inference(model)
        ref_c = denoise_volume(fast_c, vol, compile=True, **kw)
        sync(device)
        compile_s = time.perf_counter() - t0
        cands["tgd denoise, compiled"] = lambda: denoise_volume(fast_c, vol, compile=True, **kw)
    if args.amp:
        cands["tgd denoise, bf16"] = lambda: denoise_volume(fast, vol, amp="bf16", **kw)
    outs = {k: f() for k, f in cands.items()}  # warm-up (and the outputs compared below)
    times = {k: [] for k in cands}
    for _ in range(args.rounds):
        for k, f in cands.items():
            sync(device)
            t0 = now()
            f()
            sync(device)
            times[k].append(now() - t0)
    ref = outs["eager NCHW"]
    base = statistics.median(times["eager NCHW"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    res = {"torch": torch.__version__, "device": str(device), "device_name": name,
           "threads": torch.get_num_threads(), "clock": args.clock, "dims": args.dims,
           "width": args.width,
           "depth": args.depth, "volume": [z, hw, hw], "batch": bs, "rounds": args.rounds,
           "compile_s": compile_s, "results": {}}
    for k, ts in times.items():
        med = statistics.median(ts)
        err = float(np.abs(outs[k] - ref).max() / np.abs(ref).max())
        res["results"][k] = {"median_s": med, "slices_per_s": z / med, "speedup": base / med,
                             "max_rel_error_vs_eager": err}
    if compile_s is not None:
        saved = base / res["results"]["tgd denoise"]["speedup"] - \
            base / res["results"]["tgd denoise, compiled"]["speedup"]
        res["compile_pays_back_after_volumes"] = (compile_s / saved) if saved > 0 else None
        res["compiled_first_call_vs_eager_max_rel_error"] = float(
            np.abs(ref_c - ref).max() / np.abs(ref).max())
    print(f"torch {torch.__version__}, {res['device_name']}, {res['threads']} threads, "
          f"{args.dims}-D DnCNN {args.width}x{args.depth}, volume {z}x{hw}x{hw}")
    for k, v in res["results"].items():
        print(f"{k:<24} {v['slices_per_s']:8.1f} slices/s  x{v['speedup']:5.2f} vs eager  "
              f"max rel err {v['max_rel_error_vs_eager']:.1e}")
    if compile_s is not None:
        print(f"compile (first call) {compile_s:.1f} s; pays back after "
              f"{res['compile_pays_back_after_volumes']} volumes of this size")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
