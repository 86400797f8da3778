"""``tgd finetune``: adapt a pre-trained net to new data with TGD, FT, EWC, L2-SP or LoRA."""

from __future__ import annotations

from tgd.commands.common import (
    add_options,
    add_training_groups,
    check_checkpoint,
    check_out_folder,
    field_names,
    parse,
)
from tgd.training.driver import ADAPT, run_adapt
from tgd.training.options import METHOD_SETTINGS, FisherOptions, ThresholdOptions


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune",
        description="Adapt a pre-trained checkpoint to new data. tgd: retrain only the kernels "
        "whose feature maps have KSE < --threshold (last layer frozen; run it again on its "
        "output for TGD^n). ft: train only the last --ft-blocks conv blocks. ewc: train all "
        "weights with the Elastic Weight Consolidation penalty (needs the Fisher stored by "
        "`tgd train`, or --fisher-data with a manifest of pre-training pairs). l2sp: train "
        "all weights, penalising their distance to the pre-trained ones. lora: a rank "
        "--lora-rank update of every conv but the last, merged into the saved net (needs the "
        "PEFT library: pip install 'tgd[lora]').",
    )
    add_options(p, ADAPT, ("checkpoint", "method"))
    g = p.add_argument_group("method settings")
    add_options(g, ADAPT, ("threshold", *field_names(ThresholdOptions),
                           *(s for s in METHOD_SETTINGS if s != "threshold"),
                           *field_names(FisherOptions)))
    add_training_groups(p, ADAPT)
    p.set_defaults(func=run)


def run(args) -> int:
    opts = parse(args, ADAPT)
    # before the checkpoint is loaded and the net trained: a bad --out would otherwise only
    # fail when the adapted model is saved, after the whole run
    check_out_folder(opts)
    check_checkpoint(opts.get("checkpoint"), "--checkpoint")
    check_checkpoint(opts.get("segmenter"), "--segmenter")
    run_adapt(opts)
    return 0
