"""Write the report folder: results.json, CSV tables, PNG figures, report.md (links the PNGs,
for GitHub) and report.html (one self-contained page, the PNGs embedded).

The page opens with the verdict table (:mod:`tgd.repro.report.summary`), then a table of contents,
each finding's checks, one section per experiment and the definitions. Each section is one
function below returning its Markdown lines (and writing its figures). Table rows may carry
``<metric>_ci`` = [lo, hi] and ``n_replicates``; cells then read ``mean [lo, hi]``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from tgd.data.io import atomic_write, to_jsonable
from tgd.repro.report import figures
from tgd.repro.report.findings import mode_comparison
from tgd.repro.report.markdown import to_html
from tgd.repro.report.paper import CITATION, TABLE1
from tgd.repro.report.summary import counts_line, finding_blocks, normalise, slug, summary_table
from tgd.repro.report.tables import DASH, cell, fmt, md_table, replicates_note
from tgd.repro.report.tod import tod_not_run_section, tod_section

TITLE = "Targeted Gradient Descent: reproduction on simulated PET data"
TOD_TITLE = "TGD and TOD-Net: reproduction on simulated PET and CT data"


def title(res: Mapping) -> str:
    """The report's title: TOD-Net's experiment adds low-dose CT to the PET data."""
    return TOD_TITLE if "tod" in res else TITLE
FIGURES = "figures"
TABLE1_TEST = "v2 low BMI"  # the paper's Table 1 test set; every other one shows retention


def _jsonable(x):
    """Images dropped (they are in the figures), non-finite floats as "inf"/"-inf"/"nan"
    strings (:func:`load_results` turns them back)."""
    return to_jsonable(x, arrays="drop", nonfinite="string")


def _restore(x):
    if isinstance(x, dict):
        return {k: _restore(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_restore(v) for v in x]
    if x in ("inf", "-inf", "nan"):
        return float(x)
    return x


def load_results(path: str | Path) -> dict:
    """A ``results.json`` as written by :func:`write_report`, with "inf"/"nan" strings turned
    back into floats (the images are not in it: the image figures are left out)."""
    path = Path(path)
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(res, dict) or "preset" not in res or "timings" not in res:
        raise ValueError(f"{path} is not a tgd results.json (no 'preset' and 'timings')")
    return _restore(res)


def _strip_images(res: dict) -> dict:
    out = dict(res)
    for key in ("finetuning", "threshold", "online"):
        if key in out:
            out[key] = {k: v for k, v in out[key].items()
                        if k not in ("examples", "example", "nets")}
    return out


def _csv(rows: list[dict], path: Path) -> None:
    rows = [{k: v for k, v in r.items() if not isinstance(v, list)} for r in rows]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    _write_text(path, buf.getvalue(), newline="")


def _write_text(path: Path, text: str, newline: str | None = None) -> None:
    atomic_write(path, lambda p: p.write_text(text, newline=newline))


def _img(alt: str, name: str) -> list[str]:
    return [f"![{alt}]({FIGURES}/{name})", ""]


# ----------------------------------------------------------------------------- sections


def header_section(res: Mapping) -> list[str]:
    """Title and one line on the run; the caveats follow the summary (:func:`about_section`)."""
    p, t = res["preset"], res["timings"]
    wall = t.get("wall_s", t.get("total_s"))
    commit = (res.get("environment") or {}).get("git_commit")
    changed = p.get("notes", "").partition("changed: ")[2]  # never passed off as the preset
    return [f"# {title(res)}", "",
            f"Preset **{p['name']}**" + (f" (changed: {changed})" if changed else "")
            + (f" · {wall / 60:.1f} min wall time" if wall else "")
            + (f" · commit `{commit[:10]}`" if commit else "")
            + " · simulated data: compare the direction of each effect with the paper's, not "
              "its size.", ""]


def about_section(res: Mapping) -> list[str]:
    p, t = res["preset"], res["timings"]
    parts = [f"{k[:-2]} {t[k]:.0f} s" for k in ("simulate_s", "pretrain_s", "finetuning_s",
                                                 "threshold_s", "online_s", "tod_s") if k in t]
    seeds = res.get("replicate_seeds")
    reps = (f" **{len(seeds)} independent replicates** (seeds {seeds}: phantoms, noise, "
            "network initialisation and batch order all reseeded; run in parallel processes, "
            "one-replicate times "
            + ", ".join(f"{x / 60:.1f}" for x in t.get("replicate_total_s", [])) + " min)."
            if seeds else "")
    return ["## About this run", "",
            f"Preset **{p['name']}** ({p.get('notes', '')}), generated by "
            f"`{res.get('command')}`" + (f" ({', '.join(parts)})" if parts else "")
            + "." + reps + " Paper: " + CITATION, "",
            "The data are simulated (`tgd.data`: analytic torso phantoms, 2-D PET physics, "
            "two reconstruction protocols v1 and v2, described in docs/pet_simulator.md), not "
            "the paper's clinical studies, and the networks are smaller and trained far shorter "
            "than the paper's when the preset is not `paper`, so only the direction of the "
            "effects can be compared, not the values.", ""]


def summary_section(findings: Sequence[Mapping]) -> list[str]:
    md = ["## Summary: which of the paper's findings hold", ""]
    if not findings:
        return md + ["No experiment was run that tests the paper's findings.", ""]
    md += ["Each pre-registered endpoint (docs/reproduction.md, *Pre-registered endpoints*): "
           "the effect, signed, with its 95 % confidence interval over the independent "
           "replicates, then the test that decides it (one-sided, alpha 0.05; Holm within the "
           "primary and the premise families; positive controls must be detected for the "
           "retention findings to mean anything) and its verdict. Image metrics are against "
           "the noiseless reconstruction of the same protocol. Replicates in which a net of "
           "the comparison diverged are left out and counted.", ""]
    return md + summary_table(findings) + ["", counts_line(findings), ""]


def contents_section(headings: Sequence[str]) -> list[str]:
    return ["**Contents:** " + " · ".join(f"[{h}](#{slug(h)})" for h in headings), ""]


def findings_section(findings: Sequence[Mapping]) -> list[str]:
    if not findings:
        return []
    return (["## Findings in detail", "",
             "Each finding's effect, test and the numbers behind them. Endpoints, margins and "
             "their reasons: docs/reproduction.md; code: `tgd/repro/experiments/findings.py`, "
             "`tgd/repro/hypotheses.py`. Superiority holds when the one-sided test rejects "
             "(p < 0.05) and does not hold when the 90 % interval lies wholly on the wrong side "
             "of 0; non-inferiority holds when the one-sided bound clears the margin and does "
             "not hold when the 90 % interval lies wholly beyond it; TOST holds when the 90 % "
             "interval lies within the margins; otherwise inconclusive.", ""]
            + finding_blocks(findings))


DIVERGED_NOTE = (" A net marked *k diverged* lost k replicates to divergence; its numbers "
                 "average only the replicates that converged.")


def net_name(row: Mapping) -> str:
    """The net's name, with the count of its diverged replicates (excluded from the means)."""
    k = row.get("n_diverged") or 0
    return row["net"] + (f" (**{k} diverged**, excluded)" if k else "")


def finetuning_section(ft: Mapping, preset: Mapping, figs: Path) -> list[str]:
    low = [r for r in ft["rows"] if r.get("test") == TABLE1_TEST]
    md = ["## Fine-tuning v1 -> v2 (paper Table 1, Fig. 5)", "",
          f"Low-BMI v2 test study, R = {preset.get('realizations')} x 60-s realizations, each "
          "normalised from itself alone. Large-lesion bias against the **noiseless "
          "reconstruction** of the same protocol (its lesion-ROI mean as T: the denoiser's "
          "bias alone; the findings decide on it), against the 600-s image (the paper's T, "
          "which has its own noise) and against the phantom's concentration (it includes the "
          "partial-volume loss of the 4-mm rim). PSNR and SSIM against the noiseless "
          "reconstruction. " + replicates_note(low) + DIVERGED_NOTE, ""]
    rows = []
    for r in low:
        pap = TABLE1.get(r["net"].split(" (")[0], {})
        rows.append([net_name(r), fmt(pap.get("lesion_bias_pct")), fmt(pap.get("liver_cov_pct")),
                     cell(r, "lesion_bias_vsnl_pct"), cell(r, "lesion_bias_vs600_pct"),
                     cell(r, "lesion_bias_pct"), cell(r, "lesion_max_bias_vsnl_pct"),
                     cell(r, "liver_cov_pct"), cell(r, "psnr_db"), cell(r, "ssim")])
    md += md_table(["net", "paper bias %", "paper CoV %", "bias vs noiseless %",
                    "bias vs 600 s %", "bias vs truth %", "SUVmax bias vs noiseless %",
                    "liver CoV %", "PSNR dB", "SSIM"], rows) + [""]
    for name in figures.table1(ft, figs):
        md += _img("Lesion bias and liver CoV (dots, with 95 % CIs where replicated) beside "
                   "the paper's Table 1 (open diamonds), same axis", name)
    return md


def retention_section(ft: Mapping, figs: Path) -> list[str]:
    md = ["## Adaptation against retention", "",
          "What each method gains on the new reconstruction (v2) against what it keeps on the "
          "data it was trained for (high-BMI studies, v1 reconstructions).", ""]
    for name in figures.tradeoff(ft, figs):
        md += _img("Adaptation (x) against retention (y), one point per method", name)
    tests = list(dict.fromkeys(r.get("test") for r in ft["rows"]))
    for test in [t for t in tests if t != TABLE1_TEST]:
        rs = [r for r in ft["rows"] if r.get("test") == test]
        md += [f"### {test}", "", "Bias, PSNR, SSIM and NRMSE against the noiseless "
               "reconstruction of the same protocol (bias vs 600 s beside it). "
               + replicates_note(rs) + DIVERGED_NOTE, ""]
        md += md_table(["net", "bias vs noiseless %", "bias vs 600 s %", "liver CoV %",
                        "PSNR dB", "SSIM", "NRMSE"],
                       [[net_name(r), cell(r, "lesion_bias_vsnl_pct"),
                         cell(r, "lesion_bias_vs600_pct"), cell(r, "liver_cov_pct"),
                         cell(r, "psnr_db"), cell(r, "ssim"), cell(r, "nrmse")]
                        for r in rs]) + [""]
    return md


def images_section(ft: Mapping, figs: Path) -> list[str]:
    examples = figures.finetuning_examples(ft, figs)
    if not examples:
        return []
    zoomed = any(ex.get("center") is not None for ex in ft["examples"].values())
    md = ["## Denoised images", "",
          "Each row: one method on the first 60-s realization; the slice, "
          + ("a zoom on the largest lesion (orange square), " if zoomed else "")
          + "and the difference to the 600-s image (red: above it, blue: below). One display "
          "window for every image, stated above the grid"
          + ("; profiles run through the lesion's centre." if zoomed else
             " (these results record no lesion centre: no zoom, no profiles)."), ""]
    for test, names in examples:
        md += [f"### {test}", ""]
        if not names:
            md += ["(no images in these results)", ""]
        for name in names:
            kind = "line profiles" if name.endswith("_profiles.png") else "image grid"
            md += _img(f"{test}: {kind}", name)
    return md


def time_to_quality_section(rows: Sequence[Mapping], preset: Mapping) -> list[str]:
    if not rows:
        return []
    md = ["### Time to quality", "",
          "Training seconds (optimizer steps only) until the validation MSE on a held-out v2 "
          "study first comes within 2 % of the v2-net's final validation MSE (mean of its last "
          f"3 points), sampled every {preset.get('val_every')} iterations for every net, from "
          "iteration 0 (the v1-net before fine-tuning). 'reached' is the share of replicates "
          "that got there; where a net did not, its whole training time counts (a lower "
          "bound). " + replicates_note(rows), ""]
    return md + md_table(["net", "seconds", "reached %", "validation MSE at start",
                          "final validation MSE"],
                         [[r["net"], cell(r, "seconds", 1), fmt(r.get("reached_pct"), 0),
                           cell(r, "start_mse", 5), cell(r, "final_mse", 5)]
                          for r in rows]) + [""]


def training_section(ft: Mapping, figs: Path) -> list[str]:
    md = ["## Training", "", "Per net of the first replicate.", ""]
    md += md_table(["net", "method", "mode", "iterations", "train time s", "trained fraction",
                    "last loss", "frozen weights kept"],
                   [[x["name"], x.get("method", DASH), x.get("mode") or DASH,
                     x.get("iterations"), cell(x, "train_time_s", 1),
                     cell(x, "trained_fraction"), fmt(x.get("train_loss_last"), 4),
                     {None: DASH, True: "yes", False: "NO"}[x.get("frozen_preserved")]]
                    for x in ft["training"]]) + [""]
    for name in figures.training(ft["training"], figs, target=ft.get("target_val_loss")):
        md += _img("Validation loss against wall time" if any(
            x.get("val_curve") for x in ft["training"]) else "Training time per net", name)
    md += ["Training time counts the optimizer steps (forward, backward, update) only. TGD in "
           "`activation` mode is the paper's TGD layer (gradient masked at conv outputs); "
           "`parameter` mode uses the exact gradient and masks only the update (see "
           "docs/training.md for why the commands default to it).", ""]
    modes = mode_comparison(ft)
    if modes:
        md += ["The two modes, compared on these numbers:", ""] + [f"- {x}" for x in modes]
        md.append("")
    return md


def threshold_section(th: Mapping, figs: Path) -> list[str]:
    rows = th["rows"]
    md = ["## Threshold study: kernel dropping on the v1-net (paper Fig. 4)", "",
          "Low-BMI v1 test study; 'vs original' compares the dropped net's images with the "
          "original v1-net's; PSNR and bias against the noiseless reconstruction. "
          + replicates_note(rows), ""]
    md += md_table(["phi", "parameters dropped %", "maps dropped", "NRMSE vs original %",
                    "PSNR vs original dB", "PSNR dB", "liver CoV %", "bias vs noiseless %"],
                   [[fmt(r["threshold"]), cell(r, "fraction_dropped", 1, scale=100),
                     f"{r.get('maps_dropped', DASH)}/{r.get('maps_considered', DASH)}",
                     cell(r, "nrmse_vs_original", scale=100), cell(r, "psnr_vs_original_db"),
                     cell(r, "psnr_db"), cell(r, "liver_cov_pct"),
                     cell(r, "lesion_bias_vsnl_pct")] for r in rows]) + [""]
    for name in figures.threshold(th, figs):
        alt = ("Image change and parameters dropped against the threshold"
               if name == "threshold.png" else
               "Kernel dropping: line profiles" if name.endswith("_profiles.png") else
               "Kernel dropping: images against the original v1-net")
        md += _img(alt, name)
    return md


def online_section(on: Mapping, figs: Path) -> list[str]:
    md = ["## Online learning on unseen features (paper Fig. 6)", "",
          "Pelvis studies with a bilobed very hot bladder and a urinary catheter, which no "
          "training study contains. Unseen ROI: those labels dilated by one voxel; errors "
          "against the noiseless reconstruction of the same protocol, averaged over the 60-s "
          "realizations. Background CoV: "
          "ensemble CoV in soft tissue (no liver in the pelvis). "
          + replicates_note(on["rows"]), ""]
    md += md_table(["net", "unseen NRMSE %", "unseen mean error %", "unseen MAE %",
                    "background CoV %", "v2-net's noise reduction kept %", "PSNR dB", "SSIM"],
                   [[net_name(r) + (f" (study {r['study_index']})" if r.get("study_index")
                                    else ""),
                     cell(r, "unseen_nrmse_pct"), cell(r, "unseen_mean_error_pct"),
                     cell(r, "unseen_mae_pct"), cell(r, "background_cov_pct"),
                     cell(r, "noise_reduction_kept_pct", 0), cell(r, "psnr_db"),
                     cell(r, "ssim")] for r in on["rows"]]) + [""]
    md += ["Online training (first replicate): stopped by the label-free rule (Noise2Noise "
           "loss on held-out slices; the weights of the best validation are kept).", ""]
    md += md_table(["online net", "from", "loss", "iterations run", "best iteration",
                    "train time s", "trained fraction", "frozen weights kept"],
                   [[x["name"], x.get("source", DASH), x.get("loss", "mse"), x.get("iterations"),
                     x.get("best_iteration", DASH), cell(x, "train_time_s", 1),
                     cell(x, "trained_fraction"), "yes" if x.get("frozen_preserved") else "NO"]
                    for x in on["training"]]) + [""]
    for name in figures.online(on, figs):
        alt = ("Unseen-feature error and background noise per net" if name == "online.png"
               else "Online learning: line profiles" if name.endswith("_profiles.png")
               else "Online learning: images")
        md += _img(alt, name)
    return md


def definitions_section() -> list[str]:
    return ["## Definitions", "",
            "- Ensemble bias (%) = 100 ((1/R) sum_r mu_r - T) / T, mu_r the lesion-ROI mean of "
            "realization r (the lesion's label), averaged over the study's large lesions "
            "(radius >= 10 mm); small lesions (4.5-7.5 mm) are reported apart "
            "(`small_lesion_*` in the CSV).",
            "- Ensemble CoV (%) = 100 ((1/N) sum_{i in ROI} sigma_i) / mean_ROI, sigma_i the "
            "standard deviation across the R realizations of voxel i (ddof 1); liver ROI: "
            "liver eroded by one voxel, lesions excluded.",
            "- Noiseless reconstruction: the expected counts of the 600-s acquisition (no "
            "Poisson noise) reconstructed with the same OSEM (iterations, subsets, filter) as "
            "the noisy images: what the protocol makes of the object, without noise. The 600-s "
            "image carries its own noise (6.7 % per voxel in a low-BMI liver at 96 x 96).",
            "- PSNR (peak: the reference's maximum), SSIM (Gaussian window sigma 1.5, per "
            "slice) and NRMSE against the noiseless reconstruction (``_vs600`` in the CSV: "
            "against the 600-s image), inside the body, averaged over realizations. SUVmax / "
            "SUVpeak bias: the lesion's hottest voxel / hottest 3 x 3 x 3 mean against the "
            "noiseless image's. Code: `tgd/evaluation/metrics.py`, `tgd/repro/quality.py`.",
            "- Every image a net sees is divided by its own body mean (estimated from the image "
            "alone, as `tgd denoise` does), in training and at test time; no reference image "
            "and no label is read at inference.",
            "- Diverged run: an adaptation whose final validation loss is not finite or above "
            "10 x its parent's; flagged, excluded from every mean and counted.",
            "- 95 % CI: confidence interval of the mean over independent replicates (each "
            "replicate reseeds phantom, noise, network initialisation and batch order).", ""]


def configuration_section(res: Mapping) -> list[str]:
    return ["## Configuration and versions", "", "```json",
            json.dumps(_jsonable({"preset": res["preset"], "environment": res.get("environment"),
                                  "studies": res.get("studies"), "timings": res["timings"]}),
                       indent=1), "```", ""]


def experiment_sections(res: Mapping, figs: Path) -> list[str]:
    """One section per experiment in ``res`` (writing their figures into ``figs``)."""
    md: list[str] = []
    if "finetuning" in res:
        ft = res["finetuning"]
        md += finetuning_section(ft, res["preset"], figs)
        md += retention_section(ft, figs)
        md += images_section(ft, figs)
        md += training_section(ft, figs)
        md += time_to_quality_section(res.get("time_to_quality") or [], res["preset"])
    if "threshold" in res:
        md += threshold_section(res["threshold"], figs)
    if "online" in res:
        md += online_section(res["online"], figs)
    if "tod" in res:
        md += tod_section(res["tod"])
    elif "tod" in res["preset"]:  # a preset that could run TOD-Net but leaves it out
        md += tod_not_run_section()
    return md


# ----------------------------------------------------------------------------- the folder

TABLES = {"finetuning.csv": ("finetuning", "rows"), "training.csv": ("finetuning", "training"),
          "threshold.csv": ("threshold", "rows"), "online.csv": ("online", "rows"),
          "online_training.csv": ("online", "training"), "tod.csv": ("tod", "rows")}


def write_tables(res: Mapping, folder: Path) -> list[str]:
    """The CSV tables of the experiments in ``res``; returns their file names."""
    names = []
    for name, (experiment, key) in TABLES.items():
        if experiment in res:
            _csv(res[experiment][key], folder / name)
            names.append(name)
    return names


def _findings(res: dict) -> list:
    """``res["findings"]``, computed from its replicates (and stored) when absent."""
    if res.get("findings") is None:
        res["findings"] = []
        if res.get("replicates"):
            from tgd.repro.experiments.findings import all_findings

            res["findings"] = all_findings(res)
    return normalise(res["findings"])


def write_report(res: dict, folder: str | Path) -> Path:
    """Write the report of ``res`` (the experiments' results, or :func:`load_results`'s) into
    ``folder``. Findings already in ``res`` are shown as they are; otherwise they are computed
    from its replicates (:func:`tgd.repro.experiments.findings.all_findings`) and stored in
    ``res``."""
    folder = Path(folder)
    figs = folder / FIGURES
    figs.mkdir(parents=True, exist_ok=True)
    findings = _findings(res)
    _write_text(folder / "results.json", json.dumps(_jsonable(_strip_images(res)), indent=1)
                + "\n")
    write_tables(res, folder)
    body = (findings_section(findings) + about_section(res) + experiment_sections(res, figs)
            + definitions_section() + configuration_section(res))
    headings = [line[3:] for line in body if line.startswith("## ")]
    md = header_section(res) + summary_section(findings) + contents_section(headings) + body
    text = "\n".join(md)
    _write_text(folder / "report.md", text)
    _write_text(folder / "report.html", to_html(text, title(res), base=folder))
    return folder
