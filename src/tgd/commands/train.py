"""``tgd train``: noise-adaptive supervised training from scratch (v1-net, v2-net)."""

from __future__ import annotations

from tgd.commands.common import (
    add_options,
    add_training_groups,
    check_checkpoint,
    check_out_folder,
    parse,
)
from tgd.training.driver import TRAIN, run_train
from tgd.training.options import NETWORK


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        description="Train the paper's 2.5-D DnCNN (or a U-Net; 3-D with --spatial-dims 3) from "
        "scratch on the input/target pairs of --data manifests (noise-adaptive when a study has "
        "inputs at several count levels). Writes "
        "OUT/model.safetensors + OUT/model.json and, for EWC later, OUT/model.fisher.* (the "
        "Fisher information of this training data; --fisher-samples 0: none). Multi-process: "
        "torchrun --nproc-per-node N -m tgd.cli train ...",
    )
    add_options(p.add_argument_group("network"), TRAIN, (*NETWORK, "fisher_samples"))
    add_training_groups(p, TRAIN)
    p.set_defaults(func=run)


def run(args) -> int:
    opts = parse(args, TRAIN)
    check_out_folder(opts)  # before the data are read and the net trained
    check_checkpoint(opts.get("segmenter"), "--segmenter")
    run_train(opts)
    return 0
