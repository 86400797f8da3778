"""Online-learning experiment (paper Fig. 6): studies with features no training study had
(pelvis with a bilobed very hot bladder and a urinary catheter).

Nets: v2-net and TGD-net (parameter mode, from the fine-tuning experiment); TGD-N2N (loss) =
v2-net adapted with TGD to the test study's own Noise2Noise pairs (its 120-s data split into
2 x 60 s), once per loss in ``preset.online_losses``; TGD²-N2N (loss) = TGD-net adapted the
same way (KSE recomputed on the TGD-net). Online learning runs in parameter mode (exact
gradient, masked update) and stops by the label-free rule of :func:`tgd.training.online.n2n_split`
(N2N loss on held-out slices, ``preset.online_patience`` validations without improvement,
best weights kept), at most ``preset.online_iterations`` iterations.

Evaluation: the nets denoise R 60-s realizations of the study; error against the noiseless
reconstruction of the same protocol (and, ``_vs600``, the 600-s image) inside the unseen-feature
ROI (signed mean error, NRMSE, mean absolute error: the hallucination error), ensemble CoV in a
soft-tissue background ROI (pelvis studies have no liver), and ``noise_reduction_kept_pct``: the
net's background-CoV reduction from the 60-s input as a percentage of the v2-net's (100:
denoises as much as the v2-net; 0: not at all). Rows "60-s input" and "Gaussian filter" (at the
v2-net's background CoV) are the trivial baselines. Every image a net sees is normalised from
itself alone (its body mean, as ``tgd denoise`` does); online training uses the body mean of the
two halves' mean."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from tgd.evaluation.baselines import gaussian_at_cov
from tgd.repro import rois
from tgd.repro.experiments.common import (
    StudySet,
    Trained,
    Validation,
    denoise_ensemble,
    example_view,
    preset_config,
    run_training,
    voxel_mm,
)
from tgd.repro.experiments.presets import Preset
from tgd.repro.quality import ensemble_quality
from tgd.training.online import online_datasets

SOURCES = {"v2-net": "TGD-N2N", "TGD-net (parameter)": "TGD²-N2N"}


def adapt(preset: Preset, study, sources: dict[str, Trained], *,
          progress: bool = False) -> dict[str, Trained]:
    """Every online-adapted net of one study (see the module docstring)."""
    img1, img2 = study.noise2noise("v2", 120)
    # the study's own scale: the body mean of its two halves' mean (tgd online's), no reference
    train_set, val_set, _ = online_datasets(img1, img2, holdout=preset.online_holdout,
                                            patch_size=preset.patch_size, seed=preset.seed)
    val = Validation(val_set, preset.online_val_every, len(val_set))
    nets: dict[str, Trained] = {}
    for src_name, prefix in SOURCES.items():
        if src_name not in sources:
            continue
        for loss in preset.online_losses:
            cfg = preset_config(preset, "online", mode="parameter", stage="online")
            cfg.loss = loss
            name = f"{prefix} ({loss})"
            t = run_training(name, "online", sources[src_name].model, cfg.validate(),
                             train_set, val=val, patience=preset.online_patience,
                             progress=progress)
            t.info.update({"source": src_name, "study": study.seed, "loss": loss})
            nets[name] = t
    return nets


def run(preset: Preset, studies: StudySet, sources: dict[str, Trained], *,
        progress: bool = False) -> dict:
    """``sources``: {"v2-net": ..., "TGD-net (parameter)": ...}."""
    rows, training, examples = [], [], []
    for i, study in enumerate(studies.unseen):
        adapted = adapt(preset, study, sources, progress=progress)
        training += [t.info for t in adapted.values()]
        nets: dict[str, Trained | None] = {"60-s input": None, "Gaussian filter": None}
        nets.update({k: sources[k] for k in SOURCES if k in sources})
        nets.update(adapted)
        ens = studies.realizations[(f"unseen{i}", "v2")]
        z = int(np.argmax(rois.unseen_roi(study).sum(axis=(1, 2))))
        ex = {"study": study.seed, "slice": z, "reference": study.images[("v2", 600)][z],
              "images": {}, **example_view(study, rois.unseen_roi(study), z, 32)}
        dens = {name: denoise_ensemble(None if t is None else t.model, ens)
                for name, t in nets.items() if name != "Gaussian filter"}
        if "v2-net" in dens:
            bg = rois.background_roi(study)
            q_v2 = ensemble_quality(study, "v2", dens["v2-net"], noise_roi="background")
            dens["Gaussian filter"], fwhm = gaussian_at_cov(
                ens, bg, q_v2["background_cov_pct"] / 100, voxel_mm(study))
        study_rows = []
        for name in tqdm(nets, desc="evaluate (online)", disable=not progress):
            if name not in dens:
                continue
            q = ensemble_quality(study, "v2", dens[name], noise_roi="background", unseen=True)
            row = {"net": name, "study": study.seed, "study_index": i, **q}
            if name == "Gaussian filter":
                row["gaussian_fwhm_mm"] = fwhm
            study_rows.append(row)
            ex["images"][name] = dens[name][0, z]
        by = {r["net"]: r for r in study_rows}
        if "v2-net" in by:
            c0, c2 = by["60-s input"]["background_cov_pct"], by["v2-net"]["background_cov_pct"]
            for r in study_rows:
                r["noise_reduction_kept_pct"] = (100 * (c0 - r["background_cov_pct"]) / (c0 - c2)
                                                 if c0 != c2 else float("nan"))
        rows += study_rows
        examples.append(ex)
    return {"rows": rows, "training": training, "examples": examples}
