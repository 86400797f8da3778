"""Issue 23's evaluation (a): the probe-selected phi on the reproduction's v1 -> v2 fine-tuning,
against TGD at the nine fixed phi, by the criterion pre-registered in docs/threshold_selection.md.
Results in that document.

Each replicate is a replicate of the quick preset (same seed, so the same studies, v1-net and
TGD-net (auto) as the committed report's replicate of that seed): the v1-net, TGD (parameter
mode) at phi = 0.1, ..., 0.9 and TGD-net (auto, probe rule) from it, each evaluated as the
report evaluates its nets. Adaptation: NRMSE vs the noiseless reconstruction on the v2 low-BMI
test, relative to the v1-net's (%); retention: the same on the v1 low-BMI test. "phi dominates
auto": lower on both, each a one-sided paired t test, intersection-union p = the larger of the
two, Holm over the nine phi. FT, EWC, L2-SP and LoRA for the same replicates are in the
committed report (docs/reproduction/).

    PYTHONPATH=src .venv/bin/python bench/eval_probe_pet.py --seeds 0 1 [--out FILE]
    PYTHONPATH=src .venv/bin/python bench/eval_probe_pet.py --merge A.json B.json --out FILE
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tgd.repro import hypotheses as H
from tgd.repro.experiments.common import (
    dataset,
    preset_config,
    pretrain,
    run_training,
    simulate,
    validation,
)
from tgd.repro.experiments.finetuning import adapt_auto, evaluate_nets
from tgd.repro.experiments.presets import get_preset

FIXED = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LOW, OLD = "v2 low BMI", "v1 low BMI"


def run_seed(seed: int, preset_name: str) -> dict:
    p = get_preset(preset_name, seed=seed)
    t0 = time.perf_counter()
    studies = simulate(p)
    base = pretrain(p, studies)
    data = dataset(studies.finetune, "v2", p, p.finetune_durations)
    val = validation(studies, p)
    nets = {"v1-net": base.v1}
    for phi in FIXED:
        cfg = preset_config(p.with_overrides(threshold=phi), "tgd", stage="finetune")
        nets[f"TGD phi={phi:g}"] = run_training(f"TGD phi={phi:g}", "tgd", base.v1.model, cfg,
                                                data, val=val)
    nets["TGD auto (probe)"] = adapt_auto(p, base.v1.model, data, val, False)
    rows, _ = evaluate_nets(nets, studies)
    keep = ("net", "test", "nrmse", "lesion_bias_vsnl_pct", "liver_cov_pct")
    info = {n: {k: v for k, v in t.info.items() if k in (
        "trained_fraction", "threshold", "auto_threshold", "auto_reason", "auto_probe",
        "diverged")} for n, t in nets.items()}
    return {"seed": seed, "rows": [{k: r.get(k) for k in keep} for r in rows], "info": info,
            "wall_s": time.perf_counter() - t0}


def _rel(rep, net, test):
    row = {(r["net"], r["test"]): r for r in rep["rows"]}
    return 100 * (row[(net, test)]["nrmse"] - row[("v1-net", test)]["nrmse"]) / \
        row[("v1-net", test)]["nrmse"]


def analyse(reps: list[dict]) -> dict:
    auto_new = np.array([_rel(r, "TGD auto (probe)", LOW) for r in reps])
    auto_old = np.array([_rel(r, "TGD auto (probe)", OLD) for r in reps])
    sup = H.superiority(auto_new.tolist(), "less", 0.05)
    out = {"replicates": len(reps),
           "auto_adapts": {"effect_pct": sup.estimate, "ci95": list(sup.ci95),
                           "p": sup.p_value, "verdict": sup.verdict,
                           "per_replicate": auto_new.tolist()},
           "auto_retention_pct": auto_old.tolist(), "points": {}, "dominance": []}
    for name in ["TGD auto (probe)"] + [f"TGD phi={phi:g}" for phi in FIXED]:
        new = [_rel(r, name, LOW) for r in reps]
        old = [_rel(r, name, OLD) for r in reps]
        out["points"][name] = {"v2_nrmse_rel_pct": float(np.mean(new)),
                               "v1_nrmse_rel_pct": float(np.mean(old)),
                               "fraction": float(np.mean([r["info"][name]["trained_fraction"]
                                                          for r in reps]))}
    for phi in FIXED:
        name = f"TGD phi={phi:g}"
        dn = [_rel(r, name, LOW) - a for r, a in zip(reps, auto_new, strict=True)]
        do = [_rel(r, name, OLD) - a for r, a in zip(reps, auto_old, strict=True)]
        tn, to = H.superiority(dn, "less", 0.05), H.superiority(do, "less", 0.05)
        out["dominance"].append({"phi": phi, "v2_minus_auto": tn.estimate,
                                 "v2_ci": list(tn.ci95), "v1_minus_auto": to.estimate,
                                 "v1_ci": list(to.ci95), "p_v2": tn.p_value,
                                 "p_v1": to.p_value, "p": max(tn.p_value, to.p_value)})
    fam = H.holm([x["p"] for x in out["dominance"]], 0.05)
    for x, adj, rej in zip(out["dominance"], fam.adjusted, fam.rejected, strict=True):
        x["p_holm"], x["dominates_auto"] = adj, bool(rej)
    out["dominated"] = any(x["dominates_auto"] for x in out["dominance"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", nargs="+", help="only merge the replicates of these files")
    ap.add_argument("--out", default="docs/threshold_selection/probe_pet.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.merge:
        reps = [r for f in args.merge for r in json.loads(Path(f).read_text())["replicates"]]
    else:
        reps = []
        for s in args.seeds:
            reps.append(run_seed(s, args.preset))
            print(f"seed {s}: {reps[-1]['wall_s']:.0f} s", flush=True)
    rec = {"settings": vars(args), "replicates": reps}
    if len(reps) >= 2:
        rec["analysis"] = analyse(reps)
        print(json.dumps(rec["analysis"], indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
