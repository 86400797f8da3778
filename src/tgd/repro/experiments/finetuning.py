"""Fine-tuning experiment (paper Table 1 / Fig. 5): adapt the v1-net to v2 reconstructions.

Nets: v1-net and v2-net (scratch), FT-net (last ``ft_blocks`` conv blocks of the v1-net),
TGD-net at phi = ``threshold`` in both gradient-masking modes ("parameter": exact gradient,
masked update; "activation": the paper's TGD layers, gradient masked at conv outputs), EWC-net,
and the baselines users would pick instead: L2-SP-net (every weight, pulled towards the
pre-trained one) and LoRA-net (a low-rank update of every conv but the last), and the
forgetting positive control (FT of every block at ``preset.control_lr_factor`` x the learning
rate: built to forget, so that the retention findings are shown able to fail). The adapted nets
see the 60-180-s acquisitions (``preset.finetune_durations``) of the low-BMI v2 fine-tuning
studies: the low-BMI 60-s test's count level, but neither the high-BMI test's noise level nor
v1, which the retention tests probe; each records its validation curve on a held-out v2 study
(time to quality) and is flagged ``diverged`` when it ends above 10 x its parent's validation loss.

Evaluation (per test set: v2 low BMI, v2 high BMI, and v1 low BMI for knowledge retention): the
nets denoise R i.i.d. 60-s realizations split from the test study's 600-s data, each normalised
from itself alone; lesion ensemble bias (vs the noiseless reconstruction of the same protocol,
vs the phantom's true concentration, and vs the 600-s image as in the paper's slides), SUVmax /
SUVpeak bias, ensemble liver CoV, and PSNR / SSIM / NRMSE vs the noiseless reconstruction (and
the 600-s image) of the same protocol (:mod:`tgd.repro.quality`). Row "60-s input" is the
undenoised realizations; row "Gaussian filter" the realizations smoothed by the Gaussian whose
liver CoV matches the v2-net's on that test set (what linear smoothing achieves at the same
noise level)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from tqdm import tqdm

import tgd
from tgd.evaluation.baselines import gaussian_at_cov
from tgd.repro import rois
from tgd.repro.experiments.common import (
    BaseNets,
    StudySet,
    Trained,
    dataset,
    denoise_ensemble,
    example_view,
    fisher_of,
    lesion_slice,
    preset_config,
    run_training,
    validation,
    voxel_mm,
)
from tgd.repro.experiments.presets import Preset
from tgd.repro.quality import ensemble_quality
from tgd.training import select_by_probe

TEST_SETS = (("v2", "low"), ("v2", "high"), ("v1", "low"))


CONTROL = "FT-all-net (forgetting control)"
ADAPTED = ("FT-net", "TGD-net (parameter)", "TGD-net (activation)", "TGD-net (auto)", "EWC-net",
           "L2-SP-net", "LoRA-net", CONTROL)
AUTO_IMAGES = 16  # unlabelled v2 inputs that threshold="auto" measures the output change on
BASELINES = ("60-s input", "Gaussian filter")
METHOD_OF = {"FT-net": "ft", "EWC-net": "ewc", "L2-SP-net": "l2sp", "LoRA-net": "lora"}


def adapt(preset: Preset, studies: StudySet, base: BaseNets, *, which=ADAPTED,
          progress: bool = False) -> dict[str, Trained]:
    """Train the adapted nets ``which`` (default: all of ``ADAPTED``) from the v1-net on the
    low-BMI v2 fine-tuning studies."""
    bad = sorted(set(which) - set(ADAPTED))
    if bad:
        raise ValueError(f"unknown adapted nets {bad}; choose from {ADAPTED}")
    v1 = base.v1.model
    data = dataset(studies.finetune, "v2", preset, preset.finetune_durations)
    val = validation(studies, preset)
    nets: dict[str, Trained] = {}
    for name in which:
        if name == "TGD-net (auto)":
            nets[name] = adapt_auto(preset, v1, data, val, progress)
            continue
        if name == CONTROL:
            cfg = preset_config(preset, "ft", stage="finetune")
            cfg.ft_blocks, cfg.lr = preset.depth, preset.lr * preset.control_lr_factor
            nets[name] = run_training(name, "ft", v1, cfg.validate(), data, val=val,
                                      progress=progress)
            continue
        if name.startswith("TGD-net"):
            mode = name.split("(")[1].rstrip(")")
            cfg = preset_config(preset, "tgd", mode=mode, stage="finetune")
            nets[name] = run_training(name, "tgd", v1, cfg, data, val=val, progress=progress)
            continue
        method = METHOD_OF[name]
        cfg = preset_config(preset, method, stage="finetune")
        fisher, fisher_s = None, None
        if method == "ewc":
            fisher, fisher_s = fisher_of(v1, dataset(studies.pretrain, "v1", preset), preset,
                                         progress)
        nets[name] = run_training(name, method, v1, cfg, data, fisher=fisher, val=val,
                                  progress=progress)
        if fisher_s is not None:
            nets[name].info["fisher_s"] = fisher_s
    return nets


def adapt_auto(preset: Preset, v1, data, val, progress: bool) -> Trained:
    """TGD (parameter mode) at the threshold ``threshold="auto"`` picks. With the held-out v2
    validation study (every preset has one) phi is chosen by probe adaptations
    (:func:`tgd.training.select_by_probe`: ``preset.probe_iterations`` each at phi 0.1-0.9
    below the drop bound, scored by the per-slice MSE on the validation study, the knee rule of
    docs/threshold_selection.md); without one by the drop criterion on 16 unlabelled v2 inputs
    (tolerance tied to their estimated noise level). When it retrains nothing, the "adapted"
    net is the v1-net itself, recorded as such."""
    cfg = preset_config(preset, "tgd", mode="parameter", stage="finetune")
    device = next(v1.parameters()).device
    if val is not None:
        plan = select_by_probe(v1, cfg, data, val.data, iterations=preset.probe_iterations,
                               max_items=val.max_items)
    else:
        idx = np.linspace(0, len(data) - 1, min(AUTO_IMAGES, len(data))).round().astype(int)
        images = torch.stack([data[int(i)][0] for i in idx])
        plan = tgd.plan(v1, "auto", images=images.to(device), noise_level="estimate")
    sel = plan.to_dict().get("selection") or {}
    chosen = {"auto_threshold": plan.threshold, "auto_rule": sel.get("rule"),
              "auto_reason": sel.get("reason")}
    if sel.get("rule") == "probe":
        chosen["auto_probe"] = {"cost": sel["cost"], "cap": sel["cap"],
                                "base_loss": sel["base_loss"],
                                "curve": [{k: pt.get(k) for k in (
                                    "threshold", "maps", "fraction_retrained", "improvement",
                                    "standard_error", "status")} for pt in sel["curve"]]}
    if not any(lp.n_targeted for lp in plan.layers.values()):
        info = {"name": "TGD-net (auto)", "method": "tgd", "mode": "parameter", "iterations": 0,
                "epochs": 0.0, "train_time_s": 0.0, "wall_s": 0.0, "train_loss_last": None,
                "trained_fraction": 0.0, "frozen_preserved": True, **chosen}
        return Trained("TGD-net (auto)", copy.deepcopy(v1), info)
    t = run_training("TGD-net (auto)", "tgd", v1, cfg, data, plan=plan, val=val,
                     progress=progress)
    t.info.update(chosen)
    return t


def evaluate_nets(nets: dict[str, Trained | None], studies: StudySet, *,
                  progress: bool = False) -> tuple[list[dict], dict]:
    """One row per (net, test set) with :func:`ensemble_quality`'s metrics, and per test set
    the first realization's lesion slice as denoised by each net (for the figure).

    ``nets`` maps names to trained nets; ``None`` is the 60-s input itself, and the name
    "Gaussian filter" the Gaussian at the v2-net's liver CoV (``nets`` must then contain
    "v2-net", and evaluate it first)."""
    rows, examples = [], {}
    jobs = [(n, v, b) for v, b in TEST_SETS for n in nets]
    for name, version, bmi in tqdm(jobs, desc="evaluate (fine-tuning)", disable=not progress):
        study = studies.test[bmi]
        ens = studies.realizations[(bmi, version)]
        extra: dict = {}
        if name == "Gaussian filter":
            ref = next(r for r in rows if r["net"] == "v2-net" and r["version"] == version
                       and r["bmi"] == bmi)
            den, fwhm = gaussian_at_cov(ens, rois.liver_roi(study), ref["liver_cov_pct"] / 100,
                                        voxel_mm(study))
            extra = {"gaussian_fwhm_mm": fwhm}
        else:
            t = nets[name]
            den = denoise_ensemble(None if t is None else t.model, ens)
        q = {**ensemble_quality(study, version, den), **extra}
        test = f"{version} {bmi} BMI"
        rows.append({"net": name, "test": test, "version": version, "bmi": bmi, **q})
        if test not in examples:
            z = lesion_slice(study)
            try:
                mask = rois.main_lesion(study)["mask"]
            except ValueError:
                mask = None
            examples[test] = {"slice": z, "reference": study.images[(version, 600)][z],
                              "images": {}, **example_view(study, mask, z, 16)}
        examples[test]["images"][name] = den[0, examples[test]["slice"]]
    return rows, examples


def run(preset: Preset, studies: StudySet, base: BaseNets, *, progress: bool = False) -> dict:
    """Train the adapted nets and evaluate every net; returns the experiment's record
    (``nets`` keeps the trained models for the online experiment)."""
    adapted = adapt(preset, studies, base, progress=progress)
    nets: dict[str, Trained | None] = {"60-s input": None, "v1-net": base.v1,
                                       "v2-net": base.v2, "Gaussian filter": None, **adapted}
    rows, examples = evaluate_nets(nets, studies, progress=progress)
    training = [t.info for t in nets.values() if t is not None]
    return {"rows": rows, "training": training, "examples": examples, "nets": nets}
