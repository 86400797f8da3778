"""``tgd kse CHECKPOINT``: per-layer KSE report and a kernel-dropping threshold sweep; with
validation data also the automatic threshold (``--threshold auto``, with its curve as a figure)
and whether KSE beats random map selection for this network (and which score to use)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

import tgd
from tgd.commands.common import (
    add_config_option,
    add_options,
    check_checkpoint,
    check_writable,
    field_names,
    parse,
)
from tgd.data.io import atomic_write
from tgd.models import model_traits
from tgd.targeting.importance import as_images
from tgd.training import evaluate, load_model
from tgd.training.config import TrainConfig, option
from tgd.training.driver import print_selection, threshold_options
from tgd.training.methods import plan_model, planning_input
from tgd.training.options import DataOptions, OptionSet, OutputOptions, ThresholdOptions


@dataclass
class KseOptions:
    """What ``tgd kse`` reports on and where it writes."""

    checkpoint: str | None = option(None, "model checkpoint (folder or .json)")
    thresholds: list[float] = option(factory=lambda: [0.0, 0.3, 0.4, 0.5, 0.6], help="sweep")
    random_draws: int = option(10, "with validation data: random map selections KSE is "
                               "compared with")
    premise: bool = option(True, "skip the KSE-vs-random check")
    figure: str | None = option(None, "--threshold auto: draw the selection curve here",
                                metavar="PNG", none="beside --json")
    json: str | None = option(None, "also write the report as JSON to this file")
    overwrite: bool = option(False, "replace an existing --json report or --figure")


KSE = OptionSet(KseOptions, (TrainConfig, ("threshold",)), ThresholdOptions,
                (DataOptions, ("val_data",)),
                (OutputOptions, ("val_max_items",)), val_max_items=64)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "kse",
        description="Per conv layer: KSE scores of its output feature maps (as read by the next "
        "conv) and how many TGD would retrain at --threshold. Then, for each of --thresholds, "
        "the fraction of parameters zeroed by dropping the low-KSE kernels (paper Fig. 4) and, "
        "with validation data (unlabelled images of the new domain), the dropped network's "
        "validation MSE, the automatic threshold (--threshold auto) and whether KSE beats "
        "random map selection for this network.",
    )
    add_options(p, KSE, ("checkpoint",), positional=("checkpoint",))
    add_options(p, KSE, ("threshold", *field_names(ThresholdOptions), "thresholds", "val_data",
                         "val_max_items", "random_draws", "premise", "figure", "json",
                         "overwrite"))
    add_config_option(p)
    p.set_defaults(func=run)


def layer_report(model, plan) -> list[dict]:
    rows = []
    counts = plan.parameter_counts(model)
    for name, lp in plan.layers.items():
        row = {"layer": name, "role": lp.role, "out_channels": lp.out_channels,
               "retrained": lp.n_targeted, "consumer": lp.consumer,
               "params_retrained": counts[name][0], "params": counts[name][1]}
        if lp.kse is not None:
            k = lp.kse.double()
            k = k[torch.isfinite(k)]
            if k.numel():
                row.update(kse_min=float(k.min()), kse_median=float(k.median()),
                           kse_max=float(k.max()))
            else:  # the output layer: no conv reads its maps, so they have no score
                row.update(kse_min=None, kse_median=None, kse_max=None)
        rows.append(row)
    return rows


def plot_selection(sel: dict, path: Path) -> Path:
    """The selection curve: RMS output change against phi, the tolerance and the choice."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    if sel["mode"] == "global":
        pts = sorted(sel["curve"], key=lambda p: p["threshold"])
        ax.plot([p["threshold"] for p in pts], [p["change"] for p in pts], "o-", ms=3,
                label="all layers")
        ax.axvline(sel["chosen"], color="tab:green", ls=":", label=f"chosen phi "
                   f"{sel['chosen']:.3f}")
    else:
        for name, pts in (sel.get("layer_curves") or {}).items():
            ax.plot([p["threshold"] for p in pts], [p["change"] for p in pts], ".-", lw=0.8,
                    label=f"{name} (phi {sel['chosen'].get(name, 0):.2f})")
    if sel.get("tolerance") is not None:
        ax.axhline(sel["tolerance"], color="tab:red", ls="--", label="tolerance")
    ax.set_xlabel(f"threshold phi ({sel['score']})")
    ax.set_ylabel("RMS output change")
    ax.set_title(f"{sel['maps']} maps, {100 * sel['fraction_retrained']:.1f}% of params "
                 "retrained", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return atomic_write(path, lambda p: fig.savefig(p, dpi=120))


def premise_report(model, images, threshold: float, n_random: int) -> dict:
    """KSE vs random maps and the three scores at the same number of maps, with a verdict."""
    from tgd.targeting.premise import compare_scores, kse_vs_random

    phi = threshold if threshold > 0 else 0.3
    vs = kse_vs_random(model, images, phi, n_random, example_input=planning_input(model))
    cmp = compare_scores(model, images, phi, example_input=planning_input(model))
    if vs["beats_random"]:
        use = "kse"
        why = "KSE singles out maps that matter less than random ones: use it (no data needed)"
    else:
        use = min(("ablation", "taylor"), key=lambda s: cmp["changes"][s])
        why = (f"KSE does not beat random maps for this net: use score={use} (its "
               f"{cmp['maps']} lowest maps change the output by "
               f"{100 * cmp['changes'][use]:.2f}%)")
    return {"kse_vs_random": vs, "scores": cmp, "recommended_score": use, "why": why}


def run(args) -> int:
    opts = parse(args, KSE)
    out_json = check_writable(opts["json"], "--json") if opts.get("json") else None
    check_checkpoint(opts.get("checkpoint"), "CHECKPOINT")
    if out_json is not None and out_json.exists() and not opts["overwrite"]:
        raise FileExistsError(f"{out_json} exists; refusing to overwrite it (use --overwrite)")
    figure = opts.get("figure")
    if figure is None and out_json is not None:
        figure = out_json.with_suffix(".png")
    threshold, plan_opts = threshold_options(opts)
    has_val = bool(opts.get("val_data"))
    if threshold == "auto" or plan_opts["score"] != "kse":
        if not has_val:
            raise ValueError("--threshold auto and --score ablation/taylor need unlabelled "
                             "images of the new domain: give --val-data (a manifest)")
    if threshold == "auto" and figure is not None and Path(figure).exists() \
            and not opts["overwrite"]:
        raise FileExistsError(f"{figure} exists; refusing to overwrite it (use --overwrite)")
    if threshold == "auto" and figure is not None:
        check_writable(figure, "--figure" if opts.get("figure") else "--figure (beside --json)")
    model, ckpt = load_model(opts["checkpoint"])
    model.eval()
    val = images = None
    if has_val:
        from tgd.data.manifest import load_pairs
        from tgd.training.data import paired_set

        pairs, _ = load_pairs(opts["val_data"], "validation")
        if pairs is None:
            pairs, _ = load_pairs(opts["val_data"])
        val = paired_set(pairs, None, 0, spatial_dims=model_traits(model).spatial_dims)
        images = as_images(val, model, opts["auto_images"])
    if threshold == "auto":
        plan = plan_model(model, "auto", images=images, score=plan_opts["score"],
                          per_layer=plan_opts["per_layer"], tolerance=plan_opts["tolerance"],
                          noise_level="estimate", budget=plan_opts["budget"], full_curve=True)
    else:
        plan = plan_model(model, threshold, **({"images": images, **plan_opts}
                                               if plan_opts["score"] != "kse" else {}))
    print(plan.summary(model))
    rows = layer_report(model, plan)
    label = "KSE min" if plan.score == "kse" else f"{plan.score} min"
    print(f"\n{'layer':<12}{label:>10}{'median':>9}{'max':>9}{'retrained':>11}")
    for r in rows:
        if "kse_min" not in r:
            continue
        if r["kse_min"] is None:
            print(f"{r['layer']:<12}{'-':>10}{'-':>9}{'-':>9}{r['retrained']:>6}/"
                  f"{r['out_channels']}  output layer (not scored)")
        else:
            print(f"{r['layer']:<12}{r['kse_min']:>10.3f}{r['kse_median']:>9.3f}"
                  f"{r['kse_max']:>9.3f}{r['retrained']:>6}/{r['out_channels']}")
    if plan.selection:
        print()
        print_selection(plan)
        if figure is not None:
            print(f"selection curve: {plot_selection(plan.selection, Path(figure))}")
    evaluate_fn = None
    if val is not None:

        def evaluate_fn(m):
            return evaluate(m, val, max_items=opts["val_max_items"])

    with torch.no_grad():
        sweep = tgd.drop_sweep(model, opts["thresholds"], evaluate=evaluate_fn,
                               example_input=planning_input(model))
    print(f"\n{'threshold':>9}{'maps dropped':>14}{'% params dropped':>18}"
          + (f"{'val MSE':>12}" if evaluate_fn else ""))
    for r in sweep:
        line = f"{r['threshold']:>9.2f}{r['maps_dropped']:>14}{100 * r['fraction_dropped']:>17.1f}%"
        if evaluate_fn:
            line += f"{r['metric']:>12.5g}"
        print(line)
    premise = None
    if images is not None and opts["premise"]:
        premise = premise_report(model, images, plan.threshold, int(opts["random_draws"]))
        vs = premise["kse_vs_random"]
        print(f"\nKSE vs random maps (threshold {vs['threshold']:g}, {vs['maps']} maps, "
              f"{vs['images']} images): {vs['verdict']} (p = {vs['p_value']:.2f})")
        print("same number of maps dropped, relative RMS output change: " + ", ".join(
            f"{k} {100 * v:.2f}%" for k, v in premise["scores"]["changes"].items()))
        print(f"recommended score: {premise['recommended_score']}: {premise['why']}")
    if out_json is not None:
        report = {"checkpoint": str(ckpt.path), "threshold": plan.threshold,
                  "layers": rows, "sweep": sweep, "plan": plan.to_dict(), "premise": premise}
        out_json.write_text(json.dumps(report, indent=1) + "\n")
    return 0
