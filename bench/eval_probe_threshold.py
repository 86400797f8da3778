"""Issue 23's evaluation (c): the probe-selected phi on a classification domain shift, against
the nine fixed phi and FT, EWC, L2-SP and LoRA, by the criterion pre-registered in
docs/threshold_selection.md. Results in that document.

The task, the source nets and the 60 labelled target images are those of
``bench/eval_threshold_classification.py`` (same seeds, same data). Auto (probe): the 60
labelled B images are split 40 / 20 (8 / 4 per class); candidates phi = 0.1, ..., 0.9 below the
drop bound (``tgd.plan(..., "auto", tolerance=1.0)`` on the 60 images, unlabelled: 1 x the
logits' RMS); each probe is ``--probe-steps`` TGD steps on the 40, scored by the per-image
cross-entropy on the 20 (``tgd.probe_threshold``); the chosen phi is then trained like every
fixed phi, on all 60 images for ``--adapt-steps``.

Endpoints (per seed, paired): (1) auto's B accuracy minus the source net's, one-sided
superiority; (2) for each fixed phi, "phi dominates auto": phi better on both B and A
accuracy, each a one-sided paired t test, intersection-union p = the larger of the two; Holm over
the nine phi. FT, EWC (lambda 100), L2-SP (lambda 0.01, untuned) and LoRA (rank 4, every conv
and the head, through PEFT) are context.

    PYTHONPATH=src:bench .venv/bin/python bench/eval_probe_threshold.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from eval_threshold_classification import (
    CLASSES,
    SmallCNN,
    accuracy,
    fisher,
    fit,
    seed_data,
    tgd_adapt,
)

import tgd
from tgd.repro import hypotheses as H
from tgd.targeting import Planner
from tgd.training.ewc import EWCPenalty

FIXED = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def lora(source, xb, yb, steps, lr, seed, rank=4):
    from peft import LoraConfig, get_peft_model

    targets = [n for n, m in source.named_modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    wrapped = get_peft_model(copy.deepcopy(source),
                             LoraConfig(r=rank, lora_alpha=rank, target_modules=targets))
    params = [p for p in wrapped.parameters() if p.requires_grad]
    fit(wrapped, xb, yb, steps, lr, params=params, bn_train=False, seed=seed)
    frac = sum(p.numel() for p in params) / sum(p.numel() for p in source.parameters())
    return wrapped.merge_and_unload(), frac


def split(yb, per_class_val=4):
    tr, va = [], []
    for c in range(len(CLASSES)):
        idx = torch.nonzero(yb == c).flatten()
        va += idx[:per_class_val].tolist()
        tr += idx[per_class_val:].tolist()
    return torch.tensor(tr), torch.tensor(va)


def run_seed(seed: int, args) -> dict:
    torch.manual_seed(seed)
    xa, ya, xa_test, ya_test, xb_test, yb_test, xb, yb = seed_data(seed, args.n_source)
    source = fit(SmallCNN(), xa, ya, args.source_steps, 2e-3, seed=seed, batch=64,
                 weight_decay=args.weight_decay)
    steps, lr = args.adapt_steps, args.adapt_lr
    rows = []

    def add(name, model, fraction, **extra):
        rows.append({"method": name, "target": accuracy(model, xb_test, yb_test),
                     "source": accuracy(model, xa_test, ya_test), "fraction": fraction,
                     **extra})
        print(f"  {name:<24} B {rows[-1]['target']:.3f}  A {rows[-1]['source']:.3f}  "
              f"retrained {100 * fraction:.1f}%", flush=True)

    print(f"seed {seed}", flush=True)
    add("source net", source, 0.0)
    for phi in FIXED:
        p = tgd.plan(source, phi)
        add(f"TGD phi={phi:g}", tgd_adapt(source, p, xb, yb, steps, lr, seed),
            p.trainable_fraction(source), phi=phi)
    # auto (probe): choose on a 40 / 20 split of the 60 labelled images, then train on all 60
    t0 = time.perf_counter()
    tr, va = split(yb)
    cap_plan = tgd.plan(source, "auto", images=xb, tolerance=args.cap_tolerance)

    def probe_adapt(model, plan):
        handle = tgd.attach(model, plan, mode="parameter")
        fit(model, xb[tr], yb[tr], args.probe_steps, lr,
            params=list(handle.trainable_parameters()), bn_train=False, seed=seed)
        return handle.detach()

    def losses(model):
        model.eval()
        with torch.no_grad():
            return F.cross_entropy(model(xb[va]), yb[va], reduction="none").double()

    sel = tgd.probe_threshold(Planner.build(source), probe_adapt, losses,
                              iterations=args.probe_steps, cap=cap_plan.threshold,
                              cap_reason=cap_plan.selection["reason"])
    chosen = tgd.plan(source, sel.chosen) if sel.maps else None
    model = tgd_adapt(source, chosen, xb, yb, steps, lr, seed) if chosen else source
    add("TGD auto (probe)", model, sel.fraction, phi=sel.chosen, maps=sel.maps,
        selection_s=time.perf_counter() - t0, selection=sel.to_dict())
    print(f"    {sel.reason}", flush=True)
    add("FT", fit(copy.deepcopy(source), xb, yb, steps, lr, seed=seed), 1.0)
    fis = fisher(source, xa, ya)
    anchor = {k: p.detach().clone() for k, p in source.named_parameters()}
    add("EWC lambda=100", fit(copy.deepcopy(source), xb, yb, steps, lr, seed=seed,
                              penalty=EWCPenalty(fis, anchor, 100.0)), 1.0)
    unit = {k: torch.ones_like(v) for k, v in fis.items()}
    add("L2-SP lambda=0.01", fit(copy.deepcopy(source), xb, yb, steps, lr, seed=seed,
                                 penalty=EWCPenalty(unit, anchor, 0.01)), 1.0)
    merged, frac = lora(source, xb, yb, steps, lr, seed)
    add("LoRA r=4", merged, frac)
    return {"seed": seed, "rows": rows}


def analyse(results: list[dict]) -> dict:
    """The pre-registered endpoints: auto vs the source net on B; each fixed phi vs auto."""
    def per(method, key):
        return [next(r for r in res["rows"] if r["method"] == method)[key] for res in results]

    auto_b, auto_a = np.array(per("TGD auto (probe)", "target")), np.array(
        per("TGD auto (probe)", "source"))
    d = 100 * (auto_b - np.array(per("source net", "target")))
    sup = H.superiority(d.tolist(), "greater", 0.05)
    adapts = {"effect_points": sup.estimate, "ci95": list(sup.ci95),
              "p": sup.p_value, "verdict": sup.verdict, "per_seed": d.tolist()}
    dom = []
    for phi in FIXED:
        db = 100 * (np.array(per(f"TGD phi={phi:g}", "target")) - auto_b)
        da = 100 * (np.array(per(f"TGD phi={phi:g}", "source")) - auto_a)
        tb, ta = H.superiority(db.tolist(), "greater", 0.05), H.superiority(da.tolist(),
                                                                            "greater", 0.05)
        dom.append({"phi": phi, "b_minus_auto": tb.estimate, "b_ci": list(tb.ci95),
                    "a_minus_auto": ta.estimate, "a_ci": list(ta.ci95),
                    "p_b": tb.p_value, "p_a": ta.p_value, "p": max(tb.p_value, ta.p_value)})
    fam = H.holm([x["p"] for x in dom], 0.05)
    for x, adj, rej in zip(dom, fam.adjusted, fam.rejected, strict=True):
        x["p_holm"], x["dominates_auto"] = adj, bool(rej)
    return {"auto_adapts": adapts, "dominance": dom,
            "dominated": any(x["dominates_auto"] for x in dom)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n-source", type=int, default=4000)
    ap.add_argument("--source-steps", type=int, default=600)
    ap.add_argument("--adapt-steps", type=int, default=150)
    ap.add_argument("--adapt-lr", type=float, default=1e-3)
    ap.add_argument("--probe-steps", type=int, default=50)
    ap.add_argument("--cap-tolerance", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/threshold_selection/probe_classification.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results = [run_seed(s, args) for s in args.seeds]
    analysis = analyse(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "results": results,
                               "analysis": analysis, "wall_s": time.perf_counter() - t0},
                              indent=1) + "\n")
    print(json.dumps(analysis, indent=1))
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
