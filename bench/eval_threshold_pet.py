"""Threshold selection on the PET v1 -> v2 fine-tuning task, at a size a shared 2-core CPU
affords (the reproduction's pieces from tgd.repro.experiments.common; results in
docs/threshold_selection.md).

Per seed: simulate the studies, train the v1-net (DnCNN, scratch), adapt it to the low-BMI v2
fine-tuning studies with FT, EWC, TGD at phi 0.3 / 0.5 / 0.7 and TGD at auto-phi (global and per
layer; tolerance 0.1 x the input noise estimated from the v2 fine-tuning inputs, which are the
unlabelled images of the new domain), then denoise the 60-s realizations of the v2 low-BMI test
study (adaptation) and the v1 low-BMI test study (retention): PSNR / NRMSE vs the 600-s image,
lesion bias, liver CoV. Also the KSE-vs-random check of the v1-net on the v2 inputs.

    PYTHONPATH=src .venv/bin/python bench/eval_threshold_pet.py --seeds 0 1 \
        --out docs/threshold_selection     # writes pet.json and pet.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import tgd
from tgd.repro.experiments.common import (
    dataset,
    denoise_ensemble,
    fisher_of,
    initial_model,
    preset_config,
    run_training,
    scale_of,
    simulate,
)
from tgd.repro.experiments.presets import get_preset
from tgd.repro.quality import ensemble_quality
from tgd.targeting.importance import as_images
from tgd.targeting.premise import kse_vs_random
from tgd.training.methods import planning_input


def evaluate(model, studies) -> dict:
    out = {}
    for key, version in (("target", "v2"), ("source", "v1")):
        st = studies.test["low"]
        den = denoise_ensemble(model, studies.realizations[("low", version)],
                               scale_of(st, version))
        q = ensemble_quality(st, version, den)
        out[key] = {k: q[k] for k in ("psnr_db", "nrmse", "lesion_bias_pct", "liver_cov_pct")
                    if k in q}
    return out


def run_seed(seed: int, args) -> dict:
    preset = get_preset(
        "quick", shape=args.shape, n_slices=args.slices, n_v1_low=2, n_v1_high=2, n_ft=2,
        n_unseen=0, realizations=args.realizations, width=args.width, depth=8,
        scratch_iterations=args.scratch_iterations,
        finetune_iterations=args.finetune_iterations, patch_size=32, seed=seed, threads=1)
    t0 = time.perf_counter()
    studies = simulate(preset)
    cfg = preset_config(preset, "scratch")
    v1 = run_training("v1-net", "scratch", initial_model(preset), cfg,
                      dataset(studies.pretrain, "v1", preset)).model
    print(f"seed {seed}: simulate + v1-net {time.perf_counter() - t0:.0f} s", flush=True)
    ft_data = dataset(studies.finetune, "v2", preset)
    rows = [{"method": "v1-net", "fraction": 0.0, **evaluate(v1, studies)}]

    def add(name, trained, fraction, **extra):
        rows.append({"method": name, "fraction": fraction, **evaluate(trained.model, studies),
                     **extra})
        r = rows[-1]
        print(f"  {name:<22} v2 PSNR {r['target']['psnr_db']:.2f}  v1 PSNR "
              f"{r['source']['psnr_db']:.2f}  retrained {100 * fraction:.1f}%", flush=True)

    plans = {}
    if args.baselines:
        ft = run_training("FT", "ft", v1, preset_config(preset, "ft", stage="finetune"), ft_data)
        add("FT", ft, ft.info["trained_fraction"])
        fisher, _ = fisher_of(v1, dataset(studies.pretrain, "v1", preset), preset)
        ewc = run_training("EWC", "ewc", v1, preset_config(preset, "ewc", stage="finetune"),
                           ft_data, fisher=fisher)
        add("EWC", ewc, 1.0)
        plans = {f"TGD phi={phi}": tgd.plan(v1, phi, example_input=planning_input(v1))
                 for phi in (0.3, 0.5, 0.7)}
    images = as_images(ft_data, v1, 8)
    autos = []
    for score in args.scores:
        tag = "" if score == "kse" else f" {score}"
        autos += [(f"TGD auto global{tag}", {"score": score}),
                  (f"TGD auto per-layer{tag}", {"per_layer": True, "score": score})]
    for name, kw in autos:
        t1 = time.perf_counter()
        plans[name] = tgd.plan(v1, "auto", images=images, noise_level="estimate",
                               example_input=planning_input(v1), **kw)
        plans[name].selection["selection_s"] = time.perf_counter() - t1
    for name, p in plans.items():
        if not any(m.any() for m in p.masks.values()):
            rows.append({**rows[0], "method": name, "fraction": 0.0, "selection": p.selection,
                         "skipped": "retrains nothing"})
            print(f"  {name:<22} retrains nothing: {p.selection['reason']}", flush=True)
            continue
        t = run_training(name, "tgd", v1, preset_config(preset, "tgd", stage="finetune"),
                         ft_data, plan=p)
        add(name, t, p.trainable_fraction(v1), phi=p.threshold, selection=p.selection)
    premise = kse_vs_random(v1, images, threshold=0.3, n_random=10, seed=seed,
                            example_input=planning_input(v1))
    print(f"  premise: {premise['verdict']}", flush=True)
    return {"seed": seed, "rows": rows, "premise": premise, "preset": preset.to_dict(),
            "wall_s": time.perf_counter() - t0}


def figure(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = [r["method"] for r in results[0]["rows"]]
    for m in methods:
        per = [next(r for r in res["rows"] if r["method"] == m) for res in results]
        x = np.array([p["target"]["psnr_db"] for p in per])
        y = np.array([p["source"]["psnr_db"] for p in per])
        color = ("tab:red" if m == "FT" else "tab:orange" if m == "EWC" else "tab:gray"
                 if m == "v1-net" else "tab:green" if "auto" in m else "tab:blue")
        ax.plot(x, y, ".", color=color, alpha=0.4)
        ax.plot(x.mean(), y.mean(), "o", color=color)
        frac = np.mean([p["fraction"] for p in per])
        ax.annotate(f"{m.replace('TGD ', '')} ({100 * frac:.0f}%)", (x.mean(), y.mean()),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("adaptation: PSNR on v2 low-BMI test (dB)")
    ax.set_ylabel("retention: PSNR on v1 low-BMI test (dB)")
    ax.set_title(f"PET v1 -> v2 fine-tuning, small size; {len(results)} seeds (dots) and mean "
                 "(% = parameters retrained)", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--shape", type=int, default=64)
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--realizations", type=int, default=5)
    ap.add_argument("--scratch-iterations", type=int, default=800)
    ap.add_argument("--finetune-iterations", type=int, default=300)
    ap.add_argument("--scores", nargs="+", default=["kse"],
                    choices=("kse", "ablation", "taylor"), help="scores of the auto-phi rows")
    ap.add_argument("--no-baselines", dest="baselines", action="store_false",
                    help="skip FT, EWC and fixed phi (only the auto rows)")
    ap.add_argument("--tag", default="pet", help="output names OUT/TAG.json and OUT/TAG.png")
    ap.add_argument("--out", default="docs/threshold_selection")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run_seed(s, args) for s in args.seeds]
    (out / f"{args.tag}.json").write_text(json.dumps({"settings": vars(args), "results": results},
                                             indent=1, default=float) + "\n")
    figure(results, out / f"{args.tag}.png")
    print(f"\n{'method':<24}{'v2 PSNR':>9}{'v1 PSNR':>9}{'v2 NRMSE':>10}{'v1 NRMSE':>10}"
          f"{'retrained':>10}")
    for m in [r["method"] for r in results[0]["rows"]]:
        per = [next(r for r in res["rows"] if r["method"] == m) for res in results]
        print(f"{m:<24}{np.mean([p['target']['psnr_db'] for p in per]):>9.2f}"
              f"{np.mean([p['source']['psnr_db'] for p in per]):>9.2f}"
              f"{np.mean([p['target']['nrmse'] for p in per]):>10.4f}"
              f"{np.mean([p['source']['nrmse'] for p in per]):>10.4f}"
              f"{100 * np.mean([p['fraction'] for p in per]):>9.1f}%")


if __name__ == "__main__":
    main()
