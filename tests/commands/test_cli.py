"""The training commands end to end on tiny simulated data (datalist manifests written by
``tgd simulate``'s ``simulate_to_disk``), and their error messages; the tests that take
``cli_net`` run once with a 2.5-D and once with a 3-D network (3-D-only behaviour:
test_cli_3d.py)."""

import json
import re
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch

from tgd.cli import build_parser, main
from tgd.inference import denoise_volume
from tgd.training import load_checkpoint, load_model

from ..conftest import CLI

FAST = CLI[2]["fast"]


@pytest.fixture(scope="module")
def ft_data(sim_manifests):
    """``--data`` of fine-tuning runs: v2 studies of seed 3 (as ``--seeds 3`` simulated)."""
    return ["--data", sim_manifests([3])["v2"]]


def test_every_command_has_help(capsys):
    for cmd in ("train", "finetune", "online", "denoise", "kse", "train-segmenter", "simulate"):
        with pytest.raises(SystemExit) as e:
            build_parser(cmd).parse_args([cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "usage: tgd " + cmd in text, cmd
        assert len(re.findall(r"^  --\w", text, flags=re.M)) > 2, cmd  # its own options


def test_train_writes_checkpoint_with_metadata(cli_net):
    dims, path = cli_net
    ck = load_checkpoint(path)
    m = ck.meta
    iters = {2: 4, 3: 2}[dims]
    assert m["method"] == "scratch" and m["seed"] == 0
    assert m["model"] == {"arch": "DnCNN", "in_channels": {2: 3, 3: 1}[dims], "out_channels": 1,
                          "width": {2: 8, 3: 4}[dims], "depth": {2: 4, 3: 3}[dims],
                          "kernel_size": 3, "spatial_dims": dims}
    assert m["config"]["spatial_dims"] == dims and m["config"]["patch_depth"] is None
    assert m["data"]["source"] == "manifest" and m["data"]["manifests"][0].endswith(
        "manifest_v1.json")
    assert [s["group"] for s in m["data"]["studies"]] == ["study_0000"]
    assert m["data"]["studies"][0]["levels"] == [30, 60]
    assert m["data"]["validation"]["studies"][0]["group"] == "study_0005"
    if dims == 3:  # 8 slices, 16-voxel patches: depth 8, 1 x 2 x 2 patches, 2 durations
        assert m["data"]["patch_depth"] == 8 and m["data"]["items"] == 8
    # validation before the first step, then every 2 iterations
    assert m["metrics"]["iterations"] == iters
    assert [v[0] for v in m["metrics"]["val"]] == list(range(0, iters + 1, 2))
    assert (path / "model.fisher.json").exists()
    assert m["ewc_fisher"]["samples"] == {2: 4, 3: 2}[dims]
    assert any(k.endswith("running_mean") for k in ck.tensors)
    model, _ = load_model(path)
    assert model.spatial_dims == dims


FINETUNE_CASES = [*((2, m) for m in ("tgd", "ft", "ewc", "l2sp", "lora")),
                  *((3, m) for m in ("tgd", "ft", "ewc"))]


@pytest.mark.parametrize(("dims", "method"), FINETUNE_CASES)
def test_finetune_methods(tmp_path, request, dims, method, capsys, sim_manifests):
    if method == "lora":
        pytest.importorskip("peft")
    net = request.getfixturevalue({2: "v1", 3: "dn3"}[dims])
    fast = CLI[dims]["fast"]

    def data(seed):
        return ["--data", sim_manifests([seed], **CLI[dims]["sim"])["v2"]]

    extra = {2: [], 3: ["--ft-blocks", "2", "--patch-depth", "4"]}[dims]
    out = tmp_path / method
    rc = main(["finetune", "-c", str(net), "--method", method, "--threshold", "0.6",
               "--out", str(out), *extra, *data(3), *fast])
    assert rc == 0
    assert "summary:" in capsys.readouterr().out
    m = load_checkpoint(out).meta
    assert m["method"] == method and m["parent"]["path"].endswith("model.json")
    # the dims come from the checkpoint
    assert m["config"]["spatial_dims"] == dims and m["model"]["spatial_dims"] == dims
    assert m["config"]["patch_depth"] == {2: None, 3: 4}[dims]
    if method in ("tgd", "ft"):
        assert m["frozen_fingerprint"]["preserved"] is True
    if method in ("l2sp", "lora"):  # a plain DnCNN checkpoint, loadable like any other
        model, _ = load_model(out)
        assert type(model).__name__ == "DnCNN"
    if method == "tgd":
        assert m["plan"]["threshold"] == 0.6 and m["tgd_round"] == 1
        spec = m["model"]
        assert m["plan"]["structure"]["body.0"] == [spec["width"], spec["in_channels"],
                                                    *[3] * dims]
        last_conv = [n for n, v in m["plan"]["structure"].items() if len(v) == dims + 2][-1]
        assert m["plan"]["layers"][last_conv]["role"] == "frozen"
        # TGD^2: run tgd again on the TGD-adapted net
        rc = main(["finetune", "-c", str(out), "--method", "tgd", *data(4),
                   "--threshold", "0.6", "--out", str(tmp_path / "tgd2"), *fast])
        assert rc == 0
        m2 = load_checkpoint(tmp_path / "tgd2").meta
        assert m2["tgd_round"] == 2 and len(m2["plan_history"]) == 1


def test_config_file_and_flag_override(tmp_path, v1, ft_data):
    cfg = tmp_path / "ft.toml"
    cfg.write_text(f'method = "ft"\ndata = [{json.dumps(ft_data[1])}]\n'
                   '[optim]\niterations = 3\nbatch-size = 4\n'
                   'patch-size = 16\nlr = 0.002\nprogress = false\n')
    out = tmp_path / "o"
    assert main(["finetune", "-c", str(v1), "--config", str(cfg), "--lr", "0.004",
                 "--out", str(out)]) == 0
    m = load_checkpoint(out).meta
    assert m["method"] == "ft" and m["config"]["iterations"] == 3
    assert m["data"]["manifests"] == [ft_data[1]]
    assert m["config"]["lr"] == 0.004  # the flag wins over the file
    bad = tmp_path / "bad.toml"
    bad.write_text("iteratons = 3\n")
    assert main(["finetune", "-c", str(v1), "--config", str(bad), "--out",
                 str(tmp_path / "x")]) == 1


def test_amp_option_from_flag_and_config_file(tmp_path, v1, ft_data, capsys):
    from tgd.training import TrainConfig

    assert TrainConfig.from_options({"iterations": 1, "amp": "none"}, "tgd").amp is None
    assert TrainConfig.from_options({"iterations": 1, "amp": "BF16"}, "tgd").amp == "bf16"
    with pytest.raises(ValueError, match="amp"):
        TrainConfig.from_options({"iterations": 1, "amp": "fp16"}, "tgd")
    out = tmp_path / "o"
    assert main(["finetune", "-c", str(v1), *ft_data, *FAST, "--amp", "bf16",
                 "--out", str(out)]) == 0
    assert load_checkpoint(out).meta["config"]["amp"] == "bf16"
    with pytest.raises(SystemExit):
        build_parser("finetune").parse_args(["finetune", "--amp", "fp16"])


def test_refuses_to_overwrite(tmp_path, v1, ft_data, capsys):
    args = ["finetune", "-c", str(v1), *ft_data, *FAST, "--out", str(tmp_path)]
    assert main(args) == 0
    before = (tmp_path / "model.safetensors").read_bytes()
    assert main(args) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert main(args + ["--overwrite", "--seed", "1"]) == 0
    assert (tmp_path / "model.safetensors").read_bytes() != before


def test_bad_checkpoints_are_clear_errors(tmp_path, v1, ft_data, capsys):
    common = [*ft_data, *FAST, "--out", str(tmp_path / "o")]
    assert main(["finetune", "-c", str(tmp_path / "nope"), *common]) == 1
    assert "no checkpoint" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text((v1 / "model.json").read_text())
    data = (v1 / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[:-10])
    assert main(["finetune", "-c", str(broken), *common]) == 1
    assert "truncated" in capsys.readouterr().err
    (broken / "model.safetensors").write_bytes(data)
    (broken / "model.json").write_text("{not json")
    assert main(["finetune", "-c", str(broken), *common]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    meta = json.loads((v1 / "model.json").read_text())
    meta["model"]["depth"] = 5
    (broken / "model.json").write_text(json.dumps(meta))
    assert main(["finetune", "-c", str(broken), *common]) == 1
    assert "does not match the model" in capsys.readouterr().err


def _nifti(path, data, affine=None):
    affine = np.diag([-2.0, -2.0, 3.0, 1.0]) if affine is None else affine
    img = nib.Nifti1Image(np.transpose(data, (2, 1, 0)).astype(np.float32), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    img.header["descrip"] = b"test"
    nib.save(img, path)
    return img


def test_denoise_keeps_header_and_refuses_bad_input(tmp_path, cli_net, capsys):
    dims, net = cli_net
    vol = np.random.default_rng(0).uniform(0.5, 2, (9, 24, 20)).astype(np.float32)
    src = _nifti(tmp_path / "in.nii.gz", vol)
    out = tmp_path / "out.nii.gz"
    assert main(["denoise", str(tmp_path / "in.nii.gz"), str(out), "-c", str(net),
                 "--chunk", "4", "--no-progress"]) == 0
    res = nib.load(out)
    assert res.shape == src.shape
    np.testing.assert_array_equal(res.affine, src.affine)
    assert int(res.header["qform_code"]) == 1 and int(res.header["sform_code"]) == 2
    assert res.header["descrip"].tobytes().startswith(b"test")
    # the library's whole-volume result (3-D: chunks with the default halo are exact)
    model, _ = load_model(net)
    got = np.transpose(np.asarray(res.dataobj), (2, 1, 0))
    np.testing.assert_allclose(got, denoise_volume(model, vol, chunk=None), rtol=1e-4, atol=1e-5)
    side = json.loads((tmp_path / "out.json").read_text())  # provenance, as for DICOM input
    assert side["denoised_by"] == "tgd denoise" and side["source"].endswith("in.nii.gz")
    assert main(["denoise", str(tmp_path / "in.nii.gz"), str(out), "-c", str(net)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    flat = nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4))
    nib.save(flat, tmp_path / "flat.nii.gz")
    assert main(["denoise", str(tmp_path / "flat.nii.gz"), str(tmp_path / "o2.nii.gz"),
                 "-c", str(net)]) == 1
    assert "3-D volume" in capsys.readouterr().err
    vol[2, 3, 3] = np.nan
    _nifti(tmp_path / "nan.nii.gz", vol)
    assert main(["denoise", str(tmp_path / "nan.nii.gz"), str(tmp_path / "o3.nii.gz"),
                 "-c", str(net)]) == 1
    assert "NaN" in capsys.readouterr().err


def test_denoise_fast_options_match_the_default(tmp_path, v1, monkeypatch):
    """--device cpu --amp bf16 stays within bf16 rounding of the default output; --compile
    falls back to eager (here: a compiler that fails) and gives the default output."""
    vol = np.random.default_rng(0).uniform(0.5, 2, (5, 24, 20)).astype(np.float32)
    _nifti(tmp_path / "in.nii.gz", vol)
    outs = {}
    for name, extra in (("ref", []), ("bf16", ["--amp", "bf16", "--device", "cpu"]),
                        ("compiled", ["--compile"])):
        if name == "compiled":
            monkeypatch.setattr("torch.compile", lambda *a, **k: 1 / 0)
        out = tmp_path / f"{name}.nii.gz"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(["denoise", str(tmp_path / "in.nii.gz"), str(out), "-c", str(v1),
                         "--no-progress", *extra]) == 0
        outs[name] = np.asarray(nib.load(out).dataobj)
    assert np.abs(outs["bf16"] - outs["ref"]).max() / np.abs(outs["ref"]).max() < 3e-2
    np.testing.assert_array_equal(outs["compiled"], outs["ref"])


def test_online_from_nifti_halves(tmp_path, cli_net, studies):
    dims, net = cli_net
    h1, h2 = studies["v2"][0].noise2noise("v2", 60)  # 4 slices of 32 x 32
    _nifti(tmp_path / "h1.nii.gz", h1)
    _nifti(tmp_path / "h2.nii.gz", h2)
    out = tmp_path / "online"
    assert main(["online", "-c", str(net), "--half1", str(tmp_path / "h1.nii.gz"), "--half2",
                 str(tmp_path / "h2.nii.gz"), "--threshold", "0.6", "--out", str(out),
                 "--loss", "anscombe", *CLI[dims]["fast"]]) == 0
    m = load_checkpoint(out).meta
    assert m["method"] == "online" and m["frozen_fingerprint"]["preserved"]
    assert m["config"]["loss"] == "anscombe" and m["config"]["spatial_dims"] == dims
    # both directions: one item per slice (2-D), or 1 x 2 x 2 patches 4 slices deep (3-D)
    assert m["data"]["items"] == 2 * {2: h1.shape[0], 3: 4}[dims]
    den = nib.load(out / "denoised.nii.gz")
    assert den.shape == nib.load(tmp_path / "h1.nii.gz").shape
    assert np.isfinite(np.asarray(den.dataobj)).all()


def test_online_refuses_mismatched_halves(tmp_path, v1, capsys):
    _nifti(tmp_path / "a.nii.gz", np.ones((4, 16, 16), np.float32))
    _nifti(tmp_path / "b.nii.gz", np.ones((4, 16, 12), np.float32))
    assert main(["online", "-c", str(v1), "--half1", str(tmp_path / "a.nii.gz"), "--half2",
                 str(tmp_path / "b.nii.gz"), "--out", str(tmp_path / "o"), *FAST]) == 1
    assert "differ in shape" in capsys.readouterr().err
    # files only: without both halves there is nothing to adapt to
    assert main(["online", "-c", str(v1), "--half1", str(tmp_path / "a.nii.gz"),
                 "--out", str(tmp_path / "o"), *FAST]) == 1
    assert "give --half1 and --half2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_ewc_fisher_stored_or_estimated_from_a_manifest(tmp_path, v1, ft_data, capsys,
                                                        sim_manifests):
    stored = tmp_path / "stored"
    assert main(["finetune", "-c", str(v1), "--method", "ewc", *ft_data, *FAST,
                 "--out", str(stored)]) == 0
    assert load_checkpoint(stored).meta["ewc_fisher"]["stored"] is True
    pre = sim_manifests([0])["v1"]  # the pre-training studies of v1
    est = tmp_path / "estimated"
    assert main(["finetune", "-c", str(v1), "--method", "ewc", *ft_data, *FAST,
                 "--fisher-data", pre, "--fisher-samples", "3", "--out", str(est)]) == 0
    info = load_checkpoint(est).meta["ewc_fisher"]
    assert "stored" not in info and info["data"]["manifests"] == [pre]
    a, b = load_checkpoint(stored).tensors, load_checkpoint(est).tensors
    assert any(not torch.equal(a[k], b[k]) for k in a)  # another Fisher, another penalty
    capsys.readouterr()
    assert main(["finetune", "-c", str(v1), "--method", "ewc", *ft_data, *FAST,
                 "--fisher-data", str(tmp_path / "none.json"), "--out", str(tmp_path / "x")]) == 1
    assert "no such manifest" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_kse_report_and_sweep(tmp_path, v1, capsys, sim_manifests):
    js = tmp_path / "kse.json"
    assert main(["kse", str(v1), "--thresholds", "0", "0.5", "--val-data",
                 sim_manifests([6])["v1"], "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "KSE min" in text and "% params dropped" in text and "val MSE" in text
    rep = json.loads(js.read_text())
    assert [r["threshold"] for r in rep["sweep"]] == [0.0, 0.5]
    assert rep["sweep"][0]["fraction_dropped"] == 0.0
    assert all(torch.isfinite(torch.tensor(r["metric"])) for r in rep["sweep"])


def test_train_from_a_simulated_manifest_and_epochs(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert main(["simulate", "--out", str(sim), "--n-studies", "1", "--shape", "32",
                 "--n-slices", "4", "--durations", "30", "60", "600", "--versions", "v1"]) == 0
    assert f"manifest: {sim / 'manifest_v1.json'}" in capsys.readouterr().out
    out = tmp_path / "m"
    train = ["train", "--width", "8", "--depth", "3", "--batch-size", "4", "--patch-size", "16",
             "--fisher-samples", "0", "--no-progress"]
    assert main([*train, "--data", str(sim / "manifest_v1.json"), "--epochs", "2",
                 "--out", str(out)]) == 0
    m = load_checkpoint(out).meta
    assert m["data"]["source"] == "manifest"
    assert m["data"]["studies"][0]["target"].endswith("study_0000/v1_0600s.nii.gz")
    assert m["data"]["items"] == 8 and m["metrics"]["iterations"] == 4  # 2 epochs x 2 steps
    capsys.readouterr()
    # no data, a missing manifest, a study folder instead of a manifest: clear errors
    assert main([*train, "--iterations", "1", "--out", str(tmp_path / "x")]) == 1
    assert "give --data" in capsys.readouterr().err
    assert main([*train, "--data", str(tmp_path / "none.json"), "--iterations", "1",
                 "--out", str(tmp_path / "x")]) == 1
    assert "no such manifest" in capsys.readouterr().err
    assert main([*train, "--data", str(sim / "study_0000"), "--iterations", "1",
                 "--out", str(tmp_path / "x")]) == 1
    assert "no such manifest" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_unet_architecture_trains_and_finetunes_with_tgd(tmp_path, dims, sim_manifests):
    fast = CLI[dims]["fast"]

    def data(seed, version):
        return ["--data", sim_manifests([seed], **CLI[dims]["sim"])[version]]

    out = tmp_path / "unet"
    assert main(["train", "--arch", "unet", "--spatial-dims", str(dims), "--width", "4",
                 "--depth", "2", *data(0, "v1"), "--fisher-samples", "0", "--channels-last",
                 "--out", str(out), *fast]) == 0
    spec = load_checkpoint(out).meta["model"]
    assert spec == {"arch": "UNet", "in_channels": {2: 3, 3: 1}[dims], "out_channels": 1,
                    "widths": [4, 8], "spatial_dims": dims}
    tuned = tmp_path / "tuned"
    assert main(["finetune", "-c", str(out), "--method", "tgd", "--threshold", "0.6",
                 *data(1, "v2"), "--out", str(tuned), *fast]) == 0
    meta = load_checkpoint(tuned).meta
    assert meta["frozen_fingerprint"]["preserved"] is True
    assert "dec.0.0" in meta["plan"]["layers"] and meta["plan"]["reads"]["dec.0.0"]
    vol = np.random.default_rng(2).uniform(0.5, 2, (7, 18, 14)).astype(np.float32)
    _nifti(tmp_path / "in.nii.gz", vol)
    # sizes not divisible by 2: padded for the U-Net and cropped back
    assert main(["denoise", str(tmp_path / "in.nii.gz"), str(tmp_path / "d.nii.gz"),
                 "-c", str(tuned), "--chunk", "2", "--no-progress"]) == 0
    assert nib.load(tmp_path / "d.nii.gz").shape == (14, 18, 7)


def test_unknown_architecture_is_rejected(tmp_path):
    with pytest.raises(SystemExit) as e:  # argparse rejects the choice
        main(["train", "--arch", "resnet", "--data", "m.json", "--out", str(tmp_path / "x")])
    assert e.value.code == 2


def test_threshold_auto_in_finetune_online_and_kse(tmp_path, v1, ft_data, capsys, halves,
                                                   sim_manifests):
    out = tmp_path / "auto"
    # a loose tolerance, so that this small untrained-ish net retrains something
    rc = main(["finetune", "-c", str(v1), "--threshold", "auto", "--tolerance", "2",
               "--out", str(out), *ft_data, *FAST])
    assert rc == 0
    text = capsys.readouterr().out
    assert "threshold selection (global, score kse" in text
    m = load_checkpoint(out).meta
    sel = m["plan"]["selection"]
    assert sel["rule"] == "tolerance" and "noise" in sel["tolerance_basis"]
    assert m["plan"]["threshold"] == sel["chosen"] == m["config"]["threshold"] > 0
    assert m["frozen_fingerprint"]["preserved"]

    # online: the tolerance is tied to the noise of the N2N pair
    study = halves(2)
    rc = main(["online", "-c", str(v1), "--half1", study["half1"], "--half2", study["half2"],
               "--threshold", "auto", "--per-layer", "--budget", "0.5",
               "--score", "taylor", "--out", str(tmp_path / "on"), *FAST])
    assert rc == 0
    sel = load_checkpoint(tmp_path / "on").meta["plan"]["selection"]
    assert sel["mode"] == "per_layer" and sel["score"] == "taylor"
    assert sel["rule"] == "budget" and sel["fraction_retrained"] <= 0.5
    capsys.readouterr()

    js = tmp_path / "kse.json"
    assert main(["kse", str(v1), "--threshold", "auto", "--thresholds", "0", "0.5",
                 "--val-data", sim_manifests([6])["v1"],
                 "--random-draws", "3", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "KSE vs random maps" in text and "recommended score:" in text
    assert (tmp_path / "kse.png").stat().st_size > 0
    rep = json.loads(js.read_text())
    assert rep["plan"]["selection"]["curve"] and rep["premise"]["recommended_score"] in (
        "kse", "ablation", "taylor")
    assert len(rep["premise"]["kse_vs_random"]["random_changes"]) == 3


def test_threshold_auto_errors(tmp_path, v1, ft_data, capsys):
    assert main(["kse", str(v1), "--threshold", "auto"]) == 1
    assert "give --val-data" in capsys.readouterr().err
    assert main(["kse", str(v1), "--threshold", "auto", "--val-data",
                 str(tmp_path / "none.json")]) == 1
    assert "no such manifest" in capsys.readouterr().err
    assert main(["finetune", "-c", str(v1), "--threshold", "0.3", "--per-layer",
                 "--out", str(tmp_path / "x"), *ft_data, *FAST]) == 1
    assert "need --threshold auto" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser("finetune").parse_args(["finetune", "--threshold", "often"])
    # a tolerance no map meets: a clear error that says why, nothing written
    assert main(["finetune", "-c", str(v1), "--threshold", "auto", "--tolerance", "1e-9",
                 "--out", str(tmp_path / "y"), *ft_data, *FAST]) == 1
    assert "nothing to retrain" in capsys.readouterr().err
    assert not (tmp_path / "y" / "model.json").exists()


def test_threshold_auto_probe_rule_with_validation_data(tmp_path, v1, ft_data, capsys, halves,
                                                        sim_manifests):
    val = ["--val-data", sim_manifests([6])["v2"]]
    out = tmp_path / "probe"
    rc = main(["finetune", "-c", str(v1), "--threshold", "auto", "--probe-iterations", "4",
               "--out", str(out), *ft_data, *val, *FAST])
    text = capsys.readouterr().out
    assert "--threshold auto: rule probe (validation data given)" in text
    assert "cost: " in text and "(bound 36)" in text
    assert rc == 0
    sel = load_checkpoint(out).meta["plan"]["selection"]
    assert sel["rule"] == "probe" and sel["probe_iterations"] == 4
    assert [pt["threshold"] for pt in sel["curve"]] == pytest.approx([0.1 * i
                                                                      for i in range(1, 10)])
    assert sel["cost"]["iterations"] <= sel["cost"]["bound_iterations"] == 36
    assert load_checkpoint(out).meta["config"]["threshold"] == sel["chosen"] > 0

    # without validation data the drop rule, and it says so
    rc = main(["finetune", "-c", str(v1), "--threshold", "auto", "--tolerance", "2",
               "--out", str(tmp_path / "drop"), *ft_data, *FAST])
    assert rc == 0
    assert "rule drop (no validation data" in capsys.readouterr().out

    # online: the held-out Noise2Noise slices are the probe's validation data
    study = halves(2)
    rc = main(["online", "-c", str(v1), "--half1", study["half1"], "--half2", study["half2"],
               "--threshold", "auto", "--holdout", "2", "--val-every", "2",
               "--probe-iterations", "3", "--out", str(tmp_path / "on"), *FAST])
    assert rc == 0
    assert "rule probe (validation data given)" in capsys.readouterr().out
    sel = load_checkpoint(tmp_path / "on").meta["plan"]["selection"]
    assert sel["rule"] == "probe" and sel["items"] == 4  # slices 1 and 3, both directions


def test_threshold_auto_probe_errors(tmp_path, v1, ft_data, capsys, sim_manifests):
    val = ["--val-data", sim_manifests([6])["v2"]]
    out = tmp_path / "x"
    assert main(["finetune", "-c", str(v1), "--threshold", "auto", "--auto-rule", "probe",
                 "--out", str(out), *ft_data, *FAST]) == 1
    assert "--auto-rule probe needs validation data" in capsys.readouterr().err
    assert main(["finetune", "-c", str(v1), "--threshold", "auto", "--budget", "0.3",
                 "--out", str(out), *ft_data, *val, *FAST]) == 1
    assert "apply to --auto-rule drop" in capsys.readouterr().err
    assert main(["finetune", "-c", str(v1), "--threshold", "auto", "--probe-iterations", "0",
                 "--out", str(out), *ft_data, *val, *FAST]) == 1
    assert "--probe-iterations must be a positive integer" in capsys.readouterr().err
    assert not (out / "model.json").exists()
