"""``tgd finetune``: adapt a pre-trained net to new data with TGD, FT or EWC."""

from __future__ import annotations

import torch

from tgd.commands._common import (
    THRESHOLD_DEFAULTS,
    TRAIN_DEFAULTS,
    S,
    add_data_options,
    add_threshold_options,
    add_train_options,
    build_datasets,
    checkpoint_dims,
    distribute,
    plan_for_command,
    prepare_out,
    resolve,
    resume_plan,
    run_and_save,
    share_plan,
    sim_kwargs,
    start,
    threshold_options,
    train_config,
)
from tgd.commands._tod import TOD_DEFAULTS, add_tod_options, attach_objective
from tgd.models.registry import arch_settings
from tgd.targeting.noise_level import estimate_noise_level
from tgd.training import estimate_fisher, load_fisher, load_model, prepare
from tgd.training.data import load_studies, noise_adaptive_set

DEFAULTS = {
    **TRAIN_DEFAULTS, **THRESHOLD_DEFAULTS, "version": "v2", "checkpoint": None,
    "method": "tgd", "threshold": 0.3, "mode": "parameter", "ft_blocks": 3,
    "ewc_lambda": 1000.0, "l2sp_lambda": 0.01, "lora_rank": 4, "fisher_data": None,
    "fisher_seeds": None, "fisher_version": None, "fisher_samples": 64, **TOD_DEFAULTS,
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a pre-trained net: --method tgd | ft | ewc | l2sp | lora",
        description="Adapt a pre-trained checkpoint to new data. tgd: retrain only the kernels "
        "whose feature maps have KSE < --threshold (last layer frozen; run it again on its "
        "output for TGD^n). ft: train only the last --ft-blocks conv blocks. ewc: train all "
        "weights with the Elastic Weight Consolidation penalty (needs the Fisher stored by "
        "`tgd train`, or --fisher-data / --fisher-seeds with pre-training studies). l2sp: train "
        "all weights, penalising their distance to the pre-trained ones. lora: a rank "
        "--lora-rank update of every conv but the last, merged into the saved net (needs the "
        "PEFT library: pip install 'tgd[lora]').",
    )
    p.add_argument("--checkpoint", "-c", default=S, help="pre-trained model (folder or .json)")
    p.add_argument("--method", choices=("tgd", "ft", "ewc", "l2sp", "lora"), default=S,
                   help="default tgd")
    g = p.add_argument_group("method settings")
    add_threshold_options(g)
    g.add_argument("--mode", choices=("activation", "parameter"), default=S,
                   help="TGD gradient masking: parameter (default; exact gradients, masked) or "
                   "activation (the paper's TGD layers; also cuts the gradient flowing to "
                   "earlier layers, which raised the loss in our runs: docs/training.md)")
    g.add_argument("--ft-blocks", type=int, default=S, help="FT: trailing conv blocks (3)")
    g.add_argument("--ewc-lambda", type=float, default=S, help="EWC strength (default 1000)")
    g.add_argument("--l2sp-lambda", type=float, default=S,
                   help="L2-SP strength (default 0.01)")
    g.add_argument("--lora-rank", type=int, default=S, help="LoRA rank (default 4)")
    g.add_argument("--fisher-data", nargs="+", default=S, metavar="DIR",
                   help="EWC: pre-training study folders to estimate the Fisher from")
    g.add_argument("--fisher-seeds", nargs="+", type=int, default=S,
                   help="EWC: simulated pre-training studies to estimate the Fisher from")
    g.add_argument("--fisher-version", default=S,
                   help="EWC: reconstruction of the pre-training data (default: the parent's)")
    g.add_argument("--fisher-samples", type=int, default=S, help="EWC: samples (default 64)")
    add_tod_options(p)
    add_data_options(p, DEFAULTS)
    add_train_options(p, DEFAULTS)
    p.set_defaults(func=run)


def parent_info(ckpt) -> dict:
    m = ckpt.meta
    return {"path": str(ckpt.path), "tensors_sha256": m["tensors"]["sha256"],
            "method": m.get("method"), "data": m.get("data")}


def plan_history(ckpt) -> list:
    hist = list(ckpt.meta.get("plan_history") or [])
    if ckpt.meta.get("plan"):
        hist.append(ckpt.meta["plan"])
    return hist


def fisher_for(model, parent, opts, cfg):
    """The Fisher stored beside the parent, or estimated from the given pre-training data."""
    if opts.get("fisher_data") or opts.get("fisher_seeds"):
        version = opts.get("fisher_version") or (parent.meta.get("data") or {}).get("version", "v1")
        studies, prov = load_studies(paths=opts.get("fisher_data"), seeds=opts.get("fisher_seeds"),
                                     version=version, sim=sim_kwargs(opts))
        ds = noise_adaptive_set(studies, version, cfg.patch_size, cfg.seed,
                                spatial_dims=cfg.spatial_dims, patch_depth=cfg.patch_depth)
        return estimate_fisher(model, ds, opts["fisher_samples"], cfg.seed), {"data": prov}
    stored = load_fisher(parent.path)
    if stored is None:
        return None, None
    fisher, anchor, meta = stored
    params = dict(model.named_parameters())
    if set(anchor) != set(params) or any(not torch.equal(anchor[k], params[k]) for k in anchor):
        raise ValueError(f"the stored Fisher ({meta.get('tensors', {}).get('file')}) was computed "
                         "for other weights than this checkpoint's")
    return fisher, {"stored": True, "data": meta.get("data")}


def run(args) -> int:
    opts = resolve(args, DEFAULTS)
    if not opts.get("checkpoint"):
        raise ValueError("give --checkpoint (the pre-trained model)")
    method = opts["method"]
    model, parent = load_model(opts["checkpoint"])
    opts["spatial_dims"] = checkpoint_dims(opts, parent, model)
    threshold, plan_opts = threshold_options(opts) if method == "tgd" else (None, {})
    numeric = threshold if isinstance(threshold, float | int) else DEFAULTS["threshold"]
    cfg = train_config({**opts, "threshold": numeric}, method)
    out = prepare_out(opts)
    ctx = start(opts)
    if (settings := arch_settings(parent.meta["model"])) is not None:
        cfg.arch, cfg.width, cfg.depth = settings
    distribute(model, ctx)
    train_set, val_set, prov = build_datasets(opts, cfg)
    meta = {"data": prov, "parent": parent_info(parent), "plan_history": plan_history(parent)}
    plan = fisher = None
    if method == "tgd":
        plan = resume_plan(out, opts) or share_plan(
            model, lambda: plan_for_command(model, threshold, plan_opts, lambda: train_set,
                                            estimate_noise_level, opts["auto_images"]), ctx)
        cfg.threshold = plan.threshold
        meta["tgd_round"] = len(meta["plan_history"]) + 1
    elif method == "ewc":
        fisher, finfo = fisher_for(model, parent, opts, cfg)
        meta["ewc_fisher"] = finfo
    setup = prepare(method, model, cfg, plan=plan, fisher=fisher)
    save_critic = attach_objective(setup, cfg, opts, meta)
    run_and_save(setup, cfg, train_set, val_set, opts, ctx, meta, out, after=save_critic)
    return 0
