"""Regenerate docs/figures/pet_simulator.png and the numbers in docs/pet_simulator.md.

    .venv/bin/python bench/figure_simulator.py [--out docs/figures/pet_simulator.png]

Prints a JSON summary of the physics metrics (32-slice 128 x 128 studies, seeds 0/1/2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tgd.evaluation.metrics import (  # noqa: E402
    ensemble_cov,
    interior,
    neighbour_correlation,
    pair_noise_cov,
)
from tgd.repro.sim import LABELS, simulate_study  # noqa: E402


def liver_roi(st):
    lesions = np.isin(st.labels, [les["label"] for les in st.lesions])
    return interior(st.mask("liver"), 1, exclude=lesions)


def metrics(low, high):
    out: dict = {"low_bmi": {}, "high_bmi": {}}
    liver = liver_roi(low)
    for v in ("v1", "v2"):
        real = low.realizations(v, 60, 10)
        cx, cy = neighbour_correlation(real - real.mean(0), liver)
        les = low.lesions[0]
        m = low.mask(les["name"])
        out[v] = {
            "neighbour_corr_x": cx, "neighbour_corr_y": cy, "neighbour_corr_mean": (cx + cy) / 2,
            "ensemble_liver_cov_60s": ensemble_cov(real, liver),
            "lesion": {k: les[k] for k in ("host", "radius_mm", "to_liver")},
            "lesion_recovery_600s": float(low.images[(v, 600)][m].mean() / les["activity_kbq_ml"]),
            "lesion_recovery_ensemble_60s": float(real.mean(0)[m].mean() / les["activity_kbq_ml"]),
            "liver_mean_600s_over_truth": float(low.images[(v, 600)][liver].mean()
                                                / low.activity[liver].mean()),
            "single_image_liver_cov": {
                str(d): float(low.images[(v, d)][liver].std() / low.images[(v, d)][liver].mean())
                for d in (30, 45, 60, 90, 120, 180, 600)},
        }
        noise = {}
        for d in (30, 45, 60, 90, 120, 180, 300):
            a, b = low.realizations(v, d, 2)
            noise[str(d)] = pair_noise_cov(a, b, liver)
        out[v]["noise_liver_cov"] = noise
    for name, st in (("low_bmi", low), ("high_bmi", high)):
        a, b = st.realizations("v2", 60, 2)
        c = st.meta["counts_600s"]
        out[name] = {
            "bmi": st.meta["bmi"], "mean_diameter_cm": st.meta["mean_diameter_cm"],
            "prompts_per_slice_600s": c["prompts_per_slice"],
            "trues_per_slice_600s": c["expected_trues"] / st.labels.shape[0],
            "scatter_fraction": c["scatter_fraction"], "randoms_fraction": c["randoms_fraction"],
            "noise_liver_cov_v2_60s": pair_noise_cov(a, b, liver_roi(st)),
        }
    return out


def figure(low, high, pelvis, path: Path):
    z = int(np.argmax((low.labels == low.lesions[0]["label"]).sum(axis=(1, 2))))
    zh = min(z, high.labels.shape[0] - 1)
    zp = int(np.argmax((pelvis.labels == LABELS["catheter"]).sum(axis=(1, 2))))
    zb = int(np.argmax((pelvis.labels == LABELS["bladder_unseen"]).sum(axis=(1, 2))))
    crop = (slice(18, 110), slice(4, 124))
    kw = dict(cmap="gray_r", vmin=0, vmax=7, interpolation="nearest")
    fig, ax = plt.subplots(4, 4, figsize=(13, 11.2))
    panels = [
        (low.suv(low.activity)[z], "true activity (SUV), low BMI", kw),
        (low.labels[z], "labels (organs, lesion)", dict(cmap="tab20", vmin=0, vmax=24,
                                                        interpolation="nearest")),
        (low.mu[z], "mu at 511 keV (1/cm)", dict(cmap="gray", vmin=0, vmax=0.17)),
        (high.suv(high.activity)[zh], f"true activity, high BMI ({high.meta['bmi']:.0f})", kw),
        (low.suv(low.images[("v1", 60)])[z], "v1 OSEM, 60 s", kw),
        (low.suv(low.images[("v1", 600)])[z], "v1 OSEM, 600 s", kw),
        (low.suv(low.images[("v2", 60)])[z], "v2 OSEM, 60 s", kw),
        (low.suv(low.images[("v2", 600)])[z], "v2 OSEM, 600 s", kw),
        (low.suv(low.images[("v2", 30)])[z], f"v2 30 s, low BMI ({low.meta['bmi']:.0f})", kw),
        (high.suv(high.images[("v2", 30)])[zh], f"v2 30 s, high BMI ({high.meta['bmi']:.0f})",
         kw),
        (low.suv(low.images[("v2", 180)])[z], "v2 180 s, low BMI", kw),
        (high.suv(high.images[("v2", 180)])[zh], "v2 180 s, high BMI", kw),
        (pelvis.suv(pelvis.activity)[zb], "unseen: bilobed hot bladder (truth)",
         dict(kw, vmax=20)),
        (pelvis.suv(pelvis.images[("v2", 60)])[zb], "unseen bladder, v2 60 s", dict(kw, vmax=20)),
        (pelvis.suv(pelvis.activity)[zp], "unseen: catheter (truth)", dict(kw, vmax=20)),
        (pelvis.suv(pelvis.images[("v2", 60)])[zp], "catheter, v2 60 s", dict(kw, vmax=20)),
    ]
    for a, (img, title, k) in zip(ax.ravel(), panels, strict=True):
        a.imshow(img[crop], **k)
        a.set_title(title, fontsize=10)
        a.set_axis_off()
    fig.suptitle("tgd PET simulator: 128 x 128 x 4 mm, slice-wise OSEM (v1 3 it x 8 subsets, "
                 "v2 3 x 16) "
                 "(display SUV 0-7; pelvis 0-20)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    # Zoom on the liver noise texture at 60 s.
    zoom = path.with_name(path.stem + "_texture.png")
    fig, ax = plt.subplots(1, 3, figsize=(10, 3.6))
    yx = np.argwhere(liver_roi(low)[z])
    cy, cx = yx.mean(0).astype(int)
    win = (slice(cy - 16, cy + 16), slice(cx - 20, cx + 20))
    for a, v in zip(ax[:2], ("v1", "v2"), strict=True):
        a.imshow(low.suv(low.images[(v, 60)])[z][win], cmap="gray_r", vmin=0, vmax=5,
                 interpolation="nearest")
        a.set_title(f"{v} 60 s liver (4-mm pixels)", fontsize=10)
        a.set_axis_off()
    ax[2].imshow(low.suv(low.activity)[z][win], cmap="gray_r", vmin=0, vmax=5,
                 interpolation="nearest")
    ax[2].set_title("truth", fontsize=10)
    ax[2].set_axis_off()
    fig.tight_layout()
    fig.savefig(zoom, dpi=72)
    plt.close(fig)
    return path, zoom


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/figures/pet_simulator.png")
    args = ap.parse_args()
    low = simulate_study(0, bmi="low")
    high = simulate_study(1, bmi="high")
    pelvis = simulate_study(2, unseen="both")
    print(json.dumps(metrics(low, high), indent=1, default=float))
    print(figure(low, high, pelvis, Path(args.out)))


if __name__ == "__main__":
    main()
