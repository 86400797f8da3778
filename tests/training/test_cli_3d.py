"""3-D networks through the commands (train, finetune, online, denoise) on tiny simulated data."""

import nibabel as nib
import numpy as np
import pytest

from tgd.cli import main
from tgd.inference import denoise_volume
from tgd.training import load_checkpoint, load_model

from .test_cli import _nifti

DATA = ["--sim-shape", "32", "--sim-slices", "8", "--durations", "30", "60"]
FAST = ["--batch-size", "2", "--patch-size", "16", "--no-progress", "--iterations", "2"]


@pytest.fixture(scope="module")
def dn3(tmp_path_factory):
    """A tiny 3-D DnCNN trained for 2 iterations on 8-slice, 16^3-voxel patches."""
    out = tmp_path_factory.mktemp("cli3d") / "dn3"
    assert main(["train", "--spatial-dims", "3", "--seeds", "0", "--width", "4", "--depth", "3",
                 "--fisher-samples", "2", "--val-seeds", "5", "--val-every", "2",
                 "--out", str(out), *DATA, *FAST]) == 0
    return out


def test_train_3d_dncnn_checkpoint(dn3):
    m = load_checkpoint(dn3).meta
    assert m["model"] == {"arch": "DnCNN", "in_channels": 1, "out_channels": 1, "width": 4,
                          "depth": 3, "kernel_size": 3, "spatial_dims": 3}
    assert m["config"]["spatial_dims"] == 3 and m["config"]["patch_depth"] is None
    # 8 slices, 16-voxel patches: depth 8, 1 x 2 x 2 patches per volume, 2 durations
    assert m["data"]["patch_depth"] == 8 and m["data"]["items"] == 8
    assert m["metrics"]["iterations"] == 2 and [v[0] for v in m["metrics"]["val"]] == [0, 2]
    assert m["ewc_fisher"]["samples"] == 2
    model, _ = load_model(dn3)
    assert model.spatial_dims == 3


@pytest.mark.parametrize("method", ["tgd", "ft", "ewc"])
def test_finetune_3d_takes_dims_from_checkpoint(tmp_path, dn3, method):
    out = tmp_path / method
    assert main(["finetune", "-c", str(dn3), "--method", method, "--threshold", "0.6",
                 "--ft-blocks", "2", "--seeds", "3", "--patch-depth", "4", "--out", str(out),
                 *DATA, *FAST]) == 0
    m = load_checkpoint(out).meta
    assert m["config"]["spatial_dims"] == 3 and m["config"]["patch_depth"] == 4
    assert m["model"]["spatial_dims"] == 3
    if method in ("tgd", "ft"):
        assert m["frozen_fingerprint"]["preserved"] is True
    if method == "tgd":
        assert m["plan"]["threshold"] == 0.6 and m["tgd_round"] == 1
        assert m["plan"]["structure"]["body.0"] == [4, 1, 3, 3, 3]  # 3-D kernels
        assert m["plan"]["layers"]["body.5"]["role"] == "frozen"  # the last conv


def test_contradicting_spatial_dims_is_a_clear_error(tmp_path, dn3, capsys):
    common = ["--seeds", "3", *DATA, *FAST, "--out", str(tmp_path / "o")]
    assert main(["finetune", "-c", str(dn3), "--spatial-dims", "2", *common]) == 1
    err = capsys.readouterr().err
    assert "spatial_dims=2" in err and "its network is 3-D" in err
    cfg = tmp_path / "c.toml"
    cfg.write_text("spatial-dims = 2\n")
    assert main(["online", "-c", str(dn3), "--config", str(cfg), "--simulate-study", "1",
                 *FAST, "--out", str(tmp_path / "o2")]) == 1
    assert "its network is 3-D" in capsys.readouterr().err
    assert main(["finetune", "-c", str(dn3), "--spatial-dims", "3", *common]) == 0  # agrees
    # a 2-D net with a 3-D-only setting
    assert main(["train", "--seeds", "0", "--patch-depth", "4", "--width", "4", "--depth", "2",
                 *DATA, *FAST, "--out", str(tmp_path / "p")]) == 1
    assert "patch_depth applies to 3-D networks only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--spatial-dims", "4", "--seeds", "0", "--out", str(tmp_path / "x")])
    assert e.value.code == 2


def test_unet_3d_trains_and_finetunes_with_tgd(tmp_path):
    out = tmp_path / "unet3"
    assert main(["train", "--arch", "unet", "--spatial-dims", "3", "--width", "4", "--depth", "2",
                 "--seeds", "0", "--fisher-samples", "0", "--channels-last", "--out", str(out),
                 *DATA, *FAST]) == 0
    spec = load_checkpoint(out).meta["model"]
    assert spec == {"arch": "UNet", "in_channels": 1, "out_channels": 1, "widths": [4, 8],
                    "spatial_dims": 3}
    tuned = tmp_path / "tuned"
    assert main(["finetune", "-c", str(out), "--method", "tgd", "--threshold", "0.6",
                 "--seeds", "1", "--out", str(tuned), *DATA, *FAST]) == 0
    meta = load_checkpoint(tuned).meta
    assert meta["frozen_fingerprint"]["preserved"] is True
    assert meta["plan"]["reads"]["dec.0.0"]
    vol = np.random.default_rng(2).uniform(0.5, 2, (7, 18, 14)).astype(np.float32)
    _nifti(tmp_path / "in.nii.gz", vol)
    # sizes not divisible by 2: padded for the U-Net and cropped back
    assert main(["denoise", str(tmp_path / "in.nii.gz"), str(tmp_path / "d.nii.gz"),
                 "-c", str(tuned), "--chunk", "2", "--no-progress"]) == 0
    assert nib.load(tmp_path / "d.nii.gz").shape == (14, 18, 7)


def test_online_3d(tmp_path, dn3):
    out = tmp_path / "online"
    assert main(["online", "-c", str(dn3), "--simulate-study", "2", "--sim-shape", "32",
                 "--sim-slices", "8", "--duration", "60", "--threshold", "0.6",
                 "--out", str(out), *FAST]) == 0
    m = load_checkpoint(out).meta
    assert m["method"] == "online" and m["frozen_fingerprint"]["preserved"]
    assert m["config"]["spatial_dims"] == 3
    assert m["data"]["items"] == 2 * 4  # both directions, 1 x 2 x 2 patches each
    den = nib.load(out / "denoised.nii.gz")
    assert den.shape == (32, 32, 8) and np.isfinite(np.asarray(den.dataobj)).all()


def test_denoise_3d_whole_volume_keeps_header(tmp_path, dn3, capsys):
    vol = np.random.default_rng(0).uniform(0.5, 2, (9, 24, 20)).astype(np.float32)
    src = _nifti(tmp_path / "in.nii.gz", vol)
    out = tmp_path / "out.nii.gz"
    assert main(["denoise", str(tmp_path / "in.nii.gz"), str(out), "-c", str(dn3), "--chunk",
                 "4", "--no-progress"]) == 0
    res = nib.load(out)
    assert res.shape == src.shape
    np.testing.assert_array_equal(res.affine, src.affine)
    assert int(res.header["qform_code"]) == 1 and int(res.header["sform_code"]) == 2
    # chunks with the default halo give the whole-volume result
    model, _ = load_model(dn3)
    whole = denoise_volume(model, vol, chunk=None)
    got = np.transpose(np.asarray(res.dataobj), (2, 1, 0))
    np.testing.assert_allclose(got, whole, rtol=1e-4, atol=1e-5)
    flat = nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4))
    nib.save(flat, tmp_path / "flat.nii.gz")
    assert main(["denoise", str(tmp_path / "flat.nii.gz"), str(tmp_path / "o2.nii.gz"),
                 "-c", str(dn3)]) == 1
    assert "3-D volume" in capsys.readouterr().err


def test_small_3d_data_fills_one_batch_with_more_patches(tmp_path, dn3):
    # 1 x 2 x 2 tiles per realization = 8 N2N items; the default batch of 16 needs more patches
    out = tmp_path / "online16"
    assert main(["online", "-c", str(dn3), "--simulate-study", "2", "--sim-shape", "32",
                 "--sim-slices", "8", "--duration", "60", "--patch-size", "16",
                 "--iterations", "1", "--no-progress", "--out", str(out)]) == 0
    m = load_checkpoint(out).meta
    assert m["config"]["batch_size"] == 16 and m["data"]["items"] == 16
