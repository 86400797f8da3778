"""``tgd train-segmenter``: pre-train the task network of TOD-Net on normal-dose images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tgd.commands.common import (
    add_config_option,
    add_options,
    check_writable,
    field_names,
    parse,
)
from tgd.data import LabelledNoiseAdaptiveDataset, PairedVolumes
from tgd.data.manifest import load_pairs
from tgd.models import SEGMENTER_ARCHS, Segmenter
from tgd.training.config import int_or_none, option
from tgd.training.driver import print_summary
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
    class_names: list[str] | None = option(None, "names of the classes 0, 1, ... (0: background)",
                                           none="class0, class1, ... up to the largest label")


SEGMENTER = OptionSet(SegmenterSettings, DataOptions,
                      (OutputOptions, ("out", "overwrite", "progress", "threads")))


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-segmenter",
        description="Train a MONAI segmentation network (unet, resunet, segresnet, vnet) on the "
        "target (full-count / normal-dose) images of the --data manifests with their 'labels' "
        "(integer class maps, 0 background). Writes OUT/model.safetensors + OUT/model.json "
        "(kind 'segmenter'); "
        "use it as `tgd train|finetune --loss tod --segmenter OUT`. With validation studies "
        "the Dice per class is reported.",
    )
    add_options(p, SEGMENTER, (*field_names(SegmenterSettings), "data", "val_data",
                               "out", "overwrite", "progress", "threads"))
    add_config_option(p)
    p.set_defaults(func=run)


def _dataset(manifests, section: str, patch_size, seed):
    """The labelled target images of the manifests' ``section`` (each study's target once, at
    the scale of its first input: the intensities the denoisers output) and their provenance;
    ``(None, None)`` without such a section."""
    pairs, prov = load_pairs(manifests, section, labels=True)
    if pairs is None:
        return None, None
    targets = []
    for p in pairs:
        _, target, scales = p.volumes()
        targets.append(PairedVolumes([target], target, scales=scales[0], classes=p.classes,
                                     name=p.name))
    return LabelledNoiseAdaptiveDataset(targets, patch_size=patch_size, seed=seed), prov


def class_names(given, ds) -> list[str]:
    """The class names: ``given`` (checked to cover every label of ``ds``) or numbered."""
    top = max(int(c.max()) for c in ds.classes)
    if given is None:
        return [f"class{k}" for k in range(max(top + 1, 2))]
    if len(given) < 2 or len(given) <= top:
        raise ValueError(f"--class-names names {len(given)} classes, but the labels go up to "
                         f"{top} (and at least 2 are needed)")
    return list(given)


def validation_dice(seg, ds, names) -> dict[str, float]:
    from tgd.evaluation.segmentation import dice_per_class
    from tgd.training.segmenter import segment

    ys = torch.stack([ds[i][1] for i in range(len(ds))])
    cs = torch.stack([ds[i][2] for i in range(len(ds))])
    d = dice_per_class(segment(seg, ys).numpy(), cs.numpy(), range(1, len(names)))
    return {names[k]: v for k, v in d.items() if np.isfinite(v)}


def run(args) -> int:
    from tgd.training.segmenter import save_segmenter, train_segmenter

    opts = parse(args, SEGMENTER)
    if not opts.get("out"):
        raise ValueError("give --out (the output folder)")
    out = check_writable(opts["out"], "--out", folder=True)
    if (out / "model.json").exists() and not opts["overwrite"]:
        raise FileExistsError(f"{out / 'model.json'} exists; refusing to overwrite it "
                              "(use --overwrite)")
    ps = opts["patch_size"]
    if ps is not None and ps % 8:
        raise ValueError(f"--patch-size {ps} must be a multiple of 8 (the segmenters downsample "
                         "3 times)")
    if opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    if not opts.get("data"):
        raise ValueError("give --data (manifests of images with 'labels')")
    ds, prov = _dataset(opts["data"], "training", ps, opts["seed"])
    if ds is None:
        raise ValueError(f"--data {' '.join(opts['data'])}: no training items")
    torch.manual_seed(opts["seed"])
    names = class_names(opts.get("class_names"), ds)
    seg = Segmenter(opts["arch"], in_channels=1, n_classes=len(names),
                    width=opts["width"])
    metrics = train_segmenter(seg, ds, iterations=opts["iterations"],
                              batch_size=opts["batch_size"], lr=opts["lr"], seed=opts["seed"],
                              progress=opts["progress"])
    vds, vprov = _dataset(opts.get("val_data") or opts["data"], "validation", None, 0)
    if vds is None and opts.get("val_data"):
        vds, vprov = _dataset(opts["val_data"], "training", None, 0)
    if vds is not None:
        prov["validation"] = vprov
        metrics["val_dice"] = validation_dice(seg, vds, names)
    settings = {k: opts[k] for k in ("arch", "width", "iterations", "batch_size", "patch_size",
                                     "lr", "seed")}
    path = save_segmenter(out / "model", seg, {
        "classes": names, "input": "target (full-count) image, normalised like the "
        "denoisers' targets", "config": settings, "data": prov, "metrics": metrics},
        overwrite=True)
    print_summary({"checkpoint": str(path), "arch": opts["arch"],
                   "train_loss_last": metrics["train_loss_last"],
                   "train_time_s": metrics["train_time_s"],
                   **{f"val_dice_{k}": v for k, v in metrics.get("val_dice", {}).items()}})
    return 0
