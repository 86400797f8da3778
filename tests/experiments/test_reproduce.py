"""Smoke runs of every experiment and of ``tgd reproduce`` on the tiny preset, report checks."""

import json

import numpy as np
import pytest
import torch

from tgd.cli import main
from tgd.evaluation.quality import ensemble_quality
from tgd.experiments import finetuning, online, threshold
from tgd.experiments.common import pretrain, simulate
from tgd.experiments.presets import get_preset
from tgd.report.findings import finetuning_findings, online_findings
from tgd.report.markdown import to_html

TINY = get_preset("tiny")


@pytest.fixture(scope="module")
def studies():
    return simulate(TINY)


@pytest.fixture(scope="module")
def base(studies):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield pretrain(TINY, studies)
    finally:
        torch.set_num_threads(threads)


def test_ensemble_quality_of_the_reference_itself(studies):
    st = studies.test["low"]
    ref = st.images[("v2", 600)]
    q = ensemble_quality(st, "v2", np.stack([ref, ref, ref]))
    assert q["lesion_bias_vs600_pct"] == pytest.approx(0, abs=1e-9)
    assert q["liver_cov_pct"] == 0
    assert q["nrmse"] == 0 and q["ssim"] == pytest.approx(1) and q["psnr_db"] == float("inf")
    # the 600-s image is biased low against the phantom truth (partial volume), never above
    assert q["lesion_bias_pct"] < 0
    with pytest.raises(ValueError, match="ensemble must be"):
        ensemble_quality(st, "v2", ref)


def test_finetuning_threshold_online_smoke(studies, base):
    ft = finetuning.run(TINY, studies, base)
    names = {r["net"] for r in ft["rows"]}
    assert names == {"60-s input", "v1-net", "v2-net", "FT-net", "TGD-net (parameter)",
                     "TGD-net (activation)", "EWC-net"}
    assert {r["test"] for r in ft["rows"]} == {"v2 low BMI", "v2 high BMI", "v1 low BMI"}
    assert all(np.isfinite(r["liver_cov_pct"]) and np.isfinite(r["lesion_bias_pct"])
               for r in ft["rows"])
    info = {t["name"]: t for t in ft["training"]}
    assert info["TGD-net (parameter)"]["frozen_preserved"] is True
    assert info["TGD-net (activation)"]["frozen_preserved"] is True
    assert info["FT-net"]["frozen_preserved"] is True
    assert 0 < info["TGD-net (parameter)"]["trained_fraction"] < 1
    # the 60-s input row is the undenoised data: its CoV differs from a denoiser's
    th = threshold.run(TINY, studies, base)
    assert [r["threshold"] for r in th["rows"]] == list(TINY.thresholds)
    assert th["rows"][0]["fraction_dropped"] == 0 and th["rows"][0]["nrmse_vs_original"] == 0
    fr = [r["fraction_dropped"] for r in th["rows"]]
    assert fr == sorted(fr) and fr[-1] > 0
    on = online.run(TINY, studies, ft["nets"])
    assert {r["net"] for r in on["rows"]} >= {"v2-net", "TGD-N2N (parameter)",
                                              "TGD-N2N (activation)",
                                              "TGD²-N2N (parameter)"}
    assert all(t["frozen_preserved"] for t in on["training"])
    assert all(np.isfinite(r["unseen_nrmse_pct"]) for r in on["rows"])


def _row(net, test, bias, cov, mus):
    return {"net": net, "test": test, "lesion_bias_vs600_pct": bias, "lesion_bias_pct": bias,
            "liver_cov_pct": cov, "psnr_db": 30.0, "lesion_truth_kbq_ml": 10.0,
            "lesion_600s_kbq_ml": 10.0, "lesion_roi_means": mus}


def test_findings_follow_the_numbers():
    rng = np.random.default_rng(0)
    mus = list(10 + rng.normal(0, 0.1, 10))

    def rows(tgd_bias, tgd_cov, ft_high_cov):
        out = []
        for net, b, c in (("v1-net", -6.3, 6.0), ("FT-net", -4.7, 7.9),
                          ("TGD-net (parameter)", tgd_bias, tgd_cov)):
            shift = b / 10  # ROI means consistent with the bias (T = 10)
            out.append(_row(net, "v2 low BMI", b, c, [m + shift for m in mus]))
        out.append(_row("v1-net", "v2 high BMI", -6, 10.0, mus))
        out.append(_row("FT-net", "v2 high BMI", -6, ft_high_cov, mus))
        out.append(_row("TGD-net (parameter)", "v2 high BMI", -6, 10.2, mus))
        return out

    training = [{"name": "v2-net", "train_time_s": 100.0, "iterations": 500},
                {"name": "TGD-net (parameter)", "train_time_s": 20.0, "iterations": 100}]
    good = finetuning_findings({"rows": rows(-3.8, 6.4, 13.0), "training": training})
    assert good and all(f["reproduced"] for f in good)
    bad = finetuning_findings({"rows": rows(-7.0, 9.0, 10.1),
                               "training": [training[0], {**training[1],
                                                          "train_time_s": 90.0}]})
    assert bad and not any(f["reproduced"] for f in bad)
    # each claim lists its conditions; "reproduced" means all of them hold
    assert all(f["reproduced"] == all(f["conditions"].values()) for f in good + bad)
    partly = finetuning_findings({"rows": rows(-5.0, 6.4, 13.0), "training": training})
    first = partly[0]["conditions"]  # closer than v1-net (-6.3) but not than FT-net (-4.7)
    assert list(first.values()) == [True, False, True] and not partly[0]["reproduced"]
    on = {"rows": [
        {"net": "v2-net", "study": 1, "unseen_nrmse_pct": 40.0, "background_cov_pct": 10.0},
        {"net": "TGD-N2N (parameter)", "study": 1, "unseen_nrmse_pct": 10.0,
         "background_cov_pct": 10.5},
        {"net": "TGD-N2N (activation)", "study": 1, "unseen_nrmse_pct": 35.0,
         "background_cov_pct": 10.0}]}
    f = {x["claim"].split(" removes")[0]: x["reproduced"] for x in online_findings(on)}
    assert f == {"TGD-N2N (parameter)": True, "TGD-N2N (activation)": False}


def test_markdown_to_html():
    h = to_html("# T\n\ntext **b** `c`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- x\n- y\n\n"
                "![f](figures/a.png)\n\n```\n<code>\n```\n")
    assert '<h1 id="t">T</h1>' in h and "<b>b</b>" in h and "<code>c</code>" in h
    assert "<td>1</td><td>2</td>" in h and "<li>x</li>" in h
    assert '<img alt="f" src="figures/a.png">' in h and "&lt;code&gt;" in h


def test_reproduce_cli_tiny(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["reproduce", "--preset", "tiny", "--out", str(out), "--no-progress"]) == 0
    for f in ("report.md", "report.html", "results.json", "finetuning.csv", "threshold.csv",
              "online.csv", "figures/table1.png", "figures/threshold.png",
              "figures/online.png"):
        assert (out / f).is_file(), f
    md = (out / "report.md").read_text()
    assert "-6.30" in md and "8.56" in md and "6.46" in md  # the paper's Table 1 beside ours
    assert "hold" in md and "torch" in md
    res = json.loads((out / "results.json").read_text())
    assert res["preset"]["name"] == "tiny" and res["findings"]
    assert res["timings"]["wall_s"] > 0
    # never replaced silently
    assert main(["reproduce", "--preset", "tiny", "--out", str(out), "--no-progress"]) == 1
    assert "exists" in capsys.readouterr().err
    # a folder that is not a report is refused even with --overwrite
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert main(["experiment", "threshold", "--preset", "tiny", "--out", str(other),
                 "--overwrite", "--no-progress"]) == 1
    assert (other / "keep.txt").is_file()
    # one experiment, replacing the earlier report
    assert main(["experiment", "threshold", "--preset", "tiny", "--out", str(out),
                 "--overwrite", "--no-progress", "--set", "realizations=2"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["experiments"] == ["threshold"] and "finetuning" not in res
    assert "changed: realizations=2" in (out / "report.md").read_text()  # never passed off
    assert res["preset"]["realizations"] == 2  # as the unmodified preset
    assert not (out / "finetuning.csv").exists()
    assert not list(tmp_path.glob(".rep.partial-*"))


def test_reproduce_cli_bad_input(tmp_path, capsys):
    assert main(["reproduce", "--preset", "tiny", "--set", "width=0", "--out",
                 str(tmp_path / "a")]) == 1
    assert main(["reproduce", "--preset", "tiny", "--set", "nonsense=3", "--out",
                 str(tmp_path / "a")]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--preset", "huge"])
    assert not (tmp_path / "a").exists()
