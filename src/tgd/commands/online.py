"""``tgd online``: TGD-N2N online learning on one study, then denoise it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tgd.commands.common import (
    add_options,
    add_training_groups,
    check_checkpoint,
    check_out_folder,
    field_names,
    parse,
    units_meta,
)
from tgd.data.io import Volume, read_image, sidecar_path, write_nifti
from tgd.inference import denoise_volume
from tgd.targeting.noise_level import noise_level_from_pair
from tgd.training.config import TrainConfig, option
from tgd.training.driver import AdaptOptions, run_adapt
from tgd.training.online import online_datasets
from tgd.training.options import (
    OBJECTIVE,
    OPTIMISATION,
    OptionSet,
    OutputOptions,
    SegmenterOptions,
    ThresholdOptions,
)


@dataclass
class StudyOptions:
    """The study adapted to and denoised: two half-count realizations."""

    half1: str | None = option(None, "realization 1 (NIfTI or DICOM folder)")
    half2: str | None = option(None, "realization 2, same grid")
    image: str | None = option(None, "image to denoise after adapting",
                               none="mean of the two halves")
    labels: str | None = option(None, "--loss tod: the study's class map (NIfTI or DICOM folder "
                                "of integers: 0 background, then the segmenter's classes)")
    holdout: int = option(0, "label-free stopping: hold out every N-th slice; the Noise2Noise "
                          "loss on them (every --val-every iterations) stops training after "
                          "--patience validations without improvement, best weights kept "
                          "(0: train every slice for the whole run)", show_default=False)


# the task loss trains without a critic here (gan_weight 0): Noise2Noise targets are noisy
ONLINE = OptionSet((AdaptOptions, ("checkpoint",)),
                   (TrainConfig, ("threshold", "mode", *OPTIMISATION, *OBJECTIVE)),
                   ThresholdOptions, StudyOptions,
                   OutputOptions, SegmenterOptions, epochs=150, spatial_dims=None,
                   gan_weight=0.0)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "online",
        description="Online learning (TGD-N2N): fine-tune the checkpoint with TGD on the study "
        "itself, each half-count realization as input with the other as target (both "
        "directions), then denoise the study. Writes OUT/model.* and OUT/denoised.nii.gz "
        "(header and orientation of --image, or of --half1).",
    )
    add_options(p, ONLINE, ("checkpoint",))
    add_options(p.add_argument_group("the study"), ONLINE, field_names(StudyOptions))
    add_options(p.add_argument_group("TGD"), ONLINE,
                ("threshold", *field_names(ThresholdOptions), "mode"))
    add_training_groups(p, ONLINE, data=False)
    p.set_defaults(func=run)


def load_halves(opts: dict):
    """(half1, half2, image to denoise (a Volume), class map or None, provenance); the class
    map only with ``--loss tod``."""
    want_classes = opts.get("loss") == "tod"
    if opts.get("labels") and not want_classes:
        raise ValueError("--labels is read by --loss tod only")
    if not (opts.get("half1") and opts.get("half2")):
        raise ValueError("give --half1 and --half2 (the two half-count realizations)")
    a, b = read_image(opts["half1"]), read_image(opts["half2"])
    if a.data.shape != b.data.shape:
        raise ValueError(f"--half1 {a.data.shape} and --half2 {b.data.shape} differ in shape")
    if opts.get("image"):
        img = read_image(opts["image"])
        if img.data.shape != a.data.shape:
            raise ValueError(f"--image {img.data.shape} differs in shape from the halves")
    else:
        img = Volume(0.5 * (a.data + b.data), a.affine, header=a.header, source=a.source)
    prov = {"source": "files", "half1": a.source, "half2": b.source, "image": opts.get("image")}
    classes = None
    if want_classes:
        if not opts.get("labels"):
            raise ValueError("--loss tod needs the study's class map: --labels")
        classes = read_class_map(opts["labels"], a.data.shape)
        prov["labels"] = opts["labels"]
    return a.data, b.data, img, classes, prov


def read_class_map(path: str, shape: tuple) -> np.ndarray:
    """An integer class map of ``shape`` from a NIfTI file or DICOM folder."""
    lab = read_image(path).data
    if lab.shape != tuple(shape):
        raise ValueError(f"--labels {lab.shape} differs in shape from the halves {tuple(shape)}")
    if not np.isfinite(lab).all() or not np.array_equal(lab, np.round(lab)) or lab.min() < 0:
        raise ValueError(f"--labels {path} must hold class indices: integers >= 0")
    return lab.astype(np.int64)


def run(args) -> int:
    opts = {**parse(args, ONLINE), "method": "online"}
    if opts["holdout"] and not opts["val_every"]:
        raise ValueError("--holdout needs --val-every (how often the held-out slices are "
                         "evaluated)")
    check_out_folder(opts)  # before the halves are read and the net adapted
    check_checkpoint(opts.get("checkpoint"), "--checkpoint")
    check_checkpoint(opts.get("segmenter"), "--segmenter")
    if opts.get("out"):
        denoised_path = Path(opts["out"]) / "denoised.nii.gz"
        for p in (denoised_path, sidecar_path(denoised_path)):
            if p.exists() and not opts["overwrite"]:
                raise FileExistsError(f"{p} exists; refusing to overwrite it (--overwrite)")
    study: dict = {}

    def datasets(cfg):
        h1, h2, study["image"], classes, prov = load_halves(opts)
        ds, val, scale = online_datasets(
            h1, h2, patch_size=cfg.patch_size, seed=cfg.seed, spatial_dims=cfg.spatial_dims,
            patch_depth=cfg.patch_depth, min_items=cfg.batch_size, holdout=opts["holdout"],
            classes=classes)
        study["scale"] = scale
        prov.update(items=len(ds), scale=scale, patch_size=cfg.patch_size)
        if val is not None:
            prov["holdout"] = {"every": opts["holdout"], "slices": len(val) // 2}
        # the tolerance's yardstick: the noise of one half, in the units the network sees
        study["noise"] = noise_level_from_pair(ds.scale * np.asarray(h1, np.float32),
                                               ds.scale * np.asarray(h2, np.float32))
        return ds, val, prov

    def denoise(adapted, meta):
        image = study["image"]
        den = denoise_volume(adapted, image.data, scale=study["scale"],
                             progress=opts["progress"])
        out = Path(opts["out"])
        write_nifti(denoised_path, den, like=image, overwrite=opts["overwrite"],
                    meta={"denoised_by": "tgd online", "source": image.source,
                          "adapted_from": str(opts["checkpoint"]),
                          "adapted_model": str(out / "model.json"),
                          "half1": str(opts["half1"]), "half2": str(opts["half2"]),
                          "image": opts.get("image"), **units_meta(image)})
        meta["denoised"] = denoised_path.name

    run_adapt(opts, datasets=datasets, noise_level=lambda _: study["noise"], after=denoise)
    return 0
