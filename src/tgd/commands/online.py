"""``tgd online``: TGD-N2N online learning on one study, then denoise it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tgd.commands._common import (
    THRESHOLD_DEFAULTS,
    TRAIN_DEFAULTS,
    S,
    add_threshold_options,
    add_train_options,
    checkpoint_dims,
    distribute,
    plan_for_command,
    prepare_out,
    resolve,
    resume_plan,
    run_and_save,
    share_plan,
    start,
    threshold_options,
    train_config,
)
from tgd.commands.finetune import parent_info, plan_history
from tgd.data.io import Volume, read_image, sidecar_path, write_nifti
from tgd.inference import denoise_volume
from tgd.models.registry import arch_settings
from tgd.targeting.noise_level import noise_level_from_pair
from tgd.training import load_model, prepare
from tgd.training.config import ADVERSARIAL_LOSSES, IMAGE_LOSSES
from tgd.training.online import n2n_dataset

DEFAULTS = {
    **TRAIN_DEFAULTS, **THRESHOLD_DEFAULTS, "epochs": 150, "checkpoint": None, "threshold": 0.3,
    "mode": "parameter",
    "half1": None, "half2": None, "image": None, "simulate_study": None, "duration": 120.0,
    "version": "v2", "unseen": None, "sim_slices": 32, "sim_shape": 128, "sim_bmi": "low",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "online", help="TGD-N2N: adapt a net to one study from two half-count realizations",
        description="Online learning (TGD-N2N): fine-tune the checkpoint with TGD on the study "
        "itself, each half-count realization as input with the other as target (both "
        "directions), then denoise the study. Writes OUT/model.* and OUT/denoised.nii.gz "
        "(header and orientation of --image, or of --half1).",
    )
    p.add_argument("--checkpoint", "-c", default=S, help="model to adapt (folder or .json)")
    g = p.add_argument_group("the study")
    g.add_argument("--half1", default=S, help="realization 1 (NIfTI or DICOM folder)")
    g.add_argument("--half2", default=S, help="realization 2, same grid")
    g.add_argument("--image", default=S,
                   help="image to denoise after adapting (default: mean of the two halves)")
    g.add_argument("--simulate-study", type=int, default=S, metavar="SEED",
                   help="instead of files: simulate this study and split its --duration data")
    g.add_argument("--duration", type=float, default=S, help="seconds split in two (120)")
    g.add_argument("--version", default=S, help="reconstruction of the simulated study (v2)")
    g.add_argument("--unseen", choices=("bladder", "catheter", "both"), default=S,
                   help="simulated study: add a feature absent from training")
    g.add_argument("--sim-shape", type=int, default=S, help="simulated matrix (128)")
    g.add_argument("--sim-slices", type=int, default=S, help="simulated slices (32)")
    g.add_argument("--sim-bmi", choices=("low", "high"), default=S)
    t = p.add_argument_group("TGD")
    add_threshold_options(t)
    t.add_argument("--mode", choices=("activation", "parameter"), default=S,
                   help="gradient masking (default parameter; see tgd finetune --help)")
    add_train_options(p, DEFAULTS)
    p.set_defaults(func=run)


def load_halves(opts: dict):
    """(half1, half2, image to denoise (a Volume), provenance)."""
    if opts.get("simulate_study") is not None:
        if opts.get("half1") or opts.get("half2"):
            raise ValueError("give either --half1/--half2 or --simulate-study, not both")
        from tgd.data import simulate_study
        from tgd.data.io import study_affine

        d = opts["duration"]
        st = simulate_study(int(opts["simulate_study"]), n_slices=opts["sim_slices"],
                            shape=opts["sim_shape"], bmi=opts["sim_bmi"], durations=(d, 600),
                            versions=(opts["version"],), unseen=opts.get("unseen"))
        h1, h2 = st.noise2noise(opts["version"], d)
        full = st.images[(opts["version"], int(d) if float(d).is_integer() else d)]
        img = Volume(np.asarray(full, np.float32), study_affine(st), source="simulated")
        prov = {"source": "simulated", "seed": int(opts["simulate_study"]), "duration": d,
                "version": opts["version"], "unseen": opts.get("unseen"),
                "simulate": {"n_slices": opts["sim_slices"], "shape": opts["sim_shape"],
                             "bmi": opts["sim_bmi"]}}
        return h1, h2, img, prov
    if not (opts.get("half1") and opts.get("half2")):
        raise ValueError("give --half1 and --half2 (or --simulate-study SEED)")
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
    return a.data, b.data, img, prov


def run(args) -> int:
    opts = resolve(args, DEFAULTS)
    if not opts.get("checkpoint"):
        raise ValueError("give --checkpoint (the model to adapt)")
    model, parent = load_model(opts["checkpoint"])
    opts["spatial_dims"] = checkpoint_dims(opts, parent, model)
    threshold, plan_opts = threshold_options(opts)
    numeric = threshold if isinstance(threshold, float | int) else DEFAULTS["threshold"]
    cfg = train_config({**opts, "threshold": numeric}, "online")
    if cfg.loss in ADVERSARIAL_LOSSES:
        raise ValueError(f"tgd online takes an image loss (--loss {' | '.join(IMAGE_LOSSES)}); "
                         f"{cfg.loss!r} needs a critic and labels (tgd train / finetune)")
    out = prepare_out(opts)
    denoised_path = Path(out) / "denoised.nii.gz"
    for p in (denoised_path, sidecar_path(denoised_path)):
        if p.exists() and not opts["overwrite"]:
            raise FileExistsError(f"{p} exists; refusing to overwrite it (--overwrite)")
    ctx = start(opts)
    h1, h2, image, prov = load_halves(opts)
    if (settings := arch_settings(parent.meta["model"])) is not None:
        cfg.arch, cfg.width, cfg.depth = settings
    distribute(model, ctx)
    ds = n2n_dataset(h1, h2, patch_size=cfg.patch_size, seed=cfg.seed,
                     spatial_dims=cfg.spatial_dims, patch_depth=cfg.patch_depth,
                     min_items=cfg.batch_size)
    prov.update(items=len(ds), scale=ds.scale, patch_size=cfg.patch_size)
    # the tolerance's yardstick: the noise of one half, in the units the network sees
    noise = noise_level_from_pair(ds.scale * np.asarray(h1, np.float32),
                                  ds.scale * np.asarray(h2, np.float32))
    plan = resume_plan(out, opts) or share_plan(
        model, lambda: plan_for_command(model, threshold, plan_opts, lambda: ds,
                                        lambda _: noise, opts["auto_images"]), ctx)
    cfg.threshold = plan.threshold
    setup = prepare("online", model, cfg, plan=plan)
    meta = {"data": prov, "parent": parent_info(parent), "plan_history": plan_history(parent)}
    meta["tgd_round"] = len(meta["plan_history"]) + 1

    def denoise(adapted, meta):
        den = denoise_volume(adapted, image.data, scale=ds.scale, progress=opts["progress"])
        write_nifti(denoised_path, den, like=image, overwrite=opts["overwrite"],
                    meta={"denoised_by": "tgd online", "source": image.source})
        meta["denoised"] = denoised_path.name

    run_and_save(setup, cfg, ds, None, opts, ctx, meta, out, after=denoise)
    return 0
