"""The reproduction's study format (tgd.repro.studies): write_study / read_study, the study
folders and datalist manifests of ``tgd simulate`` / simulate_to_disk, and the training data
they give the library (tgd.data.manifest.load_pairs)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from tgd.cli import main
from tgd.data import NoiseAdaptiveDataset, read_nifti
from tgd.data.manifest import load_pairs, read_manifest
from tgd.repro.datasets import study_pairs
from tgd.repro.sim import simulate_study
from tgd.repro.sim.classes import TASK_CLASSES, task_classes
from tgd.repro.studies import (
    CLASSES_FILE,
    read_study,
    simulate_to_disk,
    study_affine,
    write_manifests,
    write_study,
)


def _same_items(a, b):
    assert len(a) == len(b)
    for i in (0, len(a) - 1):
        for ta, tb in zip(a[i], b[i], strict=True):
            assert torch.equal(torch.as_tensor(ta), torch.as_tensor(tb))


def test_write_study_and_cli(tmp_path, capsys):
    st = simulate_study(4, n_slices=3, shape=64, durations=(60, 600), versions=("v2",))
    files = write_study(st, tmp_path / "s")
    assert all(f.exists() for f in files)
    img = read_nifti(tmp_path / "s" / "v2_0060s.nii.gz")
    assert np.array_equal(img.data, st.images[("v2", 60)])
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert img.voxel_size == (8.0, 8.0, 4.0)
    for key in ("duration_s", "reconstruction", "bmi_class", "seed", "voxel_size_mm", "units",
                "prompts"):
        assert key in img.meta, key
    assert img.meta["duration_s"] == 60 and img.meta["reconstruction"] == "v2"
    lab = read_nifti(tmp_path / "s" / "labels.nii.gz")
    assert np.array_equal(lab.data, st.labels) and lab.meta["labels"]["liver"] == 4
    classes = read_nifti(tmp_path / "s" / CLASSES_FILE)
    assert np.array_equal(classes.data, task_classes(st.labels))
    assert classes.meta["classes"] == list(TASK_CLASSES)
    # World position of a voxel: centre of the FOV is the isocentre (x = y = 0).
    ijk = np.array([31.5, 31.5, 0, 1])
    assert np.allclose((img.affine @ ijk)[:3], [0, 0, st.phantom.z_mm[0]])
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert study["seed"] == 4
    with pytest.raises(FileExistsError):
        write_study(st, tmp_path / "s")
    write_study(st, tmp_path / "s", overwrite=True)

    args = ["simulate", "--out", str(tmp_path / "cli"), "--n-slices", "3", "--shape", "64",
            "--durations", "60", "600", "--versions", "v2", "--seed", "2"]
    assert main(args) == 0
    assert (tmp_path / "cli" / "study_0002" / "v2_0600s.nii.gz").exists()
    assert f"manifest: {tmp_path / 'cli' / 'manifest_v2.json'}" in capsys.readouterr().out
    assert main(args) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_read_study_gives_back_what_write_study_wrote(tmp_path):
    st = simulate_study(3, n_slices=4, shape=32, durations=(30, 600), versions=("v1", "v2"))
    write_study(st, tmp_path / "s")
    back = read_study(tmp_path / "s", versions=["v2"])
    assert sorted(back.images) == [("v2", 30), ("v2", 600)]
    for key, img in back.images.items():
        np.testing.assert_array_equal(img, st.images[key].astype(np.float32))
    np.testing.assert_array_equal(back.labels, st.labels)
    assert back.seed == st.seed == 3 and back.meta["seed"] == 3
    assert back.meta["suv_per_kbq_ml"] > 0
    np.testing.assert_allclose(back.affine, study_affine(st))
    assert len(read_study(tmp_path / "s").images) == 4
    # the saved study trains like the simulated one
    _same_items(NoiseAdaptiveDataset(study_pairs([back], "v2", (30,)), patch_size=16),
                NoiseAdaptiveDataset(study_pairs([st], "v2", (30,)), patch_size=16))
    with pytest.raises(ValueError, match="no PET images"):
        read_study(tmp_path / "s", versions=["v9"])
    with pytest.raises(FileNotFoundError, match="no study.json"):
        read_study(tmp_path)
    (tmp_path / "s" / "study.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_study(tmp_path / "s")


def test_simulate_to_disk_writes_one_manifest_per_version(tmp_path):
    kw = {"n_slices": 4, "shape": 32, "durations": (30, 60, 600), "versions": ("v1", "v2")}
    folders = simulate_to_disk(tmp_path, [0, 1], **kw)
    assert [f.name for f in folders] == ["study_0000", "study_0001"]
    assert sorted(p.name for p in tmp_path.glob("manifest_*.json")) == [
        "manifest_v1.json", "manifest_v2.json"]
    items = read_manifest(tmp_path / "manifest_v2.json")
    assert [(it.group, it.level) for it in items] == [
        ("study_0000", 30), ("study_0000", 60), ("study_0001", 30), ("study_0001", 60)]
    assert all(it.target.name == "v2_0600s.nii.gz" and it.labels.name == CLASSES_FILE
               for it in items)
    assert read_manifest(tmp_path / "manifest_v2.json", "validation") is None
    # paths relative to the manifest: the folder can move
    doc = json.loads((tmp_path / "manifest_v2.json").read_text())
    assert doc["training"][0]["input"] == "study_0000/v2_0030s.nii.gz"

    pairs, prov = load_pairs(tmp_path / "manifest_v2.json", labels=True)
    assert [p.name for p in pairs] == ["study_0000", "study_0001"]
    assert [s["group"] for s in prov["studies"]] == ["study_0000", "study_0001"]
    for seed, pair in enumerate(pairs):
        st = simulate_study(seed, **kw)
        assert pair.levels == (30, 60)
        for x, d in zip(pair.inputs, (30, 60), strict=True):
            np.testing.assert_array_equal(x, st.images[("v2", d)].astype(np.float32))
        np.testing.assert_array_equal(pair.target, st.images[("v2", 600)].astype(np.float32))
        np.testing.assert_array_equal(pair.classes, task_classes(st.labels))
    # a second run adds its study to the manifests (they list every study folder)
    simulate_to_disk(tmp_path, [2], **kw)
    assert len(read_manifest(tmp_path / "manifest_v1.json")) == 3 * 2
    with pytest.raises(ValueError, match="at least one seed"):
        simulate_to_disk(tmp_path, [])


def test_write_manifests_needs_the_600_s_target(tmp_path):
    st = simulate_study(0, n_slices=2, shape=32, durations=(30, 600), versions=("v1",))
    write_study(st, tmp_path / "study_0000")
    short = simulate_study(1, n_slices=2, shape=32, durations=(30,), versions=("v2",))
    write_study(short, tmp_path / "study_0001")
    (tmp_path / "notes").mkdir()  # not a study folder: ignored
    assert [p.name for p in write_manifests(tmp_path)] == ["manifest_v1.json"]
    assert [it.group for it in read_manifest(tmp_path / "manifest_v1.json")] == ["study_0000"]
