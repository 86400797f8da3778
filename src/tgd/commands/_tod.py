"""The objective options of the training commands (``--loss mse|wgan|tod`` and its weights)
and the pieces that attach a critic / frozen segmenter to a run (tgd.training.adversarial)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tgd.training.adversarial import make_adversarial
from tgd.training.checkpoint import save_checkpoint
from tgd.training.config import ADVERSARIAL_LOSSES

S = argparse.SUPPRESS

TOD_DEFAULTS = {"segmenter": None, "gan_weight": 1.0, "task_weight": 1.0,
                "mse_weight": 100.0, "n_critic": 1, "critic_lr": 1e-4, "clip": 0.01,
                "gp_weight": 0.0, "critic_width": 16}


def add_tod_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("objective (docs/tod.md)")
    g.add_argument("--segmenter", default=S, metavar="CKPT",
                   help="tod: the frozen task network (from `tgd train-segmenter`)")
    g.add_argument("--gan-weight", type=float, default=S, help="weight of L_GAN (default 1)")
    g.add_argument("--task-weight", type=float, default=S, help="weight of L_t (default 1)")
    g.add_argument("--mse-weight", type=float, default=S,
                   help="lambda, weight of L_MSE (default 100)")
    g.add_argument("--n-critic", type=int, default=S, help="critic steps per generator step (1)")
    g.add_argument("--critic-lr", type=float, default=S, help="critic Adam lr (default 1e-4)")
    g.add_argument("--clip", type=float, default=S,
                   help="critic weight clip (default 0.01; unused with --gp-weight)")
    g.add_argument("--gp-weight", type=float, default=S,
                   help="WGAN-GP gradient-penalty weight instead of clipping (default 0: clip)")
    g.add_argument("--critic-width", type=int, default=S, help="critic feature maps (16)")


def attach_objective(setup, cfg, opts: dict, meta: dict):
    """Give ``setup`` its critic (and segmenter) for ``cfg.loss``; returns an ``after`` hook
    for ``run_and_save`` that writes ``OUT/model.critic.*`` (None for mse)."""
    if cfg.loss not in ADVERSARIAL_LOSSES:
        return None
    if cfg.spatial_dims != 2:
        raise ValueError("--loss wgan|tod supports 2.5-D networks (spatial-dims 2) only")
    seg, info = None, None
    if cfg.loss == "tod":
        if not opts.get("segmenter"):
            raise ValueError("--loss tod needs --segmenter (a checkpoint from "
                             "`tgd train-segmenter`)")
        from tgd.training.segmenter import load_segmenter

        seg, ck = load_segmenter(opts["segmenter"])
        info = {"path": str(ck.path), "tensors_sha256": ck.meta["tensors"]["sha256"],
                "model": ck.meta["model"], "classes": ck.meta.get("classes")}
    adv = make_adversarial(cfg, spatial_dims=2, segmenter=seg, segmenter_info=info)
    setup.adversarial = adv
    meta["objective"] = adv.describe()

    def save_critic(_model, final_meta, out: Path = Path(opts["out"])):
        save_checkpoint(out / "model.critic", adv.critic.state_dict(),
                        {"kind": "critic", "model": adv.critic.spec(),
                         "objective": adv.describe()}, overwrite=True)
        final_meta["objective"]["critic_file"] = "model.critic.json"
        final_meta["objective"]["last_terms"] = adv.last

    return save_critic


def chain(*hooks):
    hooks = [h for h in hooks if h is not None]
    if not hooks:
        return None

    def run(model, meta):
        for h in hooks:
            h(model, meta)

    return run
