"""``tgd train``: noise-adaptive supervised training from scratch (v1-net, v2-net)."""

from __future__ import annotations

import torch

from tgd.commands._common import (
    TRAIN_DEFAULTS,
    S,
    add_data_options,
    add_train_options,
    build_datasets,
    distribute,
    prepare_out,
    resolve,
    run_and_save,
    start,
    train_config,
)
from tgd.commands._tod import TOD_DEFAULTS, add_tod_options, attach_objective, chain
from tgd.models import new_model
from tgd.training import estimate_fisher, prepare, save_fisher

DEFAULTS = {**TRAIN_DEFAULTS, "spatial_dims": 2, "arch": "dncnn", "width": 64, "depth": None,
            "fisher_samples": 64, **TOD_DEFAULTS}
DEPTH = {"dncnn": 8, "unet": 3}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a DnCNN or U-Net from scratch (noise-adaptive, 600-s targets)",
        description="Train the paper's 2.5-D DnCNN (or a U-Net; 3-D with --spatial-dims 3) from "
        "scratch on noise-adaptive pairs (inputs at 30-180 s, 600-s target). Writes "
        "OUT/model.safetensors + OUT/model.json and, for EWC later, OUT/model.fisher.* (the "
        "Fisher information of this training data). Multi-process: "
        "torchrun --nproc-per-node N -m tgd.cli train ...",
    )
    g = p.add_argument_group("network")
    g.add_argument("--arch", choices=("dncnn", "unet"), default=S,
                   help="dncnn (the paper's) or unet (residual U-Net, skips by concatenation)")
    g.add_argument("--width", type=int, default=S,
                   help="feature maps (default 64; unet: of the first level, doubling per level)")
    g.add_argument("--depth", type=int, default=S,
                   help="conv layers (dncnn, default 8) or resolution levels (unet, default 3)")
    g.add_argument("--fisher-samples", type=int, default=S,
                   help="samples for the stored EWC Fisher (default 64; 0: none)")
    add_tod_options(p)
    add_data_options(p, DEFAULTS)
    add_train_options(p, DEFAULTS)
    p.set_defaults(func=run)


def run(args) -> int:
    opts = resolve(args, DEFAULTS)
    if opts["depth"] is None:
        opts["depth"] = DEPTH[opts["arch"]]
    cfg = train_config(opts, "scratch")
    out = prepare_out(opts)
    ctx = start(opts)
    train_set, val_set, prov = build_datasets(opts, cfg)
    torch.manual_seed(cfg.seed)
    model = distribute(new_model(cfg.arch, cfg.width, cfg.depth, cfg.spatial_dims), ctx)
    setup = prepare("scratch", model, cfg)

    def store_fisher(trained, meta):
        n = int(opts["fisher_samples"])
        if n <= 0:
            return
        fisher = estimate_fisher(trained, train_set, n, seed=cfg.seed, progress=opts["progress"])
        anchor = {k: p.detach().clone() for k, p in trained.named_parameters()}
        save_fisher(out / "model", fisher, anchor,
                    {"samples": n, "data": prov, "estimator": "empirical diagonal Fisher of the "
                     "per-sample MSE, eval mode"}, overwrite=True)
        meta["ewc_fisher"] = {"file": "model.fisher.json", "samples": n}

    meta = {"data": prov, "parent": None}
    save_critic = attach_objective(setup, cfg, opts, meta)
    run_and_save(setup, cfg, train_set, val_set, opts, ctx, meta, out,
                 after=chain(store_fisher, save_critic))
    return 0
