"""Measure the simulator's count level, lesion classes and the v1 -> v2 protocol shift.

    PYTHONPATH=src .venv/bin/python bench/physics_protocols.py [--seeds 6] [--out FILE.json]

Prints (and optionally writes) a JSON summary; docs/pet_simulator.md quotes it:

* ``counts``: the same patients (seeds 0 low BMI, 1 high BMI; 8 slices) on 64^2, 96^2 and
  128^2 grids over the same 512-mm FOV: total expected trues and prompts in 600 s, and the liver
  noise CoV of a 60-s image (two independent realizations), raw and after the same in-plane
  Gaussian post-filter of 10 mm FWHM.
* ``lesions``: the quick preset's geometry (96^2 x 8 slices), low-BMI seeds 3000, 3002, ...:
  per class (large: radius >= 10 mm, small) the mean 600-s recovery (ROI mean / truth) and the
  ensemble bias of 10 x 60 s vs the truth, for v1 and v2, and every lesion's values.
* ``v1_vs_v2``: the same studies: NRMSE of the v1 vs the v2 image (600 s and 60 s, in the body),
  noise correlation of neighbours and ensemble liver CoV of 10 x 60 s per version.
* ``psf``: noise-free hot rods in a warm disk at 0-200 mm from the centre (128^2, 4-mm
  pixels), radial and tangential FWHM of their v1 and v2 images.
* ``texture``: low-BMI seeds 3000, 3002, 3004 on the quick preset's 96^2 grid and on 128^2
  (the same 512-mm FOV, 8 slices): per version the noise autocorrelation of 10 x 60-s
  realizations (residuals from their mean, liver ROI) at lags 0-4 along x and y, its FWHM in mm
  (the *noise correlation length*), the ensemble liver CoV and the large-lesion 600-s recovery,
  and the v2 / v1 ratios; seconds per study on each grid.
* ``timing``: seconds per quick-preset study (both versions, the 7 training durations).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy import ndimage

from tgd.evaluation.metrics import ensemble_cov, neighbour_correlation, nrmse, pair_noise_cov
from tgd.repro import rois
from tgd.repro.quality import ensemble_quality
from tgd.repro.sim import DURATIONS, RECON_VERSIONS, simulate_study
from tgd.repro.sim.acquisition import ScannerModel, expected_data
from tgd.repro.sim.phantom import Phantom
from tgd.repro.sim.projector import Geometry
from tgd.repro.sim.recon import osem

FOV = 512.0


def _smooth(img: np.ndarray, fwhm_mm: float, pixel_mm: float) -> np.ndarray:
    s = fwhm_mm / 2.3548 / pixel_mm
    return ndimage.gaussian_filter(img, (0, s, s), mode="nearest")


def counts() -> dict:
    out = {}
    for seed, bmi in ((0, "low"), (1, "high")):
        for shape in (64, 96, 128):
            st = simulate_study(seed, bmi=bmi, shape=shape, n_slices=8, durations=(60, 600))
            liver = rois.liver_roi(st)
            px = FOV / shape
            r = {}
            for v in ("v1", "v2"):
                a, b = st.realizations(v, 60, 2)
                r[v] = {"raw": pair_noise_cov(a, b, liver),
                        "smoothed_10mm": pair_noise_cov(_smooth(a, 10, px), _smooth(b, 10, px),
                                                        liver)}
            c = st.meta["counts_600s"]
            out[f"{bmi}_{shape}"] = {"trues_600s": c["expected_trues"], "prompts_600s":
                                     c["prompts"], "liver_noise_cov_60s": r}
    return out


def lesions_and_shift(n_seeds: int) -> tuple[dict, dict]:
    per_class = {v: {"large": {"rec600": [], "bias60": []}, "small": {"rec600": [], "bias60": []}}
                 for v in ("v1", "v2")}
    shift = {"nrmse_600s": [], "nrmse_60s": [], "v1": {"corr": [], "cov": []},
             "v2": {"corr": [], "cov": []}}
    every = []
    for i in range(n_seeds):
        seed = 3000 + 2 * i
        st = simulate_study(seed, bmi="low", shape=96, n_slices=8, durations=(60, 600))
        body, liver = rois.labelled_body_mask(st), rois.liver_roi(st)
        shift["nrmse_600s"].append(nrmse(st.images[("v1", 600)], st.images[("v2", 600)], body))
        shift["nrmse_60s"].append(nrmse(st.images[("v1", 60)], st.images[("v2", 60)], body))
        for v in ("v1", "v2"):
            real = st.realizations(v, 60, 10)
            shift[v]["corr"].append(float(np.mean(neighbour_correlation(real - real.mean(0),
                                                                        liver))))
            shift[v]["cov"].append(100 * ensemble_cov(real, liver))
            q = ensemble_quality(st, v, real)
            for les in q["lesions"]:
                c = per_class[v][les["class"]]
                c["rec600"].append(les["recovery_600s"])
                c["bias60"].append(les["bias_pct"])
                every.append({"seed": seed, "version": v, **{k: les[k] for k in (
                    "name", "class", "host", "radius_mm", "voxels", "recovery_600s",
                    "bias_pct", "bias_vs600_pct")}})
    summary = {v: {c: {"n": len(d["rec600"]), "recovery_600s_mean": float(np.mean(d["rec600"])),
                       "bias_60s_vs_truth_pct_mean": float(np.mean(d["bias60"]))}
                   for c, d in per_class[v].items() if d["rec600"]} for v in per_class}
    sh = {"nrmse_600s_mean": float(np.mean(shift["nrmse_600s"])),
          "nrmse_60s_mean": float(np.mean(shift["nrmse_60s"])),
          **{v: {"neighbour_corr_mean": float(np.mean(shift[v]["corr"])),
                 "ensemble_liver_cov_60s_pct_mean": float(np.mean(shift[v]["cov"]))}
             for v in ("v1", "v2")}}
    return {"by_class": summary, "lesions": every}, sh


def _gauss_fwhm(profile: np.ndarray, pixel_mm: float) -> float:
    """FWHM (mm) of a Gaussian (plus offset) fitted to a profile of pixel values, each the
    Gaussian integrated over its pixel."""
    from scipy.optimize import curve_fit
    from scipy.special import erf

    p = np.asarray(profile, float)
    u = (np.arange(len(p)) - len(p) // 2) * pixel_mm

    def model(u, a, c, s, b):
        s = abs(s) + 1e-6
        h = pixel_mm / 2
        return a * (erf((u - c + h) / (s * np.sqrt(2))) - erf((u - c - h) / (s * np.sqrt(2))))\
            / 2 + b

    popt, _ = curve_fit(model, u, p, p0=(p.max(), 0.0, 3.0, 0.0), maxfev=20000)
    return float(2.3548 * abs(popt[2]))


def psf(shape: int = 128) -> dict:
    """Hot rods (along z, 4 x 4 mm, 10:1) in a warm 230-mm-radius disk in air at x = 0, 50, ...,
    200 mm on the y = 0 row; each rod's image is the reconstruction with the rods minus the one
    without them (noise-free, 600-s count level), its width the FWHM of a Gaussian fitted to
    its profiles along x (radial) and y (tangential)."""
    px, ov, nz, margin = FOV / shape, 2, 1, 4
    n = shape * ov
    c = (np.arange(n) - (n - 1) / 2) * px / ov
    yy, xx = np.meshgrid(c, c, indexing="ij")
    warm = np.broadcast_to((np.hypot(xx, yy) <= 230.0) * 10.0,
                           (nz * ov + 2 * margin, n, n)).astype(np.float32)
    rods = np.zeros_like(warm)
    xs = [0.0, 50.0, 100.0, 150.0, 200.0]
    j0 = int(np.searchsorted(c, 0.0)) - 1  # fine pixels j0, j0 + 1 straddle a coarse pixel
    for x in xs:
        ix = j0 + int(round(x / (px / ov)))
        rods[:, j0: j0 + 2, ix: ix + 2] = 90.0
    geom = Geometry(shape, px, shape, shape, px)
    imgs = []
    for fine in (warm, warm + rods):
        act = fine[margin: margin + nz * ov].reshape(nz, ov, shape, ov, shape, ov).mean((1, 3, 5))
        ph = Phantom(activity=act, mu=np.zeros_like(act), labels=np.zeros(act.shape, np.int16),
                     label_names={}, activity_fine=fine, mu_fine=np.zeros_like(fine),
                     margin=margin, oversample=ov, pixel_mm=px, slice_mm=4.0,
                     z_mm=np.array([0.0]), lesions=[])
        imgs.append(expected_data(ph, geom, ScannerModel()))
    out = {"x_mm": xs}
    for v, cfg in RECON_VERSIONS.items():
        im = [osem(e.prompts * 600, e.multiplicative * 600, e.background * 600, geom,
                   cfg)[0].numpy() for e in imgs]
        diff = im[1] - im[0]
        rad, tan = [], []
        for x in xs:
            col = int(round(x / px + (shape - 1) / 2))
            row = int(round((shape - 1) / 2))
            rad.append(_gauss_fwhm(diff[row, col - 6: col + 7], px))
            tan.append(_gauss_fwhm(diff[row - 6: row + 7, col], px))
        out[v] = {"radial_fwhm_mm": rad, "tangential_fwhm_mm": tan,
                  "radial_over_tangential": [a / b for a, b in zip(rad, tan, strict=True)]}
    return out


def _acf(res: np.ndarray, mask: np.ndarray, axis: int, max_lag: int = 4) -> list[float]:
    """Correlation of noise residuals ``(R, Z, H, W)`` between voxels ``lag`` apart along
    ``axis`` (2 = x, 1 = y of each slice), both inside ``mask`` ``(Z, H, W)``."""
    out = [1.0]
    n = mask.shape[axis]
    for lag in range(1, max_lag + 1):
        a, b = [slice(None)] * 3, [slice(None)] * 3
        a[axis], b[axis] = slice(0, n - lag), slice(lag, n)
        pair = mask[tuple(a)] & mask[tuple(b)]
        u = res[(slice(None), *a)][:, pair].ravel()
        v = res[(slice(None), *b)][:, pair].ravel()
        out.append(float(np.corrcoef(u, v)[0, 1]))
    return out


def _half_width_mm(acf: list[float], pixel_mm: float) -> float:
    """FWHM (mm) of an autocorrelation sampled at integer lags: twice the lag where it falls
    to 0.5, linearly interpolated."""
    for k in range(1, len(acf)):
        if acf[k] <= 0.5:
            frac = (acf[k - 1] - 0.5) / (acf[k - 1] - acf[k])
            return 2 * (k - 1 + frac) * pixel_mm
    return float("nan")


def texture(n_seeds: int = 3) -> dict:
    out = {}
    for shape in (96, 128):
        px = FOV / shape
        per = {v: {"acf_x": [], "acf_y": [], "length_mm": [], "cov": [], "large_rec600": []}
               for v in RECON_VERSIONS}
        secs = []
        for i in range(n_seeds):
            t0 = time.perf_counter()
            st = simulate_study(3000 + 2 * i, bmi="low", shape=shape, n_slices=8,
                                durations=(60, 600))
            secs.append(time.perf_counter() - t0)
            liver = rois.liver_roi(st)
            for v in RECON_VERSIONS:
                real = st.realizations(v, 60, 10)
                res = real - real.mean(0)
                ax, ay = _acf(res, liver, 2), _acf(res, liver, 1)
                p = per[v]
                p["acf_x"].append(ax)
                p["acf_y"].append(ay)
                p["length_mm"].append((_half_width_mm(ax, px) + _half_width_mm(ay, px)) / 2)
                p["cov"].append(100 * ensemble_cov(real, liver))
                img = st.images[(v, 600)]
                p["large_rec600"] += [float(img[les["mask"]].mean() / les["truth_kbq_ml"])
                                      for les in rois.lesion_rois(st, "large")]
        summ = {v: {"acf_x": np.mean(p["acf_x"], 0).tolist(),
                    "acf_y": np.mean(p["acf_y"], 0).tolist(),
                    "correlation_length_mm": float(np.mean(p["length_mm"])),
                    "ensemble_liver_cov_60s_pct": float(np.mean(p["cov"])),
                    "large_lesion_recovery_600s": float(np.mean(p["large_rec600"]))}
                for v, p in per.items()}
        summ["v2_over_v1"] = {k: summ["v2"][k] / summ["v1"][k] for k in (
            "correlation_length_mm", "ensemble_liver_cov_60s_pct",
            "large_lesion_recovery_600s")}
        summ["seconds_per_study_60s_600s"] = secs
        out[f"{shape}x{shape}"] = summ
    return out


def timing() -> dict:
    t = []
    for seed in (1000, 1001, 1002):
        t0 = time.perf_counter()
        simulate_study(seed, shape=96, n_slices=8, durations=DURATIONS)
        t.append(time.perf_counter() - t0)
    return {"seconds_per_study_96x8_v1_v2_7_durations": t,
            "note": "first one includes building the cached system matrices"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = {"timing": timing(), "texture": texture(), "counts": counts(), "psf": psf()}
    res["lesions"], res["v1_vs_v2"] = lesions_and_shift(args.seeds)
    txt = json.dumps(res, indent=1, default=float)
    print(txt)
    if args.out:
        with open(args.out, "w") as f:
            f.write(txt)


if __name__ == "__main__":
    main()
