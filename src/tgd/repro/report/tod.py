"""TOD-Net (seed 002) in reports: the section of the ``tgd reproduce`` report (its rows
aggregated over replicates, :func:`tod_section`) and the stand-alone report of ``tgd experiment
tod`` (:func:`tod_report_markdown`, :func:`write_tod_report`). Both take plain data: the dicts
of :mod:`tgd.repro.experiments.tod`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tgd.data.io import atomic_write
from tgd.repro.report.tables import cell, md_table, replicates_note
from tgd.repro.sim.classes import TASK_CLASSES

TITLES = {"ct": "Low-dose CT ({dose} dose -> normal dose)",
          "pet": "PET (60 s -> 600 s, v2)",
          "pet-tgd": "PET, TGD fine-tuning v1 -> v2 with MSE vs TOD loss (60 s -> 600 s)"}
IMAGE_COLUMNS = [("rmse_image", "RMSE"), ("psnr_image", "PSNR"), ("ssim_image", "SSIM"),
                 ("rmse_roi", "RMSE ROI"), ("psnr_roi", "PSNR ROI"), ("ssim_roi", "SSIM ROI")]
LESION = "lesion"
CLASSES = TASK_CLASSES[1:]  # every class but the background


def _title(mod: str, preset: Mapping) -> str:
    return TITLES[mod].format(dose=preset.get("ct_low_dose", "low"))


def tod_not_run_section() -> list[str]:
    """What the report says when its preset leaves TOD-Net out."""
    return ["## Task-oriented denoising (TOD-Net, seed 002)", "",
            "Not run with this preset: TOD-Net trains segmenters and three denoisers on CT and "
            "PET per replicate, which does not fit the `quick` preset's 15 minutes. `tgd "
            "reproduce --set tod=quick` adds it to every replicate, the `medium` and `paper` "
            "presets run it, `tgd reproduce --set tod=long --experiments tod` runs it alone on "
            "independent replicates (docs/reproduction-tod/). Committed results: docs/tod.md.",
            ""]


def tod_section(tod: Mapping) -> list[str]:
    """The reproduce report's TOD-Net section: per modality, image quality and lesion Dice of
    every method, mean [95 % CI] over the replicates (the findings are in the summary)."""
    p = tod["preset"]
    segs = list(p["segmenters"])
    rows = tod["rows"]
    md = ["## Task-oriented denoising (TOD-Net, seed 002)", "",
          f"TOD preset `{p['name']}` in every replicate: fresh CT and PET studies "
          f"({len(p['ct_train'])} training, {len(p['ct_test'])} test per modality), "
          f"segmenters {', '.join(segs)} trained on the normal-dose (600-s) images "
          f"({p['seg_iterations']} iterations; `{segs[0]}` is TOD-Net's task network, the "
          f"others never take part in training), DnCNN {p['width']}x{p['depth']} pre-trained "
          f"with MSE ({p['pretrain_iterations']} iterations), then {p['iterations']} more "
          "with each loss. Metrics against the normal-dose (600-s) image, averaged over a "
          "replicate's test studies; ROI: lesions dilated by 2 pixels; Gaussian filter: the "
          "low-dose input smoothed to the MSE-net's noise (its error against the normal-dose "
          "image in the liver), or as close as a Gaussian gets. " + replicates_note(rows),
          ""]
    for mod in dict.fromkeys(r["modality"] for r in rows):
        mrows = [r for r in rows if r["modality"] == mod]
        units = tod["units"][mod]
        bias = mod != "ct"  # PET's claim: lesion contrast kept (the seed's CT has none)
        md += [f"### {_title(mod, p)}", "",
               f"Image quality (RMSE in {units}, PSNR in dB):", ""]
        head = ["method"] + [c for _, c in IMAGE_COLUMNS] + (["lesion bias %"] if bias else [])
        md += md_table(head, [[r["method"]] + [cell(r, k, 4 if "ssim" in k else 2)
                                               for k, _ in IMAGE_COLUMNS]
                              + ([cell(r, "lesion_bias", 1, scale=100)] if bias else [])
                              for r in mrows]) + [""]
        md += ["Lesion Dice of each segmenter on each method's images:", ""]
        md += md_table(["method"] + segs,
                       [[r["method"]] + [cell(r, f"dice_{s}_{LESION}", 3) for s in segs]
                        for r in mrows]) + [""]
    return md


# ---- the stand-alone report of `tgd experiment tod` -------------------------------------------


def _f(v, nd=3):
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def tod_report_markdown(res: Mapping) -> str:
    """``report.md`` of ``tgd experiment tod`` (:func:`tgd.repro.experiments.tod.run_tod`'s result):
    per modality, the mean over seeds x test studies of every metric and the paired
    differences TOD-Net minus each baseline with their 95 % intervals."""
    p = res["preset"]
    lines = [f"# TOD-Net experiment (preset `{p['name']}`)", "",
             f"Wall time {res['wall_time_s'] / 60:.1f} min, {res['torch_threads']} torch "
             "thread(s). Settings: " + ", ".join(f"{k}={v}" for k, v in p.items()
                                                  if k != "name") + ".", ""]
    for mod, r in res["modalities"].items():
        segs = p["segmenters"]
        lines += [f"## {_title(mod, p)}", "",
                  f"Image quality against the normal-dose image (RMSE in {r['units']}; PSNR dB; "
                  "ROI: lesions dilated by 2 pixels); mean over seeds x test studies.", "",
                  "| method | " + " | ".join(c for _, c in IMAGE_COLUMNS) +
                  (" | lesion bias |" if mod != "ct" else " |"),
                  "|---" * (len(IMAGE_COLUMNS) + 1 + (mod != "ct")) + "|"]
        for m, t in r["table"].items():
            vals = [_f(t[k], 4 if "ssim" in k else 2) for k, _ in IMAGE_COLUMNS]
            if mod != "ct":
                vals.append(f"{100 * t['lesion_bias']:+.1f} %")
            lines.append(f"| {m} | " + " | ".join(vals) + " |")
        lines += ["", "Dice (mean over seeds x test studies) of each segmenter "
                  f"(`{segs[0]}` is TOD-Net's task network; the others are not used in "
                  "training):", "",
                  "| method | " + " | ".join(f"{s} {c}" for s in segs for c in CLASSES)
                  + " |", "|---" * (1 + len(segs) * 3) + "|"]
        for m, t in r["table"].items():
            lines.append(f"| {m} | " + " | ".join(_f(t[f"dice_{s}_{c}"]) for s in segs
                                                  for c in CLASSES) + " |")
        lines += ["", "Paired differences (mean [95 % CI], pairs = seeds x test studies):", "",
                  "| metric | " + " | ".join(r["differences"]) + " |",
                  "|---" * (1 + len(r["differences"])) + "|"]
        keys = [k for k, _ in IMAGE_COLUMNS] + [f"dice_{s}_{LESION}" for s in segs]
        if mod != "ct":
            keys.append("lesion_bias")
        for k in keys:
            cells = []
            for d in r["differences"].values():
                c = d[k]
                cells.append(f"{c['mean']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}] (n={c['n']})")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_tod_report(res: Mapping, out: str | Path) -> Path:
    """Write ``out/report.md`` for ``tgd experiment tod``'s results; returns its path."""
    path = Path(out) / "report.md"
    text = tod_report_markdown(res)
    atomic_write(path, lambda f: f.write_text(text))
    return path
