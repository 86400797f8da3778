"""Image quality of a denoiser on one study: ensemble lesion bias, ensemble CoV, PSNR, SSIM,
NRMSE and the error inside the unseen-feature ROI.

References. Image metrics are computed against the **noiseless reconstruction of the same
protocol** (``Study.noiseless(version)``: the expected counts reconstructed with the same
OSEM), which carries the reconstruction's resolution but no noise, so they measure the
denoiser's error alone; this is what the findings decide on. The same metrics against the
600-s image, as the paper measured them, carry the suffix ``_vs600`` (the 600-s image has its
own noise: 6.7 % per voxel in the liver of a low-BMI study at 96 x 96). Lesion bias is also
given against the phantom's true concentration (no suffix).

Lesion bias is reported per lesion class (:data:`tgd.repro.rois.LESION_CLASSES`), each the
mean over the class's lesions of their ensemble biases:

- ``lesion_bias_vsnl_pct`` (noiseless reference), ``lesion_bias_vs600_pct``,
  ``lesion_bias_pct`` (truth): the **large** class (radius >= 10 mm), the one Table 1 uses;
  ``small_lesion_...``: the small one;
- ``lesion_max_bias_vsnl_pct`` / ``lesion_peak_bias_vsnl_pct``: the same for SUVmax (the
  lesion's hottest voxel) and SUVpeak (the hottest mean of a 3 x 3 x 3 voxel cube centred in
  the lesion), each realization against the noiseless image's value, as a PET physicist reads
  lesions; the recovery of each lesion (noiseless mean / truth) is in ``lesions``;
- ``<prefix>_bias_by_realization_pct`` (and ``..._vs600_...``, ``..._vsnl_...``): per
  realization ``r`` the mean
  over the class's lesions of ``100 (mu_r - T) / T``; their mean is the class bias, and the
  paired difference of two nets on the same realizations gives its standard error.
- ``<prefix>_count`` lesions in the class, ``lesions``: one entry per lesion (name, class,
  host, radius, voxels, truth, 600-s ROI mean, its recovery ``600-s mean / truth``, and both
  biases).

A study with no large lesion on its grid (a window too short for a 10-mm sphere) reports its
largest lesion under the large-class keys and says so in ``lesion_class``.

The same function measures knowledge retention: call it on v1 data or on high-BMI studies
after adaptation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tgd.evaluation.metrics import ensemble_bias, ensemble_cov, nrmse, psnr, roi_error, ssim
from tgd.repro import rois

TARGET = 600


def ensemble_quality(study, version: str, ensemble: np.ndarray, *, noise_roi: str = "liver",
                     unseen: bool = False) -> dict[str, float]:
    """Metrics of ``ensemble`` (``(R, Z, H, W)`` images of ``study``, e.g. R denoised 60-s
    realizations) against the study's truth, its ``version`` noiseless reconstruction and its
    600-s image (see the module docstring).

    ``noise_roi``: "liver" (ensemble liver CoV) or "background" (soft tissue, for pelvis
    studies). Percentages are ``x 100`` of the fractions of :mod:`tgd.evaluation.metrics`.
    PSNR / SSIM / NRMSE are averaged over realizations, inside the body.
    """
    ens = np.asarray(ensemble)
    if ens.ndim != 4 or ens.shape[1:] != study.labels.shape:
        raise ValueError(f"ensemble must be (R, {', '.join(map(str, study.labels.shape))}), "
                         f"got {ens.shape}")
    ref600 = study.images[(version, TARGET)]
    noiseless = study.noiseless(version)
    body = rois.labelled_body_mask(study)
    out: dict[str, float] = {"realizations": int(ens.shape[0])}
    lesions = rois.lesion_rois(study) if noise_roi == "liver" else []
    if lesions:  # a lesion with voxels on this grid
        out.update(lesion_quality(study, ens, ref600, noiseless, lesions))
    roi = rois.liver_roi(study) if noise_roi == "liver" else rois.background_roi(study)
    out[f"{noise_roi}_cov_pct"] = 100 * ensemble_cov(ens, roi)
    for suffix, ref in (("", noiseless), ("_vs600", ref600)):
        out[f"psnr{suffix}_db"] = float(np.mean([psnr(e, ref, body) for e in ens]))
        out[f"ssim{suffix}"] = float(np.mean([ssim(e, ref, body) for e in ens]))
        out[f"nrmse{suffix}"] = float(np.mean([nrmse(e, ref, body) for e in ens]))
    if unseen:
        m = rois.unseen_roi(study)
        for suffix, ref in (("", noiseless), ("_vs600", ref600)):
            errs = [roi_error(e, ref, m) for e in ens]
            for k in ("mean_error", "nrmse", "mae"):
                out[f"unseen_{k}{suffix}_pct"] = 100 * float(np.mean([e[k] for e in errs]))
    return out


def _max_peak(img: np.ndarray, m: np.ndarray) -> tuple[float, float]:
    """SUVmax and SUVpeak of ``img`` in lesion mask ``m`` (peak: the largest 3 x 3 x 3 cube mean
    centred on a lesion voxel)."""
    x = np.asarray(img, np.float64)
    return float(x[m].max()), float(ndimage.uniform_filter(x, size=3, mode="nearest")[m].max())


def _per_lesion(ens: np.ndarray, ref: np.ndarray, noiseless: np.ndarray, les: dict) -> dict:
    t, m = les["truth_kbq_ml"], les["mask"]
    t600 = float(np.asarray(ref, np.float64)[m].mean())  # as ensemble_bias averages
    tnl = float(np.asarray(noiseless, np.float64)[m].mean())
    means = np.array([float(np.asarray(e, np.float64)[m].mean()) for e in ens])
    mx_nl, pk_nl = _max_peak(noiseless, m)
    mp = np.array([_max_peak(e, m) for e in ens])
    return {"name": les["name"], "class": les["class"], "host": les["host"],
            "radius_mm": les["radius_mm"], "voxels": les["voxels"], "truth_kbq_ml": t,
            "600s_kbq_ml": t600, "recovery_600s": t600 / t, "noiseless_kbq_ml": tnl,
            "recovery_noiseless": tnl / t,
            "bias_pct": 100 * ensemble_bias(ens, m, t),
            "bias_vs600_pct": 100 * ensemble_bias(ens, m, t600),
            "bias_vsnl_pct": 100 * ensemble_bias(ens, m, tnl),
            "max_bias_vsnl_pct": float(100 * (mp[:, 0].mean() - mx_nl) / mx_nl),
            "peak_bias_vsnl_pct": float(100 * (mp[:, 1].mean() - pk_nl) / pk_nl),
            "_by_r": 100 * (means - t) / t, "_by_r600": 100 * (means - t600) / t600,
            "_by_rnl": 100 * (means - tnl) / tnl}


def lesion_quality(study, ensemble: np.ndarray, ref: np.ndarray, noiseless: np.ndarray,
                   lesions: list[dict] | None = None) -> dict:
    """The lesion keys of :func:`ensemble_quality` (see the module docstring); ``ref`` is the
    600-s image, ``noiseless`` the noiseless reconstruction, ``lesions`` the study's
    :func:`tgd.repro.rois.lesion_rois` when the caller has them already."""
    lesions = rois.lesion_rois(study) if lesions is None else lesions
    per = [_per_lesion(ensemble, ref, noiseless, les) for les in lesions]
    if not per:
        raise ValueError(f"study {study.seed} has no lesion voxel on this grid")
    out: dict = {"lesion_class": "large"}
    groups = {"lesion": [p for p in per if p["class"] == "large"],
              "small_lesion": [p for p in per if p["class"] == "small"]}
    if not groups["lesion"]:
        groups["lesion"] = [max(per, key=lambda p: p["voxels"])]
        out["lesion_class"] = "largest lesion (no large lesion on this grid)"
    for prefix, group in groups.items():
        out[f"{prefix}_count"] = len(group)
        if not group:
            continue
        for k in ("bias", "bias_vs600", "bias_vsnl", "max_bias_vsnl", "peak_bias_vsnl"):
            out[f"{prefix}_{k}_pct"] = float(np.mean([p[f"{k}_pct"] for p in group]))
        out[f"{prefix}_bias_by_realization_pct"] = np.mean(
            [p["_by_r"] for p in group], axis=0).tolist()
        out[f"{prefix}_bias_vs600_by_realization_pct"] = np.mean(
            [p["_by_r600"] for p in group], axis=0).tolist()
        out[f"{prefix}_bias_vsnl_by_realization_pct"] = np.mean(
            [p["_by_rnl"] for p in group], axis=0).tolist()
        out[f"{prefix}_names"] = [p["name"] for p in group]
    out["lesions"] = [{k: v for k, v in p.items() if not k.startswith("_")} for p in per]
    return out
