"""Image quality of a denoiser on one study: ensemble lesion bias, ensemble CoV, PSNR, SSIM,
NRMSE against the 600-s image, and the error inside the unseen-feature ROI.

The same function measures knowledge retention: call it on v1 data or on high-BMI studies
after adaptation.
"""

from __future__ import annotations

import numpy as np

from tgd.evaluation import rois
from tgd.evaluation.metrics import ensemble_bias, ensemble_cov, nrmse, psnr, roi_error, ssim

TARGET = 600


def ensemble_quality(study, version: str, ensemble: np.ndarray, *, noise_roi: str = "liver",
                     unseen: bool = False) -> dict[str, float]:
    """Metrics of ``ensemble`` (``(R, Z, H, W)`` images of ``study``, e.g. R denoised 60-s
    realizations) against the study's truth and its ``version`` 600-s image.

    ``noise_roi``: "liver" (ensemble liver CoV) or "background" (soft tissue, for pelvis
    studies). Percentages are ``x 100`` of the fractions of :mod:`tgd.evaluation.metrics`.
    PSNR / SSIM / NRMSE are averaged over realizations, inside the body.
    """
    ens = np.asarray(ensemble)
    if ens.ndim != 4 or ens.shape[1:] != study.labels.shape:
        raise ValueError(f"ensemble must be (R, {', '.join(map(str, study.labels.shape))}), "
                         f"got {ens.shape}")
    ref = study.images[(version, TARGET)]
    body = rois.body_mask(study)
    out: dict[str, float] = {"realizations": int(ens.shape[0])}
    if study.lesions and noise_roi == "liver":
        les = rois.main_lesion(study)
        out["lesion_bias_pct"] = 100 * ensemble_bias(ens, les["mask"], les["truth_kbq_ml"])
        ref_t = float(ref[les["mask"]].mean())
        out["lesion_bias_vs600_pct"] = 100 * ensemble_bias(ens, les["mask"], ref_t)
        # per-realization ROI means, for standard errors of (paired) bias differences
        out["lesion_truth_kbq_ml"] = les["truth_kbq_ml"]
        out["lesion_600s_kbq_ml"] = ref_t
        out["lesion_roi_means"] = [float(e[les["mask"]].mean()) for e in ens]
    roi = rois.liver_roi(study) if noise_roi == "liver" else rois.background_roi(study)
    out[f"{noise_roi}_cov_pct"] = 100 * ensemble_cov(ens, roi)
    out["psnr_db"] = float(np.mean([psnr(e, ref, body) for e in ens]))
    out["ssim"] = float(np.mean([ssim(e, ref, body) for e in ens]))
    out["nrmse"] = float(np.mean([nrmse(e, ref, body) for e in ens]))
    if unseen:
        m = rois.unseen_roi(study)
        errs = [roi_error(e, ref, m) for e in ens]
        for k in ("mean_error", "nrmse", "mae"):
            out[f"unseen_{k}_pct"] = 100 * float(np.mean([e[k] for e in errs]))
    return out
