"""Smoke runs of every experiment and of ``tgd reproduce`` on the tiny preset, report checks."""

import json

import numpy as np
import pytest
import torch

from tgd.cli import main
from tgd.repro.experiments import finetuning, online, threshold
from tgd.repro.experiments.common import pretrain, simulate
from tgd.repro.experiments.presets import get_preset
from tgd.repro.quality import ensemble_quality
from tgd.repro.report.markdown import to_html

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
    assert q["nrmse_vs600"] == 0 and q["ssim_vs600"] == pytest.approx(1)
    assert q["psnr_vs600_db"] == float("inf")
    # against the noiseless reconstruction the 600-s image has its own noise
    assert 0 < q["nrmse"] < 0.2 and q["psnr_db"] < float("inf")
    # the 600-s image is biased low against the phantom truth (partial volume), never above
    assert q["lesion_bias_pct"] < 0
    nl = st.noiseless("v2")
    qn = ensemble_quality(st, "v2", np.stack([nl, nl]))
    assert qn["nrmse"] == 0 and qn["lesion_bias_vsnl_pct"] == pytest.approx(0, abs=1e-9)
    assert qn["lesion_max_bias_vsnl_pct"] == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="ensemble must be"):
        ensemble_quality(st, "v2", ref)


def test_finetuning_threshold_online_smoke(studies, base):
    ft = finetuning.run(TINY, studies, base)
    names = {r["net"] for r in ft["rows"]}
    assert names == {"60-s input", "Gaussian filter", "v1-net", "v2-net", "FT-net",
                     "TGD-net (parameter)", "TGD-net (activation)", "TGD-net (auto)", "EWC-net",
                     "L2-SP-net", "LoRA-net", "FT-all-net (forgetting control)"}
    assert {r["test"] for r in ft["rows"]} == {"v2 low BMI", "v2 high BMI", "v1 low BMI"}
    assert all(np.isfinite(r["liver_cov_pct"]) and np.isfinite(r["lesion_bias_pct"])
               for r in ft["rows"])
    # the Gaussian baseline sits at the v2-net's noise level
    for test in ("v2 low BMI", "v2 high BMI", "v1 low BMI"):
        g = next(r for r in ft["rows"] if r["net"] == "Gaussian filter" and r["test"] == test)
        v2 = next(r for r in ft["rows"] if r["net"] == "v2-net" and r["test"] == test)
        inp = next(r for r in ft["rows"] if r["net"] == "60-s input" and r["test"] == test)
        if v2["liver_cov_pct"] < inp["liver_cov_pct"]:
            assert g["liver_cov_pct"] == pytest.approx(v2["liver_cov_pct"], rel=0.01)
    info = {t["name"]: t for t in ft["training"]}
    assert info["TGD-net (parameter)"]["frozen_preserved"] is True
    assert info["TGD-net (activation)"]["frozen_preserved"] is True
    assert info["FT-net"]["frozen_preserved"] is True
    assert 0 < info["TGD-net (parameter)"]["trained_fraction"] < 1
    auto = info["TGD-net (auto)"]  # the chosen threshold and why are recorded
    assert 0 <= auto["auto_threshold"] <= 1 and auto["auto_reason"]
    assert auto["frozen_preserved"] is True
    # every net adapting to v2 (and the v2-net) has a validation curve from iteration 0
    for name in ("v2-net", "FT-net", "TGD-net (parameter)", "EWC-net", "L2-SP-net",
                 "LoRA-net"):
        curve = info[name]["val_curve"]
        assert curve[0][:2] == [0, 0.0] and curve[-1][0] == info[name]["iterations"]
    assert "val_curve" not in info["v1-net"]
    th = threshold.run(TINY, studies, base)
    assert [r["threshold"] for r in th["rows"]] == list(TINY.thresholds)
    assert th["rows"][0]["fraction_dropped"] == 0 and th["rows"][0]["nrmse_vs_original"] == 0
    fr = [r["fraction_dropped"] for r in th["rows"]]
    assert fr == sorted(fr) and fr[-1] > 0
    assert len(th["random"]["draws"]) == TINY.random_draws
    kse = next(r for r in th["rows"] if r["threshold"] == TINY.threshold)
    # random maps: as many per layer as KSE's choice, so the same parameter share
    assert all(d["fraction_dropped"] == pytest.approx(kse["fraction_dropped"])
               for d in th["random"]["draws"])
    on = online.run(TINY, studies, ft["nets"])
    assert {r["net"] for r in on["rows"]} == {
        "60-s input", "Gaussian filter", "v2-net", "TGD-net (parameter)", "TGD-N2N (mse)",
        "TGD-N2N (anscombe)", "TGD²-N2N (mse)", "TGD²-N2N (anscombe)"}
    assert all(t["frozen_preserved"] for t in on["training"])
    assert all("best_iteration" in t for t in on["training"])
    assert all(np.isfinite(r["unseen_nrmse_pct"]) for r in on["rows"])
    kept = {r["net"]: r["noise_reduction_kept_pct"] for r in on["rows"]}
    assert kept["60-s input"] == 0 and kept["v2-net"] == pytest.approx(100)


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
    assert "inconclusive" in md and "torch" in md
    assert "Not run with this preset" in md  # TOD-Net: said, not silently missing
    res = json.loads((out / "results.json").read_text())
    assert res["preset"]["name"] == "tiny" and res["findings"]
    assert res["replicate_seeds"] == [0, 1] and len(res["replicates"]) == 2
    assert {f["verdict"] for f in res["findings"]} <= {"holds", "does not hold",
                                                        "inconclusive"}
    low = next(r for r in res["finetuning"]["rows"]
               if r["net"] == "TGD-net (parameter)" and r["test"] == "v2 low BMI")
    assert low["n_replicates"] == 2 and len(low["psnr_db_ci"]) == 2
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
