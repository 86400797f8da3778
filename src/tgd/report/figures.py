"""Figures of the report (matplotlib, Agg backend, small PNGs)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tgd.report.paper import TABLE1  # noqa: E402

DPI = 80


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _strip(panels: list[tuple[str, np.ndarray]], title: str, path: Path, vmax=None) -> str:
    n = len(panels)
    ref = panels[-1][1]
    ys, xs = np.nonzero(ref > 0.02 * ref.max()) if ref.max() > 0 else ([], [])
    crop = (slice(max(ys.min() - 2, 0), ys.max() + 3), slice(max(xs.min() - 2, 0),
                                                            xs.max() + 3)) if len(ys) else ()
    h, w = ref[crop].shape
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n, 1.9 * h / w + 0.5))
    axes = np.atleast_1d(axes)
    vmax = vmax if vmax is not None else float(np.percentile(ref, 99.5))
    for ax, (name, img) in zip(axes, panels, strict=True):
        ax.imshow(img[crop], cmap="gray_r", vmin=0, vmax=vmax)
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def finetuning_bars(ft: dict, path: Path) -> str:
    rows = [r for r in ft["rows"] if r["test"] == "v2 low BMI" and r["net"] != "60-s input"]
    names = [r["net"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    x = np.arange(len(names))
    for ax, key, label in ((axes[0], "lesion_bias_vs600_pct", "lesion bias vs 600 s (%)"),
                           (axes[1], "lesion_bias_pct", "lesion bias vs truth (%)"),
                           (axes[2], "liver_cov_pct", "liver CoV (%)")):
        ax.bar(x, [r[key] for r in rows], color="tab:blue", label="simulation (v2 low BMI)")
        if key != "lesion_bias_pct":
            pk = "lesion_bias_pct" if key.startswith("lesion") else key
            pv = [TABLE1.get(n.split(" (")[0], {}).get(pk, np.nan) for n in names]
            ax.plot(x, pv, "r*", ms=10, label="paper Table 1")
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.axhline(0, color="k", lw=0.5)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def finetuning_images(ft: dict, folder: Path) -> list[str]:
    out = []
    for test, ex in ft["examples"].items():
        panels = list(ex["images"].items()) + [("600 s", ex["reference"])]
        name = "finetuning_" + test.replace(" ", "_").lower() + ".png"
        out.append(_strip(panels, f"{test}, slice {ex['slice']} (first 60-s realization)",
                          folder / name))
    return out


def training_time(trainings: list[dict], path: Path) -> str:
    names = [t["name"] for t in trainings]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.barh(names, [t["train_time_s"] for t in trainings], color="tab:green")
    ax.set_xlabel("training time (s, optimizer steps only)")
    ax.tick_params(labelsize=7)
    return _save(fig, path)


def threshold_plot(th: dict, path: Path) -> str:
    rows = th["rows"]
    phi = [r["threshold"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
    axes[0].plot(phi, [100 * r["fraction_dropped"] for r in rows], "o-")
    axes[0].set_xlabel("threshold phi")
    axes[0].set_ylabel("parameters dropped (%)")
    axes[1].plot(phi, [100 * r["nrmse_vs_original"] for r in rows], "o-", color="tab:red")
    axes[1].set_xlabel("threshold phi")
    axes[1].set_ylabel("NRMSE dropped vs original (%)")
    return _save(fig, path)


def threshold_images(th: dict, path: Path) -> str:
    ex = th["example"]
    panels = [("60-s input", ex["input"])]
    panels += [(f"phi={k}", v) for k, v in ex["dropped"].items()]
    panels += [("600 s", ex["reference"])]
    return _strip(panels, "v1-net with kernels dropped (phi = 0: the original net)", path)


def online_images(on: dict, folder: Path) -> list[str]:
    out = []
    for ex in on["examples"]:
        panels = list(ex["images"].items()) + [("600 s", ex["reference"])]
        ref = ex["reference"]
        vmax = float(np.percentile(ref[ref > 0], 90)) * 3 if (ref > 0).any() else None
        out.append(_strip(panels, f"study {ex['study']}, slice {ex['slice']}: unseen bladder "
                                  "lobe / catheter (display saturated)",
                          folder / f"online_{ex['study']}.png", vmax=vmax))
    return out


def online_bars(on: dict, path: Path) -> str:
    rows = on["rows"]
    names = [f"{r['net']}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    x = np.arange(len(rows))
    axes[0].bar(x, [r["unseen_nrmse_pct"] for r in rows], color="tab:purple")
    axes[0].set_title("NRMSE in the unseen-feature ROI (%)", fontsize=9)
    axes[1].bar(x, [r["background_cov_pct"] for r in rows], color="tab:orange")
    axes[1].set_title("background CoV (%)", fontsize=9)
    for ax in axes:
        ax.set_xticks(x, names, rotation=40, ha="right", fontsize=7)
    return _save(fig, path)
