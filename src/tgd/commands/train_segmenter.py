"""``tgd train-segmenter``: pre-train the task network of TOD-Net on normal-dose images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tgd.commands._common import add_config_option, add_options, field_names, parse
from tgd.data.study import TARGET_DURATION
from tgd.data.task_labels import TASK_CLASSES, LabelledNoiseAdaptiveDataset
from tgd.models import SEGMENTER_ARCHS, Segmenter
from tgd.training.config import int_or_none, option
from tgd.training.data import load_studies
from tgd.training.driver import print_summary, sim_kwargs
from tgd.training.options import DataOptions, OptionSet, OutputOptions


@dataclass
class SegmenterSettings:
    """The segmenter and its training."""

    arch: str = option("unet", "MONAI network", choices=SEGMENTER_ARCHS)
    width: int = option(8, "first-level feature maps")
    iterations: int = option(500, "training iterations")
    batch_size: int = option(16, "batch size")
    patch_size: int | None = option(64, "random crops (multiple of 8; 'none': whole slices)",
                                    parse=int_or_none)
    lr: float = option(1e-3, "Adam learning rate")
    seed: int = option(0, "seed of init, batches and crops")


SEGMENTER = OptionSet(SegmenterSettings,
                      (DataOptions, ("data", "seeds", "val_data", "val_seeds", "version",
                                     "sim_shape", "sim_slices", "sim_bmi")),
                      (OutputOptions, ("out", "overwrite", "progress", "threads")), version="v2")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-segmenter", help="train a segmenter (the task network of --loss tod)",
        description="Train a MONAI segmentation network (unet, resunet, segresnet, vnet) on the "
        "normal-dose (600-s) images of PET studies with the task classes background, liver, "
        "kidney, lesion. Writes OUT/model.safetensors + OUT/model.json (kind 'segmenter'); "
        "use it as `tgd train|finetune --loss tod --segmenter OUT`. With validation studies "
        "the Dice per class is reported.",
    )
    add_options(p, SEGMENTER, (*field_names(SegmenterSettings), "data", "seeds", "val_data",
                               "val_seeds", "version", "sim_shape", "sim_slices", "sim_bmi",
                               "out", "overwrite", "progress", "threads"))
    add_config_option(p)
    p.set_defaults(func=run)


def _dataset(opts, paths, seeds, patch_size, seed):
    studies, prov = load_studies(paths=paths, seeds=seeds, version=opts["version"],
                                 sim={**sim_kwargs(opts), "durations": (TARGET_DURATION,)})
    ds = LabelledNoiseAdaptiveDataset(studies, opts["version"],
                                      input_durations=(TARGET_DURATION,), patch_size=patch_size,
                                      seed=seed)
    return ds, prov


def validation_dice(seg, ds) -> dict[str, float]:
    from tgd.evaluation.segmentation import dice_per_class
    from tgd.training.segmenter import segment

    ys = torch.stack([ds[i][1] for i in range(len(ds))])
    cs = torch.stack([ds[i][2] for i in range(len(ds))])
    d = dice_per_class(segment(seg, ys).numpy(), cs.numpy(), range(1, len(TASK_CLASSES)))
    return {TASK_CLASSES[k]: v for k, v in d.items() if np.isfinite(v)}


def run(args) -> int:
    from tgd.training.segmenter import save_segmenter, train_segmenter

    opts = parse(args, SEGMENTER)
    if not opts.get("out"):
        raise ValueError("give --out (the output folder)")
    out = Path(opts["out"])
    if (out / "model.json").exists() and not opts["overwrite"]:
        raise FileExistsError(f"{out / 'model.json'} exists; refusing to overwrite it "
                              "(use --overwrite)")
    ps = opts["patch_size"]
    if ps is not None and ps % 8:
        raise ValueError(f"--patch-size {ps} must be a multiple of 8 (the segmenters downsample "
                         "3 times)")
    if opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    ds, prov = _dataset(opts, opts.get("data"), opts.get("seeds"), ps, opts["seed"])
    torch.manual_seed(opts["seed"])
    seg = Segmenter(opts["arch"], in_channels=1, n_classes=len(TASK_CLASSES),
                    width=opts["width"])
    metrics = train_segmenter(seg, ds, iterations=opts["iterations"],
                              batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"],
                              progress=opts["progress"])
    if opts.get("val_data") or opts.get("val_seeds"):
        vds, vprov = _dataset(opts, opts.get("val_data"), opts.get("val_seeds"), None, 0)
        prov["validation"] = vprov
        metrics["val_dice"] = validation_dice(seg, vds)
    settings = {k: opts[k] for k in ("arch", "width", "iterations", "batch_size", "patch_size",
                                     "lr", "seed")}
    path = save_segmenter(out / "model", seg, {
        "classes": list(TASK_CLASSES), "input": "normal-dose (600-s) image, normalised like the "
        "denoisers' targets", "config": settings, "data": prov, "metrics": metrics},
        overwrite=True)
    print_summary({"checkpoint": str(path), "arch": opts["arch"],
                   "train_loss_last": metrics["train_loss_last"],
                   "train_time_s": metrics["train_time_s"],
                   **{f"val_dice_{k}": v for k, v in metrics.get("val_dice", {}).items()}})
    return 0
