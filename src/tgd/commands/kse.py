"""``tgd kse CHECKPOINT``: per-layer KSE report and a kernel-dropping threshold sweep."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import tgd
from tgd.commands._common import S, resolve
from tgd.models.dims import spatial_dims
from tgd.training import evaluate, load_model
from tgd.training.methods import plan_model

DEFAULTS = {"threshold": 0.3, "thresholds": [0.0, 0.3, 0.4, 0.5, 0.6], "val_data": None,
            "val_seeds": None, "version": None, "sim_shape": 128, "sim_slices": 32,
            "sim_bmi": "low", "val_max_items": 64, "json": None, "overwrite": False}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "kse", help="KSE report of a checkpoint and a kernel-dropping threshold sweep",
        description="Per conv layer: KSE scores of its output feature maps (as read by the next "
        "conv) and how many TGD would retrain at --threshold. Then, for each of --thresholds, "
        "the fraction of parameters zeroed by dropping the low-KSE kernels (paper Fig. 4) and, "
        "with validation data, the dropped network's validation MSE.",
    )
    p.add_argument("checkpoint", help="model checkpoint (folder or .json)")
    p.add_argument("--threshold", type=float, default=S, help="report threshold (0.3)")
    p.add_argument("--thresholds", type=float, nargs="+", default=S,
                   help="sweep (default 0 0.3 0.4 0.5 0.6)")
    p.add_argument("--val-data", nargs="+", default=S, metavar="DIR",
                   help="study folders to evaluate the dropped nets on")
    p.add_argument("--val-seeds", nargs="+", type=int, default=S,
                   help="simulated studies to evaluate the dropped nets on")
    p.add_argument("--version", default=S, help="reconstruction (default: the checkpoint's)")
    p.add_argument("--sim-shape", type=int, default=S)
    p.add_argument("--sim-slices", type=int, default=S)
    p.add_argument("--sim-bmi", choices=("low", "high"), default=S)
    p.add_argument("--val-max-items", type=int, default=S, help="slices evaluated (64)")
    p.add_argument("--json", default=S, help="also write the report as JSON to this file")
    p.add_argument("--overwrite", action="store_true", default=S)
    p.add_argument("--config", metavar="TOML", default=S, help="TOML file with these options")
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
            row.update(kse_min=float(k.min()), kse_median=float(k.median()),
                       kse_max=float(k.max()))
        rows.append(row)
    return rows


def run(args) -> int:
    opts = resolve(args, {**DEFAULTS, "checkpoint": None})
    out_json = Path(opts["json"]) if opts.get("json") else None
    if out_json is not None and out_json.exists() and not opts["overwrite"]:
        raise FileExistsError(f"{out_json} exists; refusing to overwrite it (use --overwrite)")
    model, ckpt = load_model(opts["checkpoint"])
    model.eval()
    plan = plan_model(model, opts["threshold"])
    print(plan.summary(model))
    rows = layer_report(model, plan)
    print(f"\n{'layer':<12}{'KSE min':>9}{'median':>9}{'max':>9}{'retrained':>11}")
    for r in rows:
        if "kse_min" in r:
            print(f"{r['layer']:<12}{r['kse_min']:>9.3f}{r['kse_median']:>9.3f}"
                  f"{r['kse_max']:>9.3f}{r['retrained']:>6}/{r['out_channels']}")
    evaluate_fn = None
    if opts.get("val_data") or opts.get("val_seeds"):
        from tgd.training.data import load_studies, noise_adaptive_set

        version = opts.get("version") or (ckpt.meta.get("data") or {}).get("version", "v1")
        sim = {"n_slices": opts["sim_slices"], "shape": opts["sim_shape"],
               "bmi": opts["sim_bmi"]}
        studies, _ = load_studies(paths=opts.get("val_data"), seeds=opts.get("val_seeds"),
                                  version=version, sim=sim)
        val = noise_adaptive_set(studies, version, None, 0, spatial_dims=spatial_dims(model))

        def evaluate_fn(m):
            return evaluate(m, val, max_items=opts["val_max_items"])

    with torch.no_grad():
        sweep = tgd.drop_sweep(model, opts["thresholds"], evaluate=evaluate_fn)
    print(f"\n{'threshold':>9}{'maps dropped':>14}{'% params dropped':>18}"
          + (f"{'val MSE':>12}" if evaluate_fn else ""))
    for r in sweep:
        line = f"{r['threshold']:>9.2f}{r['maps_dropped']:>14}{100 * r['fraction_dropped']:>17.1f}%"
        if evaluate_fn:
            line += f"{r['metric']:>12.5g}"
        print(line)
    if out_json is not None:
        report = {"checkpoint": str(ckpt.path), "threshold": opts["threshold"],
                  "layers": rows, "sweep": sweep, "plan": plan.to_dict()}
        out_json.write_text(json.dumps(report, indent=1) + "\n")
    return 0
