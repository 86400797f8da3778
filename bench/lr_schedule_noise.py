"""Does a cosine learning-rate schedule make the reproduction's nets stop well? Validation-curve
noise and final validation MSE, constant vs cosine, for the v2-net (scratch) and for TGD
adaptation of a v1-net, on the quick preset's sizes. Results in docs/reproduction.md ("Base
nets that stop well").

Per seed (studies simulated as a replicate of that seed): the v2-net trained from scratch with
each schedule, validated every ``val_every`` iterations on the held-out v2 study; a v1-net
(``--base-schedule``, constant by default), then each ``--methods`` adaptation from it with each
``--adapt`` variant (schedule:lr). Curve noise:
the SD of log(MSE_k / MSE_{k-1}) between consecutive validations in the second half of the
run (a curve that has settled has none), and the largest rise between two validations.

    PYTHONPATH=src .venv/bin/python bench/lr_schedule_noise.py --seeds 500 501
    # adaptations from a cosine-annealed v1-net, several learning rates (FT and TGD):
    PYTHONPATH=src .venv/bin/python bench/lr_schedule_noise.py --seeds 500 --skip-scratch \
        --base-schedule cosine --methods tgd ft --adapt constant:1e-3 constant:1e-4 cosine:1e-4
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from tgd.repro.experiments.common import (
    dataset,
    initial_model,
    preset_config,
    run_training,
    simulate,
    validation,
)
from tgd.repro.experiments.presets import get_preset


def curve_stats(curve) -> dict:
    mse = np.array([v for _, _, v in curve], float)
    half = mse[len(mse) // 2:]
    steps = np.diff(np.log(half))
    return {"final": float(mse[-1]), "best": float(mse.min()),
            "final_over_best": float(mse[-1] / mse.min()),
            "log_step_sd": float(steps.std(ddof=1)) if len(steps) > 1 else math.nan,
            "max_rise_pct": float(100 * (np.exp(np.diff(np.log(mse)).max()) - 1)),
            "curve": mse.tolist()}


def run_seed(seed: int, args) -> dict:
    p = get_preset(args.preset, seed=seed, val_every=args.val_every)
    t0 = time.perf_counter()
    studies = simulate(p)
    val = validation(studies, p)
    out = {"seed": seed, "simulate_s": time.perf_counter() - t0}
    init = initial_model(p)
    for sched in () if args.skip_scratch else ("constant", "cosine"):
        cfg = preset_config(p.with_overrides(scratch_lr_schedule=sched), "scratch")
        t = run_training("v2-net", "scratch", init, cfg, dataset(studies.pretrain, "v2", p),
                         val=val)
        out[f"scratch_{sched}"] = curve_stats(t.info["val_curve"])
        print(f"seed {seed} scratch {sched}: {out[f'scratch_{sched}']['final']:.5g} "
              f"sd {out[f'scratch_{sched}']['log_step_sd']:.3g}", flush=True)
    v1 = run_training("v1-net", "scratch", init,
                      preset_config(p.with_overrides(scratch_lr_schedule=args.base_schedule),
                                    "scratch"),
                      dataset(studies.pretrain, "v1", p)).model
    data = dataset(studies.finetune, "v2", p, p.finetune_durations)
    for method in args.methods:
        for variant in args.adapt:
            sched, lr = variant.split(":")
            cfg = preset_config(p, method, stage="finetune")
            cfg.lr_schedule, cfg.lr = sched, float(lr)
            t = run_training(method, method, v1, cfg, data, val=val)
            key = f"{method}_{sched}" + ("" if float(lr) == p.lr else f"_{lr}")
            out[key] = curve_stats(t.info["val_curve"])
            print(f"seed {seed} {key}: {out[key]['final']:.5g} (start "
                  f"{out[key]['curve'][0]:.5g}) sd {out[key]['log_step_sd']:.3g}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[500, 501])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--base-schedule", default="constant",
                    help="the v1-net's schedule (the adaptations start from it)")
    ap.add_argument("--methods", nargs="+", default=["tgd"])
    ap.add_argument("--adapt", nargs="+", default=["constant:1e-3", "cosine:1e-3"],
                    help="adaptation variants, schedule:lr")
    ap.add_argument("--skip-scratch", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/figures/lr_schedule.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res = [run_seed(s, args) for s in args.seeds]
    summary = {}
    for key in [k for k in res[0] if isinstance(res[0][k], dict)]:
        summary[key] = {k: float(np.mean([r[key][k] for r in res]))
                        for k in ("final", "final_over_best", "log_step_sd", "max_rise_pct")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "results": res,
                                          "summary": summary,
                                          "wall_s": time.perf_counter() - t0}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
