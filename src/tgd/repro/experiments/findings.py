"""The paper's claims, and the premises they rest on, decided on independent replicates by the
tests pre-registered in docs/reproduction.md ("Pre-registered endpoints").

Each endpoint has an *effect* measured once per replicate, signed (mostly a paired difference
between two nets that saw the same data and started from the same pre-trained net; image
metrics against the noiseless reconstruction of the same protocol), and a test chosen by the
kind of claim (:mod:`tgd.repro.hypotheses`): "better than" is one-sided superiority, "keeps /
no worse than" non-inferiority with a stated margin, "on par" TOST. The primary family (the
paper's Table 1 and Fig. 5-6 claims) is Holm-corrected; premises form a family of their own;
the positive controls must each be detected for the retention findings to mean anything; the
rest is secondary (uncorrected, for context). A replicate in which a net of the comparison
diverged (:func:`tgd.repro.experiments.common.diverged`) gives no value: it is counted, never
averaged.

Every finding is a plain dict: ``id``, ``group``, ``family``, ``claim``, ``paper``, ``effect``
(mean), ``ci`` (two-sided 95 %, for display), ``unit``, ``per_replicate``, ``test`` (name,
direction, margin, alpha, one-sided bound, p, Holm-adjusted p), ``robust`` (Hodges-Lehmann
estimate and Wilcoxon interval), ``verdict``, ``conditions`` and ``evidence`` (in words).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from tgd.repro import hypotheses as H

QUALITY_TOL = 0.02    # time to quality: validation MSE within 2 % of the v2-net's final
FINAL_POINTS = 3      # the v2-net's "final" validation MSE: mean of its last 3 points (one
                      # point alone carries the batch-to-batch noise of the last steps)
ALPHA = 0.05          # one-sided, per test (Holm within the primary and premise families)
BIAS = "lesion_bias_vsnl_pct"  # large-lesion bias against the noiseless reconstruction
NRMSE = "nrmse"                # against the noiseless reconstruction
COV_MARGIN = 15.0     # "keeps the CoV": at most 15 % (relative) above the reference
RETAIN_MARGIN = 5.0   # "keeps the v1 performance": NRMSE at most 5 % (relative) above v1-net's
DIVERGENCE_BOUND = 0.10  # "trains stably": diverges in fewer than 1 run in 10
DROP_NRMSE = 5.0      # kernel dropping changes the image "little": NRMSE below 5 %
DROP_SHARE = 25.0     # ... and removes a "large share" of the parameters: at least 25 %
TIME_FRACTION = 50.0  # "well below scratch": under half of the v2-net's time to its quality

TGD = "TGD-net (parameter)"
ACT = "TGD-net (activation)"
AUTO = "TGD-net (auto)"
CONTROL = "FT-all-net (forgetting control)"
LOW, HIGH, OLD = "v2 low BMI", "v2 high BMI", "v1 low BMI"

def _row(rows, net, test=None):
    for r in rows:
        if r["net"] == net and (test is None or r.get("test") == test):
            return r
    return None


def time_to_quality(curve, target: float, tol: float = QUALITY_TOL) -> float | None:
    """Training seconds at the first validation point within ``tol`` of ``target`` (None if
    none); ``curve``: ``[[iteration, training seconds, validation MSE], ...]``."""
    for _, t, v in curve:
        if v <= target * (1 + tol):
            return float(t)
    return None


def quality_times(rep: dict) -> dict[str, dict]:
    """Per net of one replicate's fine-tuning experiment: seconds to reach the v2-net's final
    validation MSE (the mean of its last ``FINAL_POINTS`` validations; ``reached`` False: not
    within its training, ``seconds`` is then its whole training time, a lower bound)."""
    info = {t["name"]: t for t in rep["finetuning"]["training"] if t.get("val_curve")}
    if "v2-net" not in info:
        return {}
    target = float(sum(v for _, _, v in info["v2-net"]["val_curve"][-FINAL_POINTS:])
                   / len(info["v2-net"]["val_curve"][-FINAL_POINTS:]))
    out = {}
    for name, t in info.items():
        s = time_to_quality(t["val_curve"], target)
        out[name] = {"net": name, "reached": s is not None,
                     "seconds": s if s is not None else t["train_time_s"],
                     "target_mse": target, "final_mse": t["val_curve"][-1][2],
                     "start_mse": t["val_curve"][0][2]}
    return out


def _per(reps: list[dict], exp: str, fn: Callable[[dict], float | None]) -> list:
    out = []
    for r in reps:
        try:
            out.append(fn(r[exp]) if exp in r else None)
        except (KeyError, TypeError, ZeroDivisionError):
            out.append(None)
    return out


def _values(values: list) -> tuple[list[float], int, int]:
    """(finite values, replicates without a value, replicates excluded as diverged)."""
    vals, missing, diverged = [], 0, 0
    for v in values:
        if v is DIVERGED:
            diverged += 1
        elif v is None or not math.isfinite(v):
            missing += 1
        else:
            vals.append(float(v))
    return vals, missing, diverged


class _Diverged:
    def __repr__(self) -> str:
        return "DIVERGED"


DIVERGED = _Diverged()
"""The value of a replicate in which a net of the comparison diverged."""


def decide(fid: str, group: str, family: str, claim: str, paper: str, values: list,
           test: str, direction: str, margin: float, unit: str, describe: str,
           reason: str = "") -> dict:
    """One endpoint decided on its per-replicate ``values`` by ``test`` ("superiority",
    "non_inferiority" or "equivalence"; ``direction`` the good side; ``margin`` in the effect's
    unit), as a finding dict (see the module docstring). The verdict of a primary or premise
    endpoint is revised by :func:`apply_holm` over its family."""
    vals, missing, diverged = _values(values)
    f = {"id": fid, "group": group, "family": family, "claim": claim, "paper": paper,
         "unit": unit, "per_replicate": vals, "n_missing": missing, "n_diverged": diverged,
         "_values": list(values)}
    if len(vals) < 2:
        f.update(effect=math.nan if not vals else vals[0], ci=[math.nan, math.nan],
                 verdict="inconclusive", test={"name": test, "direction": direction,
                                               "margin": margin, "alpha": ALPHA, "p": None},
                 robust=None, conditions={claim: None},
                 evidence=f"{describe}: fewer than 2 replicates with a value")
        return f
    if test == "superiority":
        d = H.superiority(vals, direction, ALPHA)
    elif test == "non_inferiority":
        d = H.non_inferiority(vals, margin, direction, ALPHA)
    elif test == "equivalence":
        d = H.equivalence(vals, margin, ALPHA)
    else:
        raise ValueError(f"unknown test {test!r}")
    hl = H.hodges_lehmann(vals) if len(vals) >= 2 else None
    f.update(effect=d.estimate, ci=list(d.ci95), verdict=d.verdict,
             test={"name": test, "direction": direction, "margin": margin, "alpha": ALPHA,
                   "bound": None if math.isnan(d.bound) else d.bound, "p": d.p_value,
                   "p_holm": None},
             robust=None if hl is None else {"hodges_lehmann": hl.estimate, "ci": list(hl.ci),
                                             "coverage": hl.coverage},
             conditions={claim: None if d.verdict == "inconclusive" else d.verdict == "holds"},
             reason=reason, _decision=d)
    f["evidence"] = _evidence(f, describe)
    return f


def _rule_text(f: dict) -> str:
    t = f["test"]
    side = ">" if t["direction"] == "greater" else "<"
    if t["name"] == "superiority":
        return f"one-sided superiority, H1: effect {side} {t.get('offset', 0.0):g}"
    if t["name"] == "non_inferiority":
        m = -t["margin"] if t["direction"] == "greater" else t["margin"]
        return f"non-inferiority, H1: effect {side} {m:+g} {f['unit']} (margin {t['margin']:g})"
    return f"TOST, margins ±{t['margin']}"


def _evidence(f: dict, describe: str) -> str:
    t = f["test"]
    lo, hi = f["ci"]
    text = (f"{describe}: {f['effect']:+.2f} {f['unit']} (95 % CI [{lo:+.2f}, {hi:+.2f}]; "
            f"{len(f['per_replicate'])} replicates: "
            + ", ".join(f"{x:+.2f}" for x in f["per_replicate"]) + "). Test: "
            + _rule_text(f) + f", alpha {t['alpha']:g}, p = {t['p']:.3g}")
    if f.get("robust"):
        r = f["robust"]
        text += (f"; Hodges-Lehmann {r['hodges_lehmann']:+.2f} [{r['ci'][0]:+.2f}, "
                 f"{r['ci'][1]:+.2f}]")
    if f["n_diverged"]:
        text += f"; {f['n_diverged']} replicate(s) excluded: a net of the comparison diverged"
    if f["n_missing"]:
        text += f"; {f['n_missing']} replicate(s) without a value"
    return text


def apply_holm(findings: list[dict], family: str) -> None:
    """Holm over the findings of ``family`` that have a test: each gets its adjusted p; a
    "holds" that does not survive becomes "inconclusive"."""
    fam = [f for f in findings if f.get("family") == family and f.get("_decision") is not None]
    if not fam:
        return
    res = H.holm([f["_decision"] for f in fam], ALPHA)
    for f, d in zip(fam, res.decisions, strict=True):
        f["test"]["p_holm"] = d.p_adjusted
        if d.verdict != f["verdict"]:
            f["evidence"] += (f"; Holm over the {len(fam)} {family} endpoints: adjusted p = "
                              f"{d.p_adjusted:.3g}, so {d.verdict}")
        else:
            f["evidence"] += f"; Holm-adjusted p = {d.p_adjusted:.3g} ({len(fam)} {family})"
        f["verdict"] = d.verdict
        f["conditions"] = {k: None if d.verdict == "inconclusive" else d.verdict == "holds"
                           for k in f["conditions"]}


def seed_agreement(f: dict, base_seeds: list[int]) -> None:
    """With two or more base seeds: whether their mean effects agree (the Welch interval of
    the difference of the first two seeds' means covers 0), added as ``seed_agreement`` and
    to the evidence; agreement of estimates, not of verdicts, is what replicates can show."""
    values = f.get("_values")
    if not values or len(set(base_seeds)) < 2 or len(values) != len(base_seeds):
        return
    by: dict[int, list[float]] = {}
    for v, b in zip(values, base_seeds, strict=True):
        if isinstance(v, int | float) and math.isfinite(v):
            by.setdefault(b, []).append(float(v))
    seeds = sorted(by)
    if len(seeds) < 2 or min(len(by[s]) for s in seeds[:2]) < 2:
        return
    a = H.seeds_agree(by[seeds[0]], by[seeds[1]])
    f["seed_agreement"] = {"seeds": seeds[:2], "difference": a.difference, "ci": list(a.ci),
                           "agree": a.agree}
    f["evidence"] += (f"; base seeds {seeds[0]} and {seeds[1]}: difference of means "
                      f"{a.difference:+.2f} [{a.ci[0]:+.2f}, {a.ci[1]:+.2f}], "
                      + ("they agree" if a.agree else "they DISAGREE"))


def _decide(fid: str, group: str, claim: str, paper: str, values: list, kind: str,
            bound: float, unit: str, condition: str, describe: str) -> dict:
    """A secondary "effect greater (less) than ``bound``" endpoint: one-sided superiority of
    ``effect - bound``, reported on the effect's own scale (the TOD-Net findings)."""
    direction = "greater" if kind == "greater" else "less"
    shifted = [v if v is None or v is DIVERGED else v - bound for v in values]
    f = decide(fid, group, "secondary", claim, paper, shifted, "superiority", direction, 0.0,
               unit, describe)
    if bound and "_decision" in f:
        f["effect"] += bound
        f["ci"] = [c + bound for c in f["ci"]]
        f["per_replicate"] = [v + bound for v in f["per_replicate"]]
        if f.get("robust"):
            f["robust"]["hodges_lehmann"] += bound
            f["robust"]["ci"] = [c + bound for c in f["robust"]["ci"]]
        f["test"]["offset"] = bound
        f["evidence"] = _evidence(f, describe)
    f["conditions"] = {condition: f["conditions"][claim]}
    return f


def _diverged_in(rep_exp: dict, *nets: str) -> bool:
    info = {t["name"]: t for t in rep_exp.get("training", [])}
    return any(info.get(n, {}).get("diverged") for n in nets)


def _per_pair(reps: list[dict], exp: str, nets: tuple[str, ...],
              fn: Callable[[dict], float | None]) -> list:
    """Per replicate ``fn(experiment)``, :data:`DIVERGED` where one of ``nets`` diverged."""
    out = []
    for r in reps:
        if exp not in r:
            out.append(None)
        elif _diverged_in(r[exp], *nets):
            out.append(DIVERGED)
        else:
            try:
                out.append(fn(r[exp]))
            except (KeyError, TypeError, ZeroDivisionError):
                out.append(None)
    return out


def _diff(key: str, a: str, b: str, test: str, scale: float = 1.0):
    """``scale * (a - b)`` of ``key`` on ``test``."""
    return lambda ft: scale * (_row(ft["rows"], a, test)[key] - _row(ft["rows"], b, test)[key])


def _rel(key: str, a: str, b: str, test: str):
    """``100 (a - b) / b`` of ``key`` on ``test``: a's excess over b, in % of b."""
    def f(ft):
        x, y = _row(ft["rows"], a, test)[key], _row(ft["rows"], b, test)[key]
        return 100 * (x - y) / y
    return f


def premise_findings(reps: list[dict]) -> list[dict]:
    out = []
    if all("finetuning" in r for r in reps):
        out.append(decide(
            "shift_bias", "premise", "premise",
            "v1 -> v2 is a material shift: on v2 data the v1-net's large-lesion bias is lower "
            "(more negative) than the v2-net's",
            "v1-net -6.30 % vs v2-net -4.07 % on v2 data (Table 1): +2.23 points",
            _per_pair(reps, "finetuning", ("v1-net", "v2-net"),
                      _diff(BIAS, "v2-net", "v1-net", LOW)),
            "superiority", "greater", 0.0, "points",
            "large-lesion bias vs the noiseless reconstruction, v2-net minus v1-net, v2 "
            "low-BMI test", "the paper's own metric; signed"))
        out.append(decide(
            "shift_psnr", "premise", "secondary",
            "on v2 data the v2-net's PSNR (vs the noiseless reconstruction) is above the "
            "v1-net's", "not reported (the paper shows images)",
            _per_pair(reps, "finetuning", ("v1-net", "v2-net"),
                      _diff("psnr_db", "v2-net", "v1-net", LOW)),
            "superiority", "greater", 0.0, "dB",
            "PSNR vs the noiseless reconstruction, v2-net minus v1-net, v2 low-BMI test"))
    if all("threshold" in r for r in reps):
        def kse_vs_random(th):
            rnd = [d["nrmse_vs_original"] for d in th["random"]["draws"]]
            row = next(x for x in th["rows"] if x["threshold"] == th["random"]["threshold"])
            return 100 * (sum(rnd) / len(rnd) - row["nrmse_vs_original"])

        out.append(decide(
            "premise_kse", "premise", "premise",
            "KSE finds the feature maps that matter least: dropping the maps with KSE < phi "
            "changes the image less than dropping as many random maps",
            "assumed (the paper drops low-KSE kernels and sees no visible change at phi = 0.3)",
            _per(reps, "threshold", kse_vs_random), "superiority", "greater", 0.0, "points",
            "image NRMSE (vs the undropped net) of random-map dropping minus KSE dropping"))
    return out


def threshold_findings(reps: list[dict], phi: float) -> list[dict]:
    if not all("threshold" in r for r in reps):
        return []

    def at(th):
        return next(x for x in th["rows"] if x["threshold"] == phi)

    return [
        _decide("drop_image", "threshold",
                f"dropping the kernels of the maps with KSE < {phi:g} changes the image little",
                "no visible change at phi = 0.3 (Fig. 4)",
                _per(reps, "threshold", lambda th: 100 * at(th)["nrmse_vs_original"]),
                "less", DROP_NRMSE, "%", f"image NRMSE below {DROP_NRMSE:g} %",
                "image NRMSE of the dropped net against the undropped net (v1 low-BMI test)"),
        _decide("drop_share", "threshold",
                f"dropping at phi = {phi:g} removes a large share of the parameters",
                "51.4 % of the parameters at phi = 0.3",
                _per(reps, "threshold", lambda th: 100 * at(th)["fraction_dropped"]),
                "greater", DROP_SHARE, "%", f"at least {DROP_SHARE:g} % of the parameters",
                "share of the parameters zeroed (producing and consuming kernels)"),
    ]


def finetuning_findings(reps: list[dict]) -> list[dict]:
    if not all("finetuning" in r for r in reps):
        return []
    out = []
    ft = "finetuning"
    out.append(decide(
        "tgd_vs_v1_bias", "fine-tuning", "primary",
        "TGD-net's large-lesion bias on v2 data is higher (closer to zero) than the v1-net's",
        "TGD-net -3.77 % vs v1-net -6.30 % (Table 1): +2.53 points",
        _per_pair(reps, ft, (TGD, "v1-net"), _diff(BIAS, TGD, "v1-net", LOW)),
        "superiority", "greater", 0.0, "points",
        "large-lesion bias vs the noiseless reconstruction, TGD-net (parameter) minus v1-net, "
        "v2 low-BMI test", "the paper's biases are all negative: higher is closer to zero"))
    out.append(decide(
        "tgd_vs_ft_bias", "fine-tuning", "primary",
        "TGD-net's large-lesion bias on v2 data is higher (closer to zero) than FT-net's",
        "TGD-net -3.77 % vs FT-net -4.71 % (Table 1): +0.94 points",
        _per_pair(reps, ft, (TGD, "FT-net"), _diff(BIAS, TGD, "FT-net", LOW)),
        "superiority", "greater", 0.0, "points",
        "large-lesion bias vs the noiseless reconstruction, TGD-net (parameter) minus FT-net, "
        "v2 low-BMI test"))
    out.append(decide(
        "tgd_keeps_cov", "fine-tuning", "primary",
        "TGD-net keeps the v1-net's liver noise on v2 data (non-inferior CoV)",
        "TGD-net 6.46 % vs v1-net 6.02 % (+7 %); v2-net 8.56 % (+42 %)",
        _per_pair(reps, ft, (TGD, "v1-net"), _rel("liver_cov_pct", TGD, "v1-net", LOW)),
        "non_inferiority", "less", COV_MARGIN, "% of v1-net's",
        "ensemble liver CoV of TGD-net (parameter) relative to the v1-net's, v2 low-BMI test",
        "15 %: a third of the paper's v2-net-over-v1-net gap (+42 %)"))
    out.append(decide(
        "tgd_vs_ft_forgetting", "fine-tuning", "primary",
        "on high-BMI data, which fine-tuning did not see, FT-net is noisier than TGD-net "
        "(FT forgets, TGD keeps)",
        "FT-net's high-BMI images are noisier than TGD-net's (Fig. 5)",
        _per_pair(reps, ft, (TGD, "FT-net"), _rel("liver_cov_pct", "FT-net", TGD, HIGH)),
        "superiority", "greater", 0.0, "% of TGD-net's",
        "ensemble liver CoV of FT-net relative to TGD-net (parameter), v2 high-BMI 60-s test"))
    out.append(decide(
        "tgd_retains_v1", "fine-tuning", "primary",
        "TGD-net keeps the v1-net's performance on v1 data (non-inferior NRMSE)",
        "TGD keeps what the net knew (knowledge retention, section 3)",
        _per_pair(reps, ft, (TGD, "v1-net"), _rel(NRMSE, TGD, "v1-net", OLD)),
        "non_inferiority", "less", RETAIN_MARGIN, "% of v1-net's",
        "NRMSE vs the noiseless reconstruction on the v1 low-BMI test, TGD-net (parameter) "
        "relative to the v1-net", "5 %: the kernel-dropping criterion's 'little change'"))
    # positive controls: the configuration built to forget must be detected by the same tests
    if _row(reps[0][ft]["rows"], CONTROL) is not None:
        out.append(decide(
            "control_forgets_v1", "fine-tuning", "control",
            "positive control: FT of every block at 10 x the learning rate loses the v1 "
            f"performance (NRMSE more than {RETAIN_MARGIN:g} % above the v1-net's)",
            "not in the paper: shows that the retention test can fail",
            _per_pair(reps, ft, (CONTROL, "v1-net"),
                      lambda f: _rel(NRMSE, CONTROL, "v1-net", OLD)(f) - RETAIN_MARGIN),
            "superiority", "greater", 0.0, "points above the margin",
            f"NRMSE on the v1 low-BMI test of the control relative to the v1-net, minus the "
            f"{RETAIN_MARGIN:g} % margin"))
        out.append(decide(
            "control_forgets_high_bmi", "fine-tuning", "control",
            "positive control: on high-BMI data the control is noisier than TGD-net",
            "not in the paper: shows that the forgetting test can fail",
            _per_pair(reps, ft, (CONTROL, TGD), _rel("liver_cov_pct", CONTROL, TGD, HIGH)),
            "superiority", "greater", 0.0, "% of TGD-net's",
            "ensemble liver CoV of the control relative to TGD-net (parameter), v2 high-BMI"))
    # secondary: the small lesions, SUVmax / SUVpeak, the 600-s reference, other baselines
    out.append(decide(
        "tgd_vs_v1_small_lesions", "fine-tuning", "secondary",
        "TGD-net's small-lesion bias on v2 data is higher (closer to zero) than the v1-net's",
        "not reported (Table 1 measures the large lesions)",
        _per_pair(reps, ft, (TGD, "v1-net"),
                  _diff("small_lesion_bias_vsnl_pct", TGD, "v1-net", LOW)),
        "superiority", "greater", 0.0, "points",
        "small-lesion (radius < 10 mm) bias vs the noiseless reconstruction, TGD-net "
        "(parameter) minus v1-net, v2 low-BMI test"))
    for key, what in (("lesion_max_bias_vsnl_pct", "SUVmax"), ("lesion_peak_bias_vsnl_pct",
                                                                "SUVpeak")):
        out.append(decide(
            f"tgd_vs_v1_{what.lower()}", "fine-tuning", "secondary",
            f"TGD-net's large-lesion {what} bias on v2 data is higher than the v1-net's",
            "not reported",
            _per_pair(reps, ft, (TGD, "v1-net"), _diff(key, TGD, "v1-net", LOW)),
            "superiority", "greater", 0.0, "points",
            f"large-lesion {what} bias vs the noiseless reconstruction's, TGD-net (parameter) "
            "minus v1-net, v2 low-BMI test"))
    out.append(decide(
        "tgd_vs_v1_bias_vs600", "fine-tuning", "secondary",
        "as measured in the paper (against the 600-s image): TGD-net's large-lesion bias is "
        "higher than the v1-net's",
        "TGD-net -3.77 % vs v1-net -6.30 % (Table 1)",
        _per_pair(reps, ft, (TGD, "v1-net"),
                  _diff("lesion_bias_vs600_pct", TGD, "v1-net", LOW)),
        "superiority", "greater", 0.0, "points",
        "large-lesion bias vs the 600-s image, TGD-net (parameter) minus v1-net, v2 low BMI"))
    for other in ("EWC-net", "L2-SP-net", "LoRA-net"):
        if _row(reps[0][ft]["rows"], other) is None:
            continue
        out.append(decide(
            f"tgd_vs_{other.split('-net')[0].lower().replace('-', '')}_bias", "fine-tuning",
            "secondary", f"TGD-net's large-lesion bias on v2 data is higher than {other}'s",
            "EWC: not in Table 1; L2-SP and LoRA: not in the paper",
            _per_pair(reps, ft, (TGD, other), _diff(BIAS, TGD, other, LOW)),
            "superiority", "greater", 0.0, "points",
            f"large-lesion bias vs the noiseless reconstruction, TGD-net (parameter) minus "
            f"{other}, v2 low BMI"))
    out += auto_findings(reps)
    out += activation_findings(reps)

    def time_ratio(ft_rep):
        times = quality_times({"finetuning": ft_rep})
        tg, v2 = times.get(TGD), times.get("v2-net")
        if tg is None or v2 is None or not v2["seconds"] or not tg["reached"]:
            return None
        return 100 * tg["seconds"] / v2["seconds"]

    f = _decide(
        "time", "fine-tuning",
        "TGD reaches the v2-net's quality in well under the time of training from scratch",
        "TGD-net trained in a fraction of the v2-net's time (500 epochs each on fewer studies)",
        _per_pair(reps, ft, (TGD,), time_ratio), "less", TIME_FRACTION,
        "% of the v2-net's time",
        f"under {TIME_FRACTION:g} % of the v2-net's time to its final validation MSE",
        "training seconds until the validation MSE on a held-out v2 study is within "
        f"{100 * QUALITY_TOL:g} % of the v2-net's final one, TGD-net (parameter) as a "
        "percentage of the v2-net's own (replicates where TGD-net never reached it have no "
        "value)")
    out.append(f)
    return out


def auto_findings(reps: list[dict]) -> list[dict]:
    """Issue 23's endpoints on the replicates: does the probe-selected phi adapt (v2 NRMSE
    below the v1-net's) and keep the v1 performance (non-inferior v1 NRMSE)?"""
    ft = "finetuning"
    if _row(reps[0][ft]["rows"], AUTO) is None:
        return []
    return [
        decide("auto_adapts", "threshold selection", "secondary",
               "TGD-net (auto: phi chosen by probe adaptations) improves the v2 images over "
               "the v1-net (lower NRMSE)",
               "not in the paper (phi hand-picked there)",
               _per_pair(reps, ft, (AUTO, "v1-net"), _rel(NRMSE, AUTO, "v1-net", LOW)),
               "superiority", "less", 0.0, "% of v1-net's",
               "NRMSE vs the noiseless reconstruction, TGD-net (auto) relative to the v1-net, "
               "v2 low-BMI test (a replicate where auto retrained nothing counts as 0)"),
        decide("auto_retains_v1", "threshold selection", "secondary",
               "TGD-net (auto) keeps the v1-net's performance on v1 data (non-inferior NRMSE)",
               "not in the paper",
               _per_pair(reps, ft, (AUTO, "v1-net"), _rel(NRMSE, AUTO, "v1-net", OLD)),
               "non_inferiority", "less", RETAIN_MARGIN, "% of v1-net's",
               "NRMSE vs the noiseless reconstruction on the v1 low-BMI test, TGD-net (auto) "
               "relative to the v1-net", "the margin of tgd_retains_v1"),
    ]


def activation_findings(reps: list[dict]) -> list[dict]:
    """The paper's TGD layer (activation mode): how often it diverges, with a Clopper-Pearson
    interval, and its effect on the runs that converged."""
    runs = [_diverged_in(r["finetuning"], ACT) for r in reps
            if "finetuning" in r and _row(r["finetuning"]["rows"], ACT) is not None]
    if not runs:
        return []
    k, n = sum(runs), len(runs)
    rate = H.divergence_rate(k, n)
    lo, hi = rate.ci
    verdict = ("holds" if hi < DIVERGENCE_BOUND else "does not hold" if lo > DIVERGENCE_BOUND
               else "inconclusive")
    out = [{"id": "activation_divergence", "group": "fine-tuning", "family": "secondary",
            "claim": f"the paper's TGD layer (activation mode) trains stably: it diverges in "
                     f"fewer than {DIVERGENCE_BOUND:.0%} of runs",
            "paper": "assumed (the paper reports no failed run)",
            "effect": 100 * rate.rate, "ci": [100 * lo, 100 * hi], "unit": "% of runs diverged",
            "per_replicate": [float(x) for x in runs], "n_missing": 0, "n_diverged": k,
            "test": {"name": "binomial (Clopper-Pearson 95 %)", "direction": "less",
                     "margin": 100 * DIVERGENCE_BOUND, "alpha": 0.025, "p": None},
            "robust": None, "verdict": verdict,
            "conditions": {f"upper bound below {DIVERGENCE_BOUND:.0%}":
                           None if verdict == "inconclusive" else verdict == "holds"},
            "evidence": f"{k} of {n} activation-mode runs diverged (final validation loss "
                        "non-finite or above 10 x the v1-net's); 95 % Clopper-Pearson interval "
                        f"[{100 * lo:.1f} %, {100 * hi:.1f} %]. Diverged runs are flagged in "
                        "every table and left out of every mean."}]
    out.append(decide(
        "activation_vs_parameter_bias", "fine-tuning", "secondary",
        "on the runs that converged, activation mode's large-lesion bias equals parameter "
        "mode's within 1 point (TOST)", "the paper has activation mode only",
        _per_pair(reps, "finetuning", (ACT, TGD), _diff(BIAS, ACT, TGD, LOW)),
        "equivalence", "within", 1.0, "points",
        "large-lesion bias vs the noiseless reconstruction, activation minus parameter mode, "
        "v2 low BMI"))
    return out


def online_findings(reps: list[dict], losses) -> list[dict]:
    if not all("online" in r for r in reps):
        return []
    out = []

    def removed(base, new):
        def f(on):
            b, n = _row(on["rows"], base), _row(on["rows"], new)
            return 100 * (b["unseen_nrmse_pct"] - n["unseen_nrmse_pct"]) / b["unseen_nrmse_pct"]
        return f

    def cov_change(base, new):
        def f(on):
            b, n = _row(on["rows"], base), _row(on["rows"], new)
            return 100 * (n["background_cov_pct"] - b["background_cov_pct"]) / b[
                "background_cov_pct"]
        return f

    for loss in losses:
        for base, new in (("v2-net", f"TGD-N2N ({loss})"), (TGD, f"TGD²-N2N ({loss})")):
            if _row(reps[0]["online"]["rows"], new) is None:
                continue
            family = "primary" if (base == "v2-net" and loss == losses[0]) else "secondary"
            key = new.split(" ")[0].replace("²", "2").lower().replace("-", "_")
            out.append(decide(
                f"{key}_{loss}_unseen", "online", family,
                f"{new} has a smaller error than {base} in the unseen features",
                "TGD-N2N removes the hallucinated structure of the unseen features (Fig. 6)",
                _per_pair(reps, "online", (new,), removed(base, new)), "superiority",
                "greater", 0.0, f"% of {base}'s",
                f"unseen-ROI NRMSE (vs the noiseless reconstruction) removed by {new}, relative "
                f"to {base}"))
            out.append(decide(
                f"{key}_{loss}_cov", "online", family,
                f"{new} keeps {base}'s background noise (non-inferior CoV)",
                "the background noise of TGD-N2N matches the v2-net's (Fig. 6)",
                _per_pair(reps, "online", (new,), cov_change(base, new)), "non_inferiority",
                "less", COV_MARGIN, f"% of {base}'s",
                f"background CoV of {new} relative to {base}", "15 %, as for fine-tuning"))
    return out


def _tod_row(tod: dict, modality: str, method: str) -> dict:
    for r in tod["rows"]:
        if r["modality"] == modality and r["method"] == method:
            return r
    raise KeyError((modality, method))


def tod_findings(reps: list[dict]) -> list[dict]:
    """Seed 002's claims for TOD-Net, decided on the replicates' TOD experiments (each
    replicate: fresh studies, segmenters and denoisers; its effect averaged over its test
    studies)."""
    if not all("tod" in r for r in reps):
        return []
    tod0 = reps[0]["tod"]
    segs = list(tod0["preset"]["segmenters"])
    task, others = segs[0], segs[1:]
    mods = {r["modality"] for r in tod0["rows"]}
    out = []

    def diff(mod, key, a, b, scale=1.0):
        return lambda t: scale * (_tod_row(t, mod, a)[key] - _tod_row(t, mod, b)[key])

    def others_dice(mod, a, b):
        def f(t):
            return 100 * sum(_tod_row(t, mod, a)[f"dice_{s}_lesion"]
                             - _tod_row(t, mod, b)[f"dice_{s}_lesion"] for s in others) / len(
                                 others)
        return f

    def closer(mod, a, b):
        return lambda t: 100 * (abs(_tod_row(t, mod, b)["lesion_bias"])
                                - abs(_tod_row(t, mod, a)["lesion_bias"]))

    for mod, name in (("ct", "low-dose CT"), ("pet", "PET")):
        if mod not in mods:
            continue
        units = tod0["units"][mod]
        out.append(_decide(
            f"tod_{mod}_premise", "premise",
            f"the MSE-net denoises better than a Gaussian filter at its noise level ({name})",
            "assumed (every denoiser of the seed is a trained network)",
            _per(reps, "tod", diff(mod, "rmse_image", "Gaussian filter", "MSE-net")),
            "greater", 0.0, units, "RMSE of the Gaussian filter above the MSE-net's",
            f"whole-image RMSE ({units}) of the matched-noise Gaussian filter minus the MSE-net"))
        out.append(_decide(
            f"tod_{mod}_task_dice", "TOD-Net",
            f"TOD-Net's images give a higher lesion Dice than MSE-net's with the segmenter it "
            f"was trained with ({name})",
            "TOD-Net ranks first on downstream Dice (seed 002)",
            _per(reps, "tod", diff(mod, f"dice_{task}_lesion", "TOD-Net", "MSE-net", 100)),
            "greater", 0.0, "points", "lesion Dice of TOD-Net above MSE-net's",
            f"lesion Dice (x 100) of the task segmenter ({task}), TOD-Net minus MSE-net"))
        if others:
            out.append(_decide(
                f"tod_{mod}_other_dice", "TOD-Net",
                f"TOD-Net's images give a higher lesion Dice than MSE-net's also with the "
                f"segmenters not used in training ({name})",
                "TOD-Net ranks first on Dice for every segmenter, also those not seen in "
                "training (seed 002: generality)",
                _per(reps, "tod", others_dice(mod, "TOD-Net", "MSE-net")), "greater", 0.0,
                "points", "lesion Dice of TOD-Net above MSE-net's",
                f"lesion Dice (x 100) averaged over {', '.join(others)}, TOD-Net minus "
                "MSE-net"))
        out.append(_decide(
            f"tod_{mod}_vs_wgan", "TOD-Net",
            f"the task loss, not the critic, makes the difference: TOD-Net's lesion Dice is "
            f"above MSE-WGAN's ({name})",
            "TOD-Net ranks above MSE-WGAN on Dice (seed 002)",
            _per(reps, "tod", diff(mod, f"dice_{task}_lesion", "TOD-Net", "MSE-WGAN", 100)),
            "greater", 0.0, "points", "lesion Dice of TOD-Net above MSE-WGAN's",
            f"lesion Dice (x 100) of the task segmenter ({task}), TOD-Net minus MSE-WGAN"))
        out.append(_decide(
            f"tod_{mod}_roi_rmse", "TOD-Net",
            f"TOD-Net's error inside the lesion ROI is below MSE-net's ({name})",
            "TOD-Net ranks first on RMSE, SSIM and PSNR, with its largest gain inside the ROI "
            "(seed 002)",
            _per(reps, "tod", diff(mod, "rmse_roi", "MSE-net", "TOD-Net")), "greater", 0.0,
            units, "ROI RMSE of TOD-Net below MSE-net's",
            f"RMSE ({units}) in the lesion ROI (lesions dilated by 2 pixels), MSE-net minus "
            "TOD-Net"))
        if mod == "pet":
            out.append(_decide(
                "tod_pet_bias", "TOD-Net",
                "TOD-Net's lesion bias is closer to zero than MSE-net's (PET)",
                "a task loss keeps small, task-relevant structure (seed 002)",
                _per(reps, "tod", closer(mod, "TOD-Net", "MSE-net")), "greater", 0.0,
                "points", "|lesion bias| of TOD-Net below MSE-net's",
                "|lesion bias| (vs the 600-s image) of MSE-net minus TOD-Net"))
    if "pet-tgd" in mods:
        out.append(_decide(
            "tod_tgd_bias", "TOD-Net",
            "TGD fine-tuning v1 -> v2 with the TOD loss cuts the lesion bias of TGD with MSE",
            "not in either paper (this project's combination of the two)",
            _per(reps, "tod", closer("pet-tgd", "TGD (TOD)", "TGD (MSE)")), "greater", 0.0,
            "points", "|lesion bias| of TGD (TOD) below TGD (MSE)'s",
            "|lesion bias| (vs the 600-s image) of TGD (MSE) minus TGD (TOD)"))
    return out


def all_findings(res: dict) -> list[dict]:
    """Every finding for the results of :func:`tgd.repro.experiments.reproduce.run_experiments`
    (primary and premise families Holm-corrected; the internal decisions dropped)."""
    reps = res["replicates"]
    preset = res["preset"]
    out = (premise_findings(reps) + finetuning_findings(reps)
           + threshold_findings(reps, float(preset["threshold"]))
           + online_findings(reps, tuple(preset.get("online_losses", ("mse",))))
           + tod_findings(reps))
    for family in ("primary", "premise"):
        apply_holm(out, family)
    base = [int(r["seed"]) // 1000 for r in reps]
    for f in out:
        f.pop("_decision", None)
        seed_agreement(f, base)
        f.pop("_values", None)
    order = {"primary": 0, "control": 1, "premise": 2, "secondary": 3}
    return sorted(out, key=lambda f: order.get(f.get("family"), 3))
