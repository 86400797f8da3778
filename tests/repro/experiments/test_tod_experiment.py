"""The TOD experiment end to end at the tiny size (CT only), and its paired intervals."""

import json

import numpy as np
import pytest

from tgd.repro.experiments.tod import (
    METHODS,
    gaussian_baseline,
    get_tod_preset,
    paired_ci,
    run_tod,
)
from tgd.repro.report.tod import write_tod_report

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
    assert not (tmp_path / "report.md").exists()  # the report layer writes it
    text = write_tod_report(res, tmp_path).read_text()
    assert "TOD-Net" in text and "Gaussian filter" in text
    assert set(ct["differences"]) == {"TOD-Net - MSE-net", "TOD-Net - MSE-WGAN",
                                      "TOD-Net - Gaussian filter"}
    assert [g["case"] for g in ct["gaussian"]] == list(p.ct_test) * len(p.seeds)
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


def test_gaussian_baseline_matches_the_nets_noise_in_the_liver():
    from types import SimpleNamespace

    from scipy.ndimage import binary_erosion

    rng = np.random.default_rng(0)
    classes = np.zeros((8, 40, 40), np.int64)
    classes[:, 8:32, 8:32] = 1  # liver
    ref = np.ones(classes.shape, np.float32)
    low = (ref + rng.normal(0, 0.1, classes.shape)).astype(np.float32)
    case = SimpleNamespace(seed=7, classes=classes, labels=classes.copy(),
                           images={("x", "low"): low, ("x", "ref"): ref},
                           voxel_mm=(4.0, 4.0, 4.0))
    liver = binary_erosion(classes == 1, iterations=2)
    net = (ref + rng.normal(0, 0.04, classes.shape)).astype(np.float32)
    out, g = gaussian_baseline(case, {"MSE-net": net}, "MSE-net")
    assert g["matched"] and g["fwhm_mm"] > 0 and g["case"] == 7
    assert float((out - ref)[liver].std()) == pytest.approx(float((net - ref)[liver].std()),
                                                            rel=0.01)
    # a net with no error at all: no Gaussian is that good, the best one is used
    out, g = gaussian_baseline(case, {"MSE-net": ref.copy()}, "MSE-net")
    assert not g["matched"] and out.shape == low.shape
    # a slab without liver: the noise is matched over the labelled body instead
    case.classes = np.zeros_like(classes)
    out, g = gaussian_baseline(case, {"MSE-net": net}, "MSE-net")
    assert g["roi"] == "body" and g["matched"]
