"""The TOD experiment end to end at the tiny size (CT only), and its paired intervals."""

import json

import numpy as np
import pytest

from tgd.experiments.tod import METHODS, get_tod_preset, paired_ci, run_tod

pytest.importorskip("monai")


def test_paired_ci_by_hand():
    c = paired_ci([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])  # differences 2, 3, 4: sd 1
    assert c["n"] == 3 and c["mean"] == pytest.approx(3.0)
    assert c["hi"] - c["mean"] == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert paired_ci([1.0, np.nan], [0.0, 0.0])["n"] == 1


def test_tod_experiment_tiny(tmp_path):
    p = get_tod_preset("tiny", modalities=("ct",))
    res = run_tod(p, tmp_path)
    ct = res["modalities"]["ct"]
    assert set(METHODS) <= set(ct["table"])
    assert {"low-dose input", "normal-dose reference"} <= set(ct["table"])
    row = ct["table"]["TOD-Net"]
    for k in ("rmse_image", "psnr_roi", "ssim_roi", "dice_unet_lesion", "dice_resunet_liver"):
        assert k in row
    d = ct["differences"]["TOD-Net - MSE-WGAN"]["rmse_roi"]
    assert d["n"] == len(p.seeds) * len(p.ct_test)
    assert ct["table"]["normal-dose reference"]["rmse_image"] == 0.0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["preset"]["name"] == "tiny"
    assert "TOD-Net" in (tmp_path / "report.md").read_text()
    with pytest.raises(FileExistsError):
        run_tod(p, tmp_path)
    with pytest.raises(ValueError, match="presets"):
        get_tod_preset("huge")


def test_tgd_with_the_tod_loss_keeps_the_frozen_weights(tmp_path):
    p = get_tod_preset("tiny", modalities=("pet-tgd",), seeds=(0,), segmenters=("unet",))
    r = run_tod(p, tmp_path)["modalities"]["pet-tgd"]
    assert {"v1-net", "TGD (MSE)", "TGD (TOD)"} <= set(r["table"])
    assert all(v["frozen_preserved"] for v in r["training"][0].values())
    assert "TGD (TOD) - TGD (MSE)" in r["differences"]
