"""The report's figures: the results layout of ``tgd.repro.experiments`` turned into the plain data
that :mod:`tgd.repro.report.images` and :mod:`tgd.repro.report.plots` draw, saved as PNG files.

Each function writes one or more PNGs into ``folder`` and returns their file names (an empty
list when the results lack what the figure needs, e.g. a results.json read back without its
images). Keys read beyond the tables' columns:

- image examples: ``reference`` and ``images`` (2-D slices, kBq/mL), optional ``center``
  ((row, column) of the lesion or unseen feature in pixels), ``box`` (zoom side, pixels),
  ``pixel_mm`` and ``suv_per_kbq_ml`` (without it the images are shown in kBq/mL);
- training records: optional ``val_curve`` = {"time_s": [...], "loss": [...]} and, in the
  fine-tuning record, optional ``target_val_loss``;
- threshold rows: optional ``nrmse_vs_original_ci`` and ``random_nrmse_vs_original`` with its
  ``_ci`` (the band of dropping as many random maps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tgd.data.io import atomic_write
from tgd.repro.report import images as im
from tgd.repro.report import plots
from tgd.repro.report.paper import TABLE1, THRESHOLD_FRACTION_PCT

INPUT = "60-s input"


def save(fig, path: Path) -> str:
    """Write ``fig`` as a PNG at :data:`images.DPI` (atomically); returns the file name."""
    atomic_write(path, lambda p: fig.savefig(p, dpi=im.DPI, format="png"))
    return path.name


def _file_stem(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(text).lower()).strip("_")


def _in_units(ex: Mapping) -> tuple[dict, np.ndarray, str]:
    f = ex.get("suv_per_kbq_ml")
    k, unit = (float(f), "SUV") if f else (1.0, "kBq/mL")
    return ({n: np.asarray(v, float) * k for n, v in ex["images"].items()},
            np.asarray(ex["reference"], float) * k, unit)


def example_figures(ex: Mapping, title: str, stem: str, folder: Path, *,
                    reference_name: str = "600 s") -> list[str]:
    """The image grid of one example and, when it has a ``center``, line profiles through
    it."""
    if ex.get("reference") is None or not ex.get("images"):
        return []
    imgs, ref, unit = _in_units(ex)
    center = ex.get("center")
    names = [save(im.image_grid(imgs, ref, center=center, box=int(ex.get("box", 16)),
                                unit=unit, reference_name=reference_name, title=title),
                  folder / f"{stem}_grid.png")]
    if center is not None:
        names.append(save(im.line_profiles(imgs, ref, center, half_length=ex.get("box", 16),
                                           pixel_mm=ex.get("pixel_mm"), unit=unit,
                                           reference_name=reference_name, title=title),
                          folder / f"{stem}_profiles.png"))
    return names


def finetuning_examples(ft: Mapping, folder: Path) -> list[tuple[str, list[str]]]:
    """(test set, file names) per fine-tuning example."""
    out = []
    for test, ex in (ft.get("examples") or {}).items():
        title = f"{test}, slice {ex.get('slice')}, first 60-s realization"
        out.append((test, example_figures(ex, title, "finetuning_" + _file_stem(test),
                                          folder)))
    return out


def _points(rows: Sequence[Mapping], key: str) -> dict[str, tuple[float, object]]:
    return {r["net"]: (r[key], r.get(key + "_ci")) for r in rows
            if r.get(key) is not None and np.isfinite(float(r[key]))}


def tradeoff(ft: Mapping, folder: Path) -> list[str]:
    """Adaptation (v2 low-BMI PSNR) against retention (high-BMI liver CoV; v1 PSNR)."""
    rows = ft["rows"]

    def by(test, key):
        return _points([r for r in rows if r.get("test") == test and r["net"] != INPUT], key)

    x = by("v2 low BMI", "psnr_db")
    panels = []
    for test, key, label, better in (
            ("v2 high BMI", "liver_cov_pct", "retention: high-BMI v2 liver CoV (%)", "lower"),
            ("v1 low BMI", "psnr_db", "retention: v1 low-BMI PSNR (dB)", "higher")):
        y = by(test, key)
        pts = [{"name": n, "x": x[n][0], "x_ci": x[n][1], "y": y[n][0], "y_ci": y[n][1]}
               for n in x if n in y]
        if pts:
            panels.append({"points": pts, "x_label": "adaptation: v2 low-BMI PSNR (dB)",
                           "y_label": label, "y_better": better})
    if not panels:
        return []
    return [save(plots.tradeoff_panels(panels), folder / "tradeoff.png")]


def table1(ft: Mapping, folder: Path) -> list[str]:
    """Lesion bias and liver CoV on the low-BMI v2 study beside the paper's Table 1."""
    rows = [{**r, "name": r["net"]} for r in ft["rows"]
            if r.get("test") == "v2 low BMI" and r["net"] != INPUT]
    if not rows:
        return []
    paper = {}
    for r in rows:
        p = TABLE1.get(r["net"].split(" (")[0])
        if p:  # the paper's T is the 600-s image's ROI mean
            paper[r["net"]] = {"lesion_bias_vs600_pct": p["lesion_bias_pct"],
                               "liver_cov_pct": p["liver_cov_pct"]}
    fig = plots.compare_methods(rows, [("lesion_bias_vs600_pct", "lesion bias vs 600 s (%)"),
                                       ("lesion_bias_pct", "lesion bias vs truth (%)"),
                                       ("liver_cov_pct", "liver CoV (%)")],
                                paper=paper, paper_label="paper Table 1 (clinical data)",
                                title="low-BMI v2 test study")
    return [save(fig, folder / "table1.png")]


def _curve(c) -> dict:
    """A validation curve as {"time_s", "loss"}: as stored by the training loop
    (``[[iteration, seconds, loss], ...]``) or already in that form."""
    if isinstance(c, Mapping):
        return dict(c)
    return {"time_s": [float(p[1]) for p in c], "loss": [float(p[2]) for p in c]}


def training(trainings: Sequence[Mapping], folder: Path, *,
             target: float | None = None) -> list[str]:
    """Validation loss against wall time when the records carry curves; else the training
    time of each net."""
    curves = {t["name"]: _curve(t["val_curve"]) for t in trainings if t.get("val_curve")}
    if curves:
        return [save(plots.loss_vs_time(curves, target=target,
                                        target_label="v2-net's final validation loss"),
                     folder / "training_time.png")]
    rows = [{"name": t["name"], "train_time_s": t.get("train_time_s"),
             "train_time_s_ci": t.get("train_time_s_ci")} for t in trainings]
    if not rows:
        return []
    return [save(plots.compare_methods(rows, [("train_time_s", "training time (s, optimizer "
                                                               "steps only)")]),
                 folder / "training_time.png")]


def threshold(th: Mapping, folder: Path) -> list[str]:
    rows = th["rows"]
    if not rows:
        return []

    def pct(key):
        if not all(r.get(key) is not None for r in rows):
            return None
        return [100 * float(r[key]) for r in rows]

    def pct_ci(key):
        if not all(r.get(key) is not None for r in rows):
            return None
        return [[100 * float(r[key][0]) for r in rows], [100 * float(r[key][1]) for r in rows]]

    ci = pct_ci("nrmse_vs_original_ci")
    band = pct_ci("random_nrmse_vs_original_ci")
    fig = plots.threshold_sweep(
        [r["threshold"] for r in rows], pct("nrmse_vs_original"),
        change_ci=None if ci is None else list(zip(*ci, strict=True)),
        random_change=pct("random_nrmse_vs_original"),
        random_band=None if band is None else (band[0], band[1]),
        fraction_dropped=pct("fraction_dropped"), paper_fraction=THRESHOLD_FRACTION_PCT,
        title="kernel dropping on the v1-net")
    names = [save(fig, folder / "threshold.png")]
    ex = th.get("example") or {}
    dropped = ex.get("dropped") or {}
    if "0" in dropped and len(dropped) > 1:
        grid = {**ex, "reference": dropped["0"],
                "images": {f"phi = {k}": v for k, v in dropped.items() if k != "0"}}
        names += example_figures(grid, f"v1-net with kernels dropped, slice {ex.get('slice')}",
                                 "threshold", folder,
                                 reference_name="original v1-net (phi = 0)")
    return names


def online(on: Mapping, folder: Path) -> list[str]:
    def study(r):
        return r.get("study_index", r.get("study"))

    several = len({study(r) for r in on["rows"]}) > 1
    rows = [{**r, "name": f"{r['net']} (study {study(r)})" if several else r["net"]}
            for r in on["rows"]]
    metrics = [("unseen_nrmse_pct", "unseen-feature NRMSE (%)"),
               ("background_cov_pct", "background CoV (%)")]
    if any(r.get("noise_reduction_kept_pct") is not None for r in rows):
        metrics.append(("noise_reduction_kept_pct", "v2-net's noise reduction kept (%)"))
    names = [save(plots.compare_methods(rows, metrics), folder / "online.png")] if rows else []
    for ex in on.get("examples") or []:
        names += example_figures(ex, f"study {ex.get('study')}, slice {ex.get('slice')}: "
                                     "unseen bladder lobe / catheter",
                                 f"online_{ex.get('study')}", folder)
    return names
