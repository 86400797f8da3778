"""Choose the pre-training weight decay (the paper's regulariser R) by measurement.

For each weight decay and seed: simulate the quick preset's studies, pre-train the v1-net, and
measure (a) the premise of TGD: the image change when the maps with KSE < 0.3 are dropped
against dropping as many random maps, (b) the share of parameters dropped, (c) the net's own
quality on the v1 low-BMI test study (PSNR, liver CoV). Prints one JSON line per run and a
table; results go in docs/reproduction.md.

    python bench/weight_decay_sweep.py --decays 0 1e-4 1e-3 3e-3 --seeds 0 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from tgd.repro.experiments import threshold
from tgd.repro.experiments.common import (
    BaseNets,
    dataset,
    denoise_ensemble,
    initial_model,
    preset_config,
    run_training,
    scale_of,
    simulate,
)
from tgd.repro.experiments.presets import get_preset
from tgd.repro.quality import ensemble_quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decays", type=float, nargs="+", default=[0.0, 1e-4, 1e-3, 3e-3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--preset", default="quick")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        base = dataclasses.replace(get_preset(args.preset), seed=seed, realizations=6,
                                   random_draws=5, thresholds=(0.3,))
        studies = simulate(base)
        for wd in args.decays:
            p = dataclasses.replace(base, weight_decay=wd)
            t0 = time.perf_counter()
            v1 = run_training("v1-net", "scratch", initial_model(p), preset_config(p, "scratch"),
                              dataset(studies.pretrain, "v1", p))
            th = threshold.run(p, studies, BaseNets(v1, v1))
            st = studies.test["low"]
            q = ensemble_quality(st, "v1", denoise_ensemble(v1.model,
                                                            studies.realizations[("low", "v1")],
                                                            scale_of(st, "v1")))
            rnd = [d["nrmse_vs_original"] for d in th["random"]["draws"]]
            r = {"seed": seed, "weight_decay": wd,
                 "kse_nrmse_pct": 100 * th["rows"][0]["nrmse_vs_original"],
                 "random_nrmse_pct_mean": 100 * float(np.mean(rnd)),
                 "random_nrmse_pct_min": 100 * float(np.min(rnd)),
                 "dropped_pct": 100 * th["rows"][0]["fraction_dropped"],
                 "psnr_db": q["psnr_db"], "liver_cov_pct": q["liver_cov_pct"],
                 "lesion_bias_vs600_pct": q["lesion_bias_vs600_pct"],
                 "seconds": time.perf_counter() - t0}
            rows.append(r)
            print(json.dumps(r), flush=True)
    print("\n| weight decay | seed | KSE drop NRMSE % | random drop NRMSE % (mean, min) | "
          "params dropped % | PSNR dB | liver CoV % |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['weight_decay']:g} | {r['seed']} | {r['kse_nrmse_pct']:.2f} | "
              f"{r['random_nrmse_pct_mean']:.2f}, {r['random_nrmse_pct_min']:.2f} | "
              f"{r['dropped_pct']:.1f} | {r['psnr_db']:.2f} | {r['liver_cov_pct']:.2f} |")


if __name__ == "__main__":
    main()
