"""A small results dict in the layout of tgd.repro.experiments (replicate CIs and the new findings),
for the writer, the HTML and the browser tests."""

import numpy as np
import pytest

NETS = ("60-s input", "v1-net", "v2-net", "FT-net", "TGD-net (parameter)")
TESTS = ("v2 low BMI", "v2 high BMI", "v1 low BMI")


def _row(net, test, k):
    v = {"lesion_bias_vs600_pct": -20.0 + k, "lesion_bias_pct": -50.0 + k,
         "liver_cov_pct": 4.0 + 0.5 * k, "psnr_db": 30.0 + 0.2 * k, "ssim": 0.8, "nrmse": 0.1}
    row = {"net": net, "test": test, "n_replicates": 3, **v}
    row.update({f"{key}_ci": [val - 1.0, val + 1.0] for key, val in v.items()})
    return row


def make_results(images: bool = True) -> dict:
    rng = np.random.default_rng(0)
    ref = np.zeros((24, 24), np.float32)
    ref[5:19, 4:20] = 2.0
    ref[11:13, 11:13] = 8.0

    def noisy():
        return ref + rng.normal(0, 0.2, ref.shape).astype(np.float32)

    ft = {"rows": [_row(n, t, k) for t in TESTS for k, n in enumerate(NETS)],
          "training": [{"name": n, "method": "tgd" if "TGD" in n else "scratch",
                        "mode": "parameter" if "TGD" in n else None, "iterations": 10,
                        "train_time_s": 2.0 + k, "train_time_s_ci": [1.5 + k, 2.5 + k],
                        "trained_fraction": 1.0, "train_loss_last": 0.01,
                        "frozen_preserved": True if "TGD" in n else None,
                        "val_curve": {"time_s": [0, 1, 2 + k], "loss": [1.0, 0.5, 0.3]}}
                       for k, n in enumerate(NETS[1:])],
          "target_val_loss": 0.3}
    if images:
        ft["examples"] = {t: {"slice": 0, "reference": ref, "center": (12, 12), "box": 8,
                              "pixel_mm": 4.0, "suv_per_kbq_ml": 0.5,
                              "images": {n: noisy() for n in NETS}} for t in TESTS[:1]}
    th = {"rows": [{"threshold": phi, "fraction_dropped": f, "maps_dropped": 3,
                    "maps_considered": 10, "nrmse_vs_original": 0.3 * phi,
                    "nrmse_vs_original_ci": [0.2 * phi, 0.4 * phi],
                    "random_nrmse_vs_original": 0.5 * phi,
                    "random_nrmse_vs_original_ci": [0.3 * phi, 0.8 * phi],
                    "psnr_vs_original_db": float("inf") if phi == 0 else 30.0,
                    "psnr_db": 30.0, "liver_cov_pct": 4.0, "lesion_bias_vs600_pct": -20.0,
                    "n_replicates": 3}
                   for phi, f in ((0.0, 0.0), (0.3, 0.3), (0.5, 0.45))]}
    if images:
        th["example"] = {"slice": 0, "input": noisy(), "reference": ref,
                         "dropped": {"0": noisy(), "0.3": noisy(), "0.5": noisy()}}
    on = {"rows": [{"net": n, "study": 4000, "unseen_nrmse_pct": 10.0 - k,
                    "unseen_nrmse_pct_ci": [9.0 - k, 11.0 - k], "unseen_mean_error_pct": -1.0,
                    "unseen_mae_pct": 3.0, "background_cov_pct": 9.0, "psnr_db": 40.0,
                    "ssim": 0.99, "n_replicates": 3}
                   for k, n in enumerate(("v2-net", "TGD-N2N (parameter)"))],
          "training": [{"name": "TGD-N2N (parameter)", "source": "v2-net", "iterations": 5,
                        "train_time_s": 1.0, "trained_fraction": 0.05,
                        "frozen_preserved": True}]}
    if images:
        on["examples"] = [{"study": 4000, "slice": 0, "reference": ref, "center": (12, 12),
                           "images": {"v2-net": noisy(), "TGD-N2N (parameter)": noisy()}}]
    findings = [
        {"id": "tgd-vs-ft-bias", "claim": "TGD-net's lesion bias is closer to zero than "
         "FT-net's", "paper": "-3.77 vs -4.71 %", "effect": 1.2, "ci": [0.4, 2.0],
         "unit": "points", "verdict": "holds", "conditions": {"CI above 0": True},
         "evidence": "paired difference over 3 replicates"},
        {"id": "forgetting", "claim": "FT-net forgets, TGD-net keeps the high-BMI denoising",
         "paper": "Fig. 5", "effect": -0.3, "ci": [-1.5, 0.9], "unit": "points",
         "verdict": "inconclusive", "conditions": {"CI excludes 0": False},
         "evidence": "high-BMI liver CoV"},
        {"id": "kse-gate", "claim": "KSE beats chance", "paper": "51.4 % at 0.3",
         "effect": None, "ci": None, "unit": "%", "verdict": "does not hold",
         "conditions": {"phi = 0.3 change < 5 %": False}, "evidence": "10.8 % NRMSE"}]
    return {"preset": {"name": "tiny", "notes": "test", "realizations": 3},
            "timings": {"simulate_s": 1.0, "pretrain_s": 2.0, "total_s": 3.0, "wall_s": 3.0},
            "environment": {"torch": "x", "git_commit": "0123456789abcdef"},
            "studies": {}, "command": "tgd reproduce --preset tiny",
            "experiments": ["finetuning", "threshold", "online"],
            "finetuning": ft, "threshold": th, "online": on, "findings": findings}


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    """One report folder for every test that only reads it."""
    from tgd.repro.report import write_report

    return write_report(make_results(), tmp_path_factory.mktemp("report") / "rep")
