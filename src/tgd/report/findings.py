"""The paper's claims, each checked against the measured numbers.

Every statement is computed here from the results (the thresholds are stated in the text it
returns); nothing is asserted without a number behind it.
"""

from __future__ import annotations

import numpy as np

COV_CLOSE = 0.15      # "close to v1-net's CoV": within 15 % (relative); paper: 6.46 vs 6.02
FORGET = 0.10         # forgetting: high-BMI liver CoV more than 10 % above v1-net's
MOST = 0.5            # online learning removes "most" of the error: more than half
TIME_FRACTION = 0.5   # "well below scratch": less than half of the v2-net's training time


def _row(rows, net, test):
    for r in rows:
        if r["net"] == net and r.get("test", test) == test:
            return r
    return None


def paired_se_pct(a: dict, b: dict, key: str) -> float:
    """Standard error (percentage points) of the bias difference of nets ``a`` and ``b``,
    which denoised the same realizations: SE of the mean over realizations of the paired
    difference of their per-realization biases (``<key>`` with ``_by_realization`` inserted,
    as :func:`tgd.evaluation.quality.ensemble_quality` gives them; rows with only
    ``lesion_roi_means`` use ``(mu_r^a - mu_r^b) / T``)."""
    per_r = key.removesuffix("_pct") + "_by_realization_pct"
    if per_r in a and per_r in b:
        d = np.asarray(a[per_r]) - np.asarray(b[per_r])
        return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    t = a["lesion_600s_kbq_ml"] if key == "lesion_bias_vs600_pct" else a["lesion_truth_kbq_ml"]
    d = np.asarray(a["lesion_roi_means"]) - np.asarray(b["lesion_roi_means"])
    return float(100 * d.std(ddof=1) / np.sqrt(len(d)) / t) if len(d) > 1 else float("nan")


def _train(training, name):
    return next((t for t in training if t["name"] == name), None)


def finetuning_findings(ft: dict) -> list[dict]:
    rows, training = ft["rows"], ft["training"]
    out = []
    v1, fti = _row(rows, "v1-net", "v2 low BMI"), _row(rows, "FT-net", "v2 low BMI")
    for mode in ("parameter", "activation"):
        name = f"TGD-net ({mode})"
        tg = _row(rows, name, "v2 low BMI")
        if not (v1 and fti and tg):
            continue
        for key, label in (("lesion_bias_vs600_pct", "vs the 600-s image (the paper's T)"),
                           ("lesion_bias_pct", "vs the phantom's true concentration")):
            se = [paired_se_pct(tg, o, key) for o in (v1, fti)]
            rel = abs(tg["liver_cov_pct"] - v1["liver_cov_pct"]) / abs(v1["liver_cov_pct"])
            conds = {
                "bias closer to zero than v1-net by > 2 SE":
                    abs(tg[key]) < abs(v1[key]) and abs(tg[key] - v1[key]) > 2 * se[0],
                "bias closer to zero than FT-net by > 2 SE":
                    abs(tg[key]) < abs(fti[key]) and abs(tg[key] - fti[key]) > 2 * se[1],
                "liver CoV close to v1-net's": rel <= COV_CLOSE,
            }
            ok = all(conds.values())
            out.append({
                "conditions": conds,
                "claim": f"{name}: lesion bias closer to zero than v1-net and FT-net, liver "
                         f"CoV close to v1-net's (bias {label})",
                "reproduced": ok,
                "evidence": f"bias {tg[key]:+.2f} % vs v1-net {v1[key]:+.2f} %, FT-net "
                            f"{fti[key]:+.2f} % (paired standard errors of the differences "
                            f"{se[0]:.2f} and {se[1]:.2f} points; a difference counts when "
                            f"above 2 SE); liver CoV {tg['liver_cov_pct']:.2f} % vs "
                            f"v1-net {v1['liver_cov_pct']:.2f} % ({100 * rel:.0f} % apart; "
                            f"'close' means within {100 * COV_CLOSE:.0f} %)",
            })
    v1h, fth = _row(rows, "v1-net", "v2 high BMI"), _row(rows, "FT-net", "v2 high BMI")
    if v1h and fth:
        ft_up = (fth["liver_cov_pct"] - v1h["liver_cov_pct"]) / v1h["liver_cov_pct"]
        for mode in ("parameter", "activation"):
            tgh = _row(rows, f"TGD-net ({mode})", "v2 high BMI")
            if not tgh:
                continue
            tg_up = (tgh["liver_cov_pct"] - v1h["liver_cov_pct"]) / v1h["liver_cov_pct"]
            out.append({
                "conditions": {"FT-net forgets (high-BMI CoV > 10 % above v1-net)":
                               ft_up > FORGET,
                               f"TGD-net ({mode}) keeps it (within 10 %)": tg_up <= FORGET},
                "claim": f"FT-net loses the high-BMI denoising (forgetting) while TGD-net "
                         f"({mode}) keeps it",
                "reproduced": ft_up > FORGET and tg_up <= FORGET,
                "evidence": f"high-BMI liver CoV: v1-net {v1h['liver_cov_pct']:.2f} %, FT-net "
                            f"{fth['liver_cov_pct']:.2f} % ({100 * ft_up:+.0f} %), TGD-net "
                            f"{tgh['liver_cov_pct']:.2f} % ({100 * tg_up:+.0f} %); forgetting "
                            f"means more than {100 * FORGET:.0f} % above v1-net; PSNR "
                            f"{v1h['psnr_db']:.2f} / {fth['psnr_db']:.2f} / "
                            f"{tgh['psnr_db']:.2f} dB",
            })
    scratch = _train(training, "v2-net")
    for mode in ("parameter", "activation"):
        tt = _train(training, f"TGD-net ({mode})")
        if scratch and tt:
            frac = tt["train_time_s"] / scratch["train_time_s"]
            out.append({
                "conditions": {"under 50 % of the v2-net's training time": frac < TIME_FRACTION},
                "claim": f"TGD-net ({mode}) training time well below training from scratch",
                "reproduced": frac < TIME_FRACTION,
                "evidence": f"{tt['train_time_s']:.1f} s ({tt['iterations']} iterations) vs "
                            f"v2-net {scratch['train_time_s']:.1f} s ({scratch['iterations']} "
                            f"iterations): {100 * frac:.0f} %; the iteration counts are the "
                            f"preset's choice, as the paper's epochs and study counts were",
            })
    return out


def online_findings(on: dict) -> list[dict]:
    out = []
    studies = sorted({r["study"] for r in on["rows"]})
    for s in studies:
        rows = [r for r in on["rows"] if r["study"] == s]
        pairs = [("v2-net", f"TGD-N2N ({m})") for m in ("parameter", "activation")]
        pairs += [(f"TGD-net ({m})", f"TGD²-N2N ({m})") for m in ("parameter", "activation")]
        for base_name, new_name in pairs:
            b, n = _row(rows, base_name, None), _row(rows, new_name, None)
            if not (b and n):
                continue
            removed = (b["unseen_nrmse_pct"] - n["unseen_nrmse_pct"]) / b["unseen_nrmse_pct"]
            cov = (n["background_cov_pct"] - b["background_cov_pct"]) / b["background_cov_pct"]
            out.append({
                "conditions": {"removes > 50 % of the unseen-ROI NRMSE": removed > MOST,
                               "background CoV within 15 %": abs(cov) <= COV_CLOSE},
                "claim": f"{new_name} removes most of {base_name}'s error in the unseen "
                         f"features while keeping the background CoV (study {s})",
                "reproduced": removed > MOST and abs(cov) <= COV_CLOSE,
                "evidence": f"unseen-ROI NRMSE {b['unseen_nrmse_pct']:.2f} % -> "
                            f"{n['unseen_nrmse_pct']:.2f} % ({100 * removed:.0f} % removed; "
                            f"'most' means more than {100 * MOST:.0f} %); background CoV "
                            f"{b['background_cov_pct']:.2f} % -> {n['background_cov_pct']:.2f} "
                            f"% ({100 * cov:+.0f} %; kept means within "
                            f"{100 * COV_CLOSE:.0f} %)",
            })
    return out


def threshold_findings(th: dict) -> list[dict]:
    rows = {r["threshold"]: r for r in th["rows"]}
    r3 = rows.get(0.3)
    if r3 is None:
        return []
    return [{
        "conditions": {">= 25 % of the parameters dropped": r3["fraction_dropped"] >= 0.25,
                       "image NRMSE vs the original net < 5 %": r3["nrmse_vs_original"] < 0.05},
        "claim": "kernel dropping at phi = 0.3 removes a large share of the parameters with "
                 "little change to the image (paper: 51.4 % at 0.3)",
        "reproduced": r3["fraction_dropped"] >= 0.25 and r3["nrmse_vs_original"] < 0.05,
        "evidence": f"{100 * r3['fraction_dropped']:.1f} % of the parameters zeroed "
                    f"({r3['maps_dropped']} of {r3['maps_considered']} feature maps); dropped "
                    f"vs original image NRMSE {100 * r3['nrmse_vs_original']:.2f} %, PSNR "
                    f"{r3['psnr_vs_original_db']:.1f} dB ('large share' >= 25 %, 'little "
                    "change' NRMSE < 5 %)",
    }]


def all_findings(res: dict) -> list[dict]:
    out = []
    if "finetuning" in res:
        out += finetuning_findings(res["finetuning"])
    if "threshold" in res:
        out += threshold_findings(res["threshold"])
    if "online" in res:
        out += online_findings(res["online"])
    return out


def mode_comparison(ft: dict) -> list[str]:
    """Plain statements comparing TGD's two gradient-masking modes, from the numbers."""
    out = []
    info = {t["name"]: t for t in ft["training"]}
    a, p = info.get("TGD-net (activation)"), info.get("TGD-net (parameter)")
    if a and p and a["train_loss_last"] is not None and p["train_loss_last"] is not None:
        better = "parameter" if p["train_loss_last"] < a["train_loss_last"] else "activation"
        out.append(f"Final training loss: parameter mode {p['train_loss_last']:.4f}, activation "
                   f"mode {a['train_loss_last']:.4f} (lower in {better} mode).")
    for test in ("v2 low BMI", "v2 high BMI", "v1 low BMI"):
        rp, ra = _row(ft["rows"], "TGD-net (parameter)", test), _row(ft["rows"],
                                                                      "TGD-net (activation)",
                                                                      test)
        if rp and ra:
            hi = "parameter" if rp["psnr_db"] > ra["psnr_db"] else "activation"
            lo = "parameter" if rp["liver_cov_pct"] < ra["liver_cov_pct"] else "activation"
            out.append(f"{test}: PSNR {rp['psnr_db']:.2f} dB (parameter) vs {ra['psnr_db']:.2f}"
                       f" dB (activation), higher in {hi} mode; liver CoV "
                       f"{rp['liver_cov_pct']:.2f} % vs {ra['liver_cov_pct']:.2f} %, lower in "
                       f"{lo} mode.")
    return out
