"""TOD-Net inside ``tgd reproduce``: one replicate per seed on fresh data, findings decided on
the replicates, and the report's section (tiny sizes: the numbers mean nothing)."""

import pytest

from tgd.cli import main
from tgd.repro.experiments.presets import get_preset
from tgd.repro.experiments.reproduce import PET_EXPERIMENTS, experiments_for, run_experiments
from tgd.repro.experiments.tod import get_tod_preset, study_seeds
from tgd.repro.report import write_report

pytest.importorskip("monai")


def test_replicates_draw_their_own_studies():
    p = get_tod_preset("quick")
    assert study_seeds("ct", p) == (p.ct_train, p.ct_test)  # tgd experiment tod: the preset's
    seen = set()
    for kind in ("ct", "pet"):
        for rep in (0, 1, 1000):
            train, test = study_seeds(kind, p, rep)
            assert len(train) == len(p.ct_train) and len(test) == len(p.ct_test)
            assert not (set(train) | set(test)) & seen  # nothing shared between replicates
            seen |= set(train) | set(test)


def test_tod_in_reproduce(tmp_path):
    tiny = get_preset("tiny")
    assert experiments_for(tiny) == PET_EXPERIMENTS  # left out unless the preset names it
    assert "tod" in experiments_for(get_preset("medium"))
    with pytest.raises(ValueError, match="TOD preset"):
        run_experiments(tiny, ("tod",), progress=False)
    with pytest.raises(ValueError, match="presets"):
        run_experiments(get_preset("tiny", tod="huge"), ("tod",), progress=False)

    res = run_experiments(get_preset("tiny", tod="tiny"), ("tod",), progress=False)
    seeds = res["replicate_seeds"]
    assert [r["tod"]["studies"]["ct"] for r in res["replicates"]][0] != \
        [r["tod"]["studies"]["ct"] for r in res["replicates"]][1]
    rows = res["tod"]["rows"]
    methods = {r["method"] for r in rows if r["modality"] == "ct"}
    assert {"MSE-net", "MSE-WGAN", "TOD-Net", "Gaussian filter", "low-dose input"} <= methods
    tod_net = next(r for r in rows if r["modality"] == "ct" and r["method"] == "TOD-Net")
    assert tod_net["n_replicates"] == len(seeds) and len(tod_net["rmse_roi_ci"]) == 2
    ids = {f["id"]: f for f in res["findings"]}
    for fid in ("tod_ct_task_dice", "tod_ct_other_dice", "tod_ct_roi_rmse", "tod_pet_bias",
                "tod_ct_premise"):
        assert len(ids[fid]["per_replicate"]) == len(seeds), fid
    # the effect is the replicate's TOD-Net minus MSE-net, averaged over its test studies
    rep0 = res["replicates"][0]["tod"]["rows"]
    a = next(r for r in rep0 if r["modality"] == "ct" and r["method"] == "TOD-Net")
    b = next(r for r in rep0 if r["modality"] == "ct" and r["method"] == "MSE-net")
    assert ids["tod_ct_roi_rmse"]["per_replicate"][0] == pytest.approx(
        b["rmse_roi"] - a["rmse_roi"])

    md = (write_report(res, tmp_path / "rep") / "report.md").read_text()
    assert "## Task-oriented denoising (TOD-Net, seed 002)" in md
    assert "### Low-dose CT" in md and "### PET" in md and "Gaussian filter" in md
    assert (tmp_path / "rep" / "tod.csv").is_file()


def test_reproduce_cli_tod_only(tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["reproduce", "--preset", "tiny", "--set", "tod=huge", "--out", str(out)]) == 1
    assert "presets" in capsys.readouterr().err and not out.exists()
    assert main(["reproduce", "--preset", "tiny", "--experiments", "tod", "--out",
                 str(out)]) == 1
    assert "TOD preset" in capsys.readouterr().err and not out.exists()
    assert main(["reproduce", "--preset", "tiny", "--set", "tod=tiny", "--experiments", "tod",
                 "--out", str(out), "--no-progress"]) == 0
    md = (out / "report.md").read_text()
    assert "## Task-oriented denoising" in md and "## Fine-tuning" not in md
    assert md.startswith("# TGD and TOD-Net: reproduction on simulated PET and CT data")
    assert "changed: tod=tiny" in md
