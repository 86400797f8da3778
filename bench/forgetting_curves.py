"""Forgetting curves (issue 22): the retention metric against fine-tuning iterations for FT,
TGD, EWC, L2-SP, LoRA and the forgetting positive control, on the quick preset's replicates.
Results in docs/reproduction.md ("Forgetting curves").

Per replicate (the quick preset's, same seed, so the same studies and v1-net as the committed
report's replicate of that seed): every adapted net is trained as the reproduction trains it,
and validated every ``--every`` iterations on the v1 low-BMI test study: its 60-s images as
input, the **noiseless** v1 reconstruction as target (MSE over the 8 slices, each normalised
from its input). The curve starts at the v1-net's own value (iteration 0); a rising curve is
knowledge lost.

    PYTHONPATH=src .venv/bin/python bench/forgetting_curves.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tgd.data import NoiseAdaptiveDataset, PairedVolumes
from tgd.repro.datasets import study_scale
from tgd.repro.experiments.common import (
    NORMALIZE,
    Validation,
    dataset,
    fisher_of,
    preset_config,
    run_training,
    simulate,
)
from tgd.repro.experiments.common import pretrain as pretrain_nets
from tgd.repro.experiments.finetuning import CONTROL, METHOD_OF
from tgd.repro.experiments.presets import get_preset

NETS = ("FT-net", "TGD-net (parameter)", "EWC-net", "L2-SP-net", "LoRA-net", CONTROL)


def retention_set(study, seed: int) -> NoiseAdaptiveDataset:
    """v1 low-BMI test study: its 60-s image -> its noiseless v1 reconstruction."""
    pair = PairedVolumes([study.images[("v1", 60)]], study.noiseless("v1"),
                         scales=study_scale(study, "v1", NORMALIZE), levels=(60,),
                         name=f"study {study.seed} (noiseless target)")
    return NoiseAdaptiveDataset([pair], patch_size=None, seed=seed)


def run_seed(seed: int, args) -> dict:
    p = get_preset(args.preset, seed=seed)
    t0 = time.perf_counter()
    studies = simulate(p)
    v1 = pretrain_nets(p, studies).v1.model
    data = dataset(studies.finetune, "v2", p, p.finetune_durations)
    ret = Validation(retention_set(studies.test["low"], p.seed), args.every, 64)
    out = {"seed": seed, "curves": {}}
    for name in NETS:
        if name == CONTROL:
            cfg = preset_config(p, "ft", stage="finetune")
            cfg.ft_blocks, cfg.lr = p.depth, p.lr * p.control_lr_factor
            method = "ft"
        elif name.startswith("TGD"):
            cfg, method = preset_config(p, "tgd", stage="finetune"), "tgd"
        else:
            method = METHOD_OF[name]
            cfg = preset_config(p, method, stage="finetune")
        fisher = None
        if method == "ewc":
            fisher, _ = fisher_of(v1, dataset(studies.pretrain, "v1", p), p)
        t = run_training(name, method, v1, cfg.validate(), data, fisher=fisher, val=ret)
        out["curves"][name] = [[it, mse] for it, _, mse in t.info["val_curve"]]
        c = out["curves"][name]
        print(f"seed {seed} {name:<34} v1 MSE {c[0][1]:.5g} -> {c[-1][1]:.5g} "
              f"({100 * (c[-1][1] / c[0][1] - 1):+.1f} %)", flush=True)
    out["wall_s"] = time.perf_counter() - t0
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/figures/forgetting_curves.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reps = [run_seed(s, args) for s in args.seeds]
    summary = {}
    for name in NETS:
        rel = [[100 * (mse / r["curves"][name][0][1] - 1) for _, mse in r["curves"][name]]
               for r in reps]
        summary[name] = {"iterations": [it for it, _ in reps[0]["curves"][name]],
                         "mean_rel_change_pct": np.mean(rel, axis=0).tolist()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "replicates": reps,
                                          "summary": summary}, indent=1) + "\n")
    figure(summary, Path(args.out).with_suffix(".png"))


def figure(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, s in summary.items():
        ax.plot(s["iterations"], s["mean_rel_change_pct"], marker=".", label=name)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_yscale("symlog", linthresh=20)  # the control's peak would flatten the others
    ax.set_xlabel("fine-tuning iterations")
    ax.set_ylabel("v1 test MSE vs noiseless, % change from the v1-net")
    ax.set_title("forgetting curves (mean over replicates; up = knowledge lost)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
