"""The commands' early, one-line errors (bad output locations, denoise over its input, pickled
checkpoints, simulate over existing studies) leave every file as it was and come before any
model loading, simulation or training; the provenance and printouts of denoise, online and kse.
"""

import json
import os

import nibabel as nib
import numpy as np
import pytest

from tgd.cli import main as _main
from tgd.data.io import write_nifti
from tgd.repro.commands import COMMANDS as REPRO

from ..conftest import CLI

FAST = CLI[2]["fast"]


def main(argv):
    return _main(argv, extra=REPRO)


def snapshot(root):
    """Every file under ``root`` with its bytes: what a failed command must leave alone."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _nifti(path, shape=(4, 16, 16)):
    data = np.random.default_rng(0).uniform(1, 2, shape).astype(np.float32)
    return write_nifti(path, data, np.diag([2.0, 2.0, 3.0, 1.0]))


def _error(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err  # one line
    return err


# every command writing under an output folder (or file), with arguments that would otherwise
# go on to load a model, read data, simulate or train; "net" is never read: the checks come first
def _commands(tmp_path, out):
    nii = str(_nifti(tmp_path / "in.nii.gz"))
    net = str(tmp_path / "no-such-net")
    return {
        "train": ["train", "--data", "x.json", "--out", out],
        "finetune": ["finetune", "-c", net, "--data", "x.json", "--out", out],
        "online": ["online", "-c", net, "--half1", nii, "--half2", nii, "--out", out],
        "train-segmenter": ["train-segmenter", "--data", "x.json", "--out", out],
        "simulate": ["simulate", "--out", out],
        "simulate-ct": ["simulate-ct", "--out", out],
        "denoise": ["denoise", nii, out + ".nii.gz", "-c", net],
        "kse": ["kse", net, "--json", out + ".json"],
    }


CMDS = ["train", "finetune", "online", "train-segmenter", "simulate", "simulate-ct", "denoise",
        "kse"]
FLAG = {"denoise": "OUT", "kse": "--json"}


@pytest.mark.parametrize("cmd", CMDS)
def test_output_under_a_file_is_refused_first(tmp_path, capsys, cmd):
    (tmp_path / "somefile").write_text("keep me")
    argv = _commands(tmp_path, str(tmp_path / "somefile" / "net"))[cmd]
    before = snapshot(tmp_path)
    err = _error(capsys, argv)
    assert err.startswith(f"tgd {cmd}: error: {FLAG.get(cmd, '--out')} ")
    assert "somefile is a file, not a folder" in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("cmd", CMDS)
def test_output_in_a_read_only_folder_is_refused_first(tmp_path, capsys, cmd):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writes")
        argv = _commands(tmp_path, str(ro / "net"))[cmd]
        before = snapshot(tmp_path)
        err = _error(capsys, argv)
        assert FLAG.get(cmd, "--out") in err and "is not writable" in err
        assert snapshot(tmp_path) == before
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("cmd", ["train", "finetune", "online", "train-segmenter", "simulate",
                                 "simulate-ct"])
def test_out_that_is_an_existing_file_is_refused(tmp_path, capsys, cmd):
    out = tmp_path / "net"
    out.write_text("keep me")
    argv = _commands(tmp_path, str(out))[cmd]
    before = snapshot(tmp_path)
    err = _error(capsys, argv)
    assert f"--out {out}: is an existing file; it must be a folder" in err
    assert "Errno" not in err
    assert snapshot(tmp_path) == before


def test_denoise_out_that_is_an_existing_folder_is_refused(tmp_path, capsys):
    nii = _nifti(tmp_path / "in.nii.gz")
    (tmp_path / "o.nii.gz").mkdir()
    err = _error(capsys, ["denoise", str(nii), str(tmp_path / "o.nii.gz"), "-c", "net"])
    assert "OUT" in err and "is an existing folder" in err


def test_denoise_never_writes_over_its_input(tmp_path, capsys, monkeypatch):
    nii = _nifti(tmp_path / "in.nii.gz")
    (tmp_path / "link.nii.gz").symlink_to(nii)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    before = snapshot(tmp_path)
    for out in (str(nii), "../in.nii.gz", str(tmp_path / "link.nii.gz")):
        err = _error(capsys, ["denoise", str(nii), out, "-c", "net", "--overwrite"])
        assert "OUT is the input IN" in err and "even with --overwrite" in err
    # the input named IN.json: OUT=IN.nii.gz's sidecar would replace it
    js = tmp_path / "in.json"
    js.write_text("{}")
    before = snapshot(tmp_path)
    err = _error(capsys, ["denoise", str(js), str(tmp_path / "in.nii"), "-c", "net",
                          "--overwrite"])
    assert "OUT's JSON sidecar" in err and "is the input IN" in err
    assert snapshot(tmp_path) == before


def _sim_args(out):
    return ["--out", str(out), "--n-studies", "1", "--shape", "32", "--n-slices", "2",
            "--durations", "60", "600", "--versions", "v1"]


def test_simulate_over_existing_studies_names_the_flag(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert main(["simulate", *_sim_args(sim)]) == 0
    capsys.readouterr()
    before = snapshot(tmp_path)
    err = _error(capsys, ["simulate", *_sim_args(sim)])
    assert "refusing to overwrite" in err and "(use --overwrite)" in err
    assert "overwrite=True" not in err
    assert snapshot(tmp_path) == before


def test_simulate_ct_over_existing_studies_names_the_flag(tmp_path, capsys):
    folder = tmp_path / "ct" / "ct_0000"
    folder.mkdir(parents=True)
    (folder / "labels.nii.gz").write_text("keep me")
    before = snapshot(tmp_path)
    err = _error(capsys, ["simulate-ct", "--out", str(tmp_path / "ct"), "--shape", "32",
                          "--n-slices", "2"])
    assert "labels.nii.gz exists" in err and "(use --overwrite)" in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("cmd", ["finetune", "online", "denoise", "kse"])
@pytest.mark.parametrize("name", ["model.pt", "net.pth", "last.ckpt"])
def test_pickled_checkpoints_are_refused(tmp_path, capsys, cmd, name):
    pt = tmp_path / name
    pt.write_bytes(b"\x80\x04not really")
    nii = str(_nifti(tmp_path / "in.nii.gz"))
    out = str(tmp_path / "out")
    argv = {"finetune": ["finetune", "-c", str(pt), "--data", "x.json", "--out", out],
            "online": ["online", "-c", str(pt), "--half1", nii, "--half2", nii, "--out", out],
            "denoise": ["denoise", nii, out + ".nii.gz", "-c", str(pt)],
            "kse": ["kse", str(pt)]}[cmd]
    before = snapshot(tmp_path)
    err = _error(capsys, argv)
    assert f"{pt}: not a tgd checkpoint" in err
    assert "model.safetensors + model.json" in err and "never unpickles" in err
    assert snapshot(tmp_path) == before


def test_denoise_dicom_records_units_and_prints_xyz_shape(tmp_path, capsys, v1):
    from ..data.test_io import _series

    _series(tmp_path / "dcm")
    out = tmp_path / "den.nii.gz"
    assert main(["denoise", str(tmp_path / "dcm"), str(out), "-c", str(v1),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    side = json.loads((tmp_path / "den.json").read_text())
    assert side["units"] == "SUVbw" and side["suv_applied"] is True
    assert side["suv_factor_g_per_bq"] > 0
    x, y, z = nib.load(out).shape
    assert f"shape (x, y, z): [{x}, {y}, {z}]" in text


def test_online_sidecar_names_its_inputs(tmp_path, v1, halves):
    files = halves(0)
    out = tmp_path / "online"
    assert main(["online", "-c", str(v1), "--half1", files["half1"], "--half2", files["half2"],
                 "--image", files["image"], "--threshold", "0.6", "--out", str(out),
                 "--loss", "anscombe", *FAST]) == 0
    side = json.loads((out / "denoised.json").read_text())
    assert side["adapted_from"] == str(v1)
    assert side["adapted_model"] == str(out / "model.json") and (out / "model.json").exists()
    assert (side["half1"], side["half2"], side["image"]) == (
        files["half1"], files["half2"], files["image"])


def test_kse_does_not_print_nan_for_the_output_layer(tmp_path, capsys, v1):
    js = tmp_path / "k.json"
    assert main(["kse", str(v1), "--thresholds", "0", "0.5", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "nan" not in text.lower()
    assert "output layer (not scored)" in text
    rows = json.loads(js.read_text())["layers"]
    assert any(r.get("kse_min", 0) is None for r in rows)
