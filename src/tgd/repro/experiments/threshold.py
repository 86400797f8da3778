"""Threshold study (paper Fig. 4): drop the kernels behind low-KSE feature maps of the v1-net
at each phi and measure what is lost.

Per phi: the fraction of parameters zeroed (``tgd.drop_kernels``: producing and consuming
kernels), the feature maps dropped, and the dropped net's images of the low-BMI v1 test
realizations against (a) the original net's images (PSNR / NRMSE: how much the dropped kernels
contributed) and (b) the noiseless reconstruction (PSNR / SSIM, lesion bias, liver CoV;
:mod:`tgd.repro.quality`). The paper picks phi = 0.3 as the largest threshold whose dropped net
is visually unchanged.

The premise check (does KSE find the maps that matter least?): at phi = ``preset.threshold``
the same number of feature maps per layer is also dropped at random, ``preset.random_draws``
times; KSE is informative only if dropping its choice changes the image less than dropping
random maps does.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from tqdm import tqdm

import tgd
from tgd.evaluation.metrics import nrmse, psnr
from tgd.repro import rois
from tgd.repro.experiments.common import (
    BaseNets,
    StudySet,
    denoise_ensemble,
    lesion_slice,
)
from tgd.repro.experiments.presets import Preset
from tgd.repro.quality import ensemble_quality


def random_plan(plan: tgd.TGDPlan, rng: np.random.Generator) -> tgd.TGDPlan:
    """``plan`` with each targeted layer's retrained maps replaced by as many random maps."""
    out = copy.deepcopy(plan)
    for lp in out.layers.values():
        if lp.role == "targeted" and lp.n_targeted:
            mask = torch.zeros_like(lp.mask)
            mask[torch.from_numpy(rng.choice(lp.out_channels, lp.n_targeted, replace=False))] = True
            lp.mask = mask
    return out


def run(preset: Preset, studies: StudySet, base: BaseNets, *, progress: bool = False) -> dict:
    study = studies.test["low"]
    ens = studies.realizations[("low", "v1")]
    model = base.v1.model
    original = denoise_ensemble(model, ens)
    body = rois.labelled_body_mask(study)
    rows, example = [], {}
    z = lesion_slice(study)
    for phi in tqdm(preset.thresholds, desc="kernel dropping", disable=not progress):
        plan = tgd.plan(model, float(phi))
        dropped, fraction = tgd.drop_kernels(model, plan)
        den = denoise_ensemble(dropped, ens)
        n_maps = sum(lp.n_targeted for lp in plan.layers.values() if lp.role == "targeted")
        n_all = sum(len(lp.mask) for lp in plan.layers.values() if lp.role == "targeted")
        rows.append({
            "threshold": float(phi), "fraction_dropped": fraction, "maps_dropped": n_maps,
            "maps_considered": n_all,
            "psnr_vs_original_db": float(np.mean([psnr(d, o, body, peak=float(o.max()))
                                                   for d, o in zip(den, original,
                                                                   strict=True)])),
            "nrmse_vs_original": float(np.mean([nrmse(d, o, body)
                                                for d, o in zip(den, original, strict=True)])),
            **ensemble_quality(study, "v1", den),
        })
        example[f"{phi:g}"] = den[0, z]
    plan = tgd.plan(model, float(preset.threshold))
    rng = np.random.default_rng([preset.seed, 7])
    random_rows = []
    for _ in range(preset.random_draws):
        dropped, fraction = tgd.drop_kernels(model, random_plan(plan, rng))
        den = denoise_ensemble(dropped, ens)
        random_rows.append({
            "fraction_dropped": fraction,
            "nrmse_vs_original": float(np.mean([nrmse(d, o, body)
                                                for d, o in zip(den, original, strict=True)])),
        })
    row = next((r for r in rows if r["threshold"] == float(preset.threshold)), None)
    if row is not None and random_rows:
        row["random_nrmse_vs_original"] = float(np.mean([d["nrmse_vs_original"]
                                                         for d in random_rows]))
    return {"rows": rows, "random": {"threshold": float(preset.threshold), "draws": random_rows},
            "example": {"slice": z, "input": ens[0, z],
                        "reference": study.images[("v1", 600)][z], "dropped": example}}
