"""The pre-registered endpoints on planted replicates: signed effects, the right test per
claim, Holm over the primary family, positive controls, seed agreement."""

import numpy as np

from tgd.repro.experiments.findings import CONTROL, TGD, all_findings

TESTS = ("v2 low BMI", "v2 high BMI", "v1 low BMI")


def _rep(seed, rng, *, tgd_gain=2.5, control_nrmse=1.3, ft_high_cov=1.2):
    """One replicate's fine-tuning rows: TGD-net's bias ``tgd_gain`` above the v1-net's."""
    noise = lambda: float(rng.normal(0, 0.3))  # noqa: E731
    nets = {"v1-net": (-6.0, 6.0, 1.0), "v2-net": (-4.0, 8.5, 1.0), "FT-net": (-5.0, 7.0, 1.0),
            TGD: (-6.0 + tgd_gain, 6.2, 1.0), CONTROL: (-4.5, 7.5, control_nrmse)}
    rows = []
    for net, (bias, cov, nrmse_rel) in nets.items():
        for test in TESTS:
            high = net in ("FT-net", CONTROL) and test == "v2 high BMI"
            rows.append({"net": net, "test": test, "lesion_bias_vsnl_pct": bias + noise(),
                         "lesion_bias_vs600_pct": bias + noise(),
                         "small_lesion_bias_vsnl_pct": bias + noise(),
                         "lesion_max_bias_vsnl_pct": bias + noise(),
                         "lesion_peak_bias_vsnl_pct": bias + noise(),
                         "liver_cov_pct": cov * (ft_high_cov if high else 1) + noise() / 10,
                         "psnr_db": 40 + noise(), "nrmse": 0.1 * (nrmse_rel if test ==
                                                                   "v1 low BMI" else 1)
                         * (1 + noise() / 100)})
    training = [{"name": n, "diverged": False} for n in nets]
    return {"seed": seed, "finetuning": {"rows": rows, "training": training}}


def _findings(**kw):
    rng = np.random.default_rng(0)
    reps = [_rep(1000 * s + r, rng, **kw) for s in (0, 1) for r in range(6)]
    res = {"replicates": reps, "preset": {"threshold": 0.3, "online_losses": ["mse"]}}
    return {f["id"]: f for f in all_findings(res)}


def test_planted_effects_are_decided_by_their_tests():
    f = _findings()
    assert f["tgd_vs_v1_bias"]["verdict"] == "holds"
    assert f["tgd_vs_v1_bias"]["test"]["name"] == "superiority"
    assert f["tgd_vs_v1_bias"]["test"]["p_holm"] >= f["tgd_vs_v1_bias"]["test"]["p"]
    assert abs(f["tgd_vs_v1_bias"]["effect"] - 2.5) < 0.5  # signed, not folded
    assert f["tgd_keeps_cov"]["test"]["name"] == "non_inferiority"
    assert f["tgd_keeps_cov"]["verdict"] == "holds"  # +3 % against a +15 % margin
    assert f["tgd_vs_ft_forgetting"]["verdict"] == "holds"  # FT 20 % noisier on high BMI
    assert f["control_forgets_v1"]["verdict"] == "holds"  # +30 %: detected
    assert f["control_forgets_high_bmi"]["verdict"] == "holds"
    assert f["tgd_vs_v1_bias"]["family"] == "primary"
    assert "seed_agreement" in f["tgd_vs_v1_bias"]
    assert f["tgd_vs_v1_bias"]["seed_agreement"]["agree"]
    assert f["tgd_vs_v1_bias"]["robust"]["hodges_lehmann"] > 2


def test_an_effect_in_the_wrong_direction_does_not_hold_and_a_weak_control_is_not_detected():
    f = _findings(tgd_gain=-2.0, control_nrmse=1.0, ft_high_cov=1.0)
    assert f["tgd_vs_v1_bias"]["verdict"] == "does not hold"
    assert f["tgd_vs_v1_bias"]["effect"] < 0
    assert f["control_forgets_v1"]["verdict"] != "holds"  # the control did not forget


def test_primary_findings_come_first():
    fam = [x["family"] for x in _findings().values()]
    assert fam[0] == "primary" and fam.index("secondary") > fam.index("premise")
