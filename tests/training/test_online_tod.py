"""Online learning with the task loss (``tgd online --loss tod``): Noise2Noise pairs carrying
the study's class map, a frozen segmenter, no critic (the targets are noisy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tgd.cli import main
from tgd.data.io import write_nifti
from tgd.data.task_labels import LabelledNoise2NoiseDataset
from tgd.training import load_checkpoint

pytest.importorskip("monai")


def _volumes(z=4, h=20, w=24):
    pos = np.arange(z * h * w, dtype=np.float32).reshape(z, h, w)
    return pos + 1.0, pos + 1.0, pos.astype(np.int64)


@pytest.mark.parametrize("patch", [None, 8])
def test_labelled_n2n_items_carry_the_classes_of_the_same_crop(patch):
    a, b, classes = _volumes()
    ds = LabelledNoise2NoiseDataset(a, b, classes, patch_size=patch, scale=1.0, seed=3)
    assert len(ds) == 2 * a.shape[0]
    for i in range(len(ds)):
        x, y, c = ds[i]
        assert c.dtype == torch.int64 and c.shape == y.shape[1:]
        # the target's values are its voxel positions + 1: the classes are the same window
        assert torch.equal(y[0] - 1, c.to(torch.float32))


def test_labelled_n2n_rejects_bad_class_maps():
    a, b, classes = _volumes()
    with pytest.raises(ValueError, match="does not match"):
        LabelledNoise2NoiseDataset(a, b, classes[:2])
    with pytest.raises(ValueError, match=">= 0"):
        LabelledNoise2NoiseDataset(a, b, classes - 5)
    with pytest.raises(ValueError, match="integer"):
        LabelledNoise2NoiseDataset(a, b, classes.astype(np.float32))


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    from tgd.data.task_labels import TASK_CLASSES
    from tgd.models import Segmenter
    from tgd.training.segmenter import save_segmenter

    root = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    seg = Segmenter("unet", n_classes=len(TASK_CLASSES), width=4)
    save_segmenter(root / "seg", seg, {"classes": list(TASK_CLASSES)})
    assert main(["train", "--seeds", "0", "--sim-shape", "32", "--sim-slices", "4",
                 "--width", "8", "--depth", "3", "--iterations", "2", "--batch-size", "4",
                 "--patch-size", "16", "--no-progress", "--threads", "1",
                 "--out", str(root / "net")]) == 0
    return root


ONLINE = ["--sim-shape", "32", "--sim-slices", "4", "--iterations", "3", "--batch-size", "4",
          "--patch-size", "16", "--threshold", "0.6", "--no-progress", "--threads", "1"]


def test_online_with_the_task_loss(nets, tmp_path, capsys):
    seg_before = load_checkpoint(nets / "seg")
    out = tmp_path / "sim"
    assert main(["online", "-c", str(nets / "net"), "--simulate-study", "7", *ONLINE,
                 "--loss", "tod", "--segmenter", str(nets / "seg"), "--out", str(out)]) == 0
    meta = load_checkpoint(out).meta
    obj = meta["objective"]
    assert obj["loss"] == "tod" and obj["weights"]["gan"] == 0.0 and obj["critic"] is None
    assert obj["last_terms"]["critic"] is None and obj["last_terms"]["task"] > 0
    assert obj["segmenter"]["sha256"]  # recorded, and the segmenter file is untouched
    seg_after = load_checkpoint(nets / "seg")
    assert all(torch.equal(seg_before.tensors[k], seg_after.tensors[k])
               for k in seg_before.tensors)
    assert meta["frozen_fingerprint"]["preserved"]
    assert not (out / "model.critic.json").exists() and (out / "denoised.nii.gz").is_file()

    # the same from files: two halves and a class map
    h1 = np.random.default_rng(0).uniform(0.5, 1.5, (4, 32, 32)).astype(np.float32)
    h2 = np.random.default_rng(1).uniform(0.5, 1.5, (4, 32, 32)).astype(np.float32)
    lab = np.zeros((4, 32, 32), np.float32)
    lab[:, 8:24, 8:24] = 1
    lab[:, 14:18, 14:18] = 3
    files = {}
    for name, v in (("h1", h1), ("h2", h2), ("lab", lab), ("bad", lab + 0.5),
                    ("small", lab[:2])):
        files[name] = str(tmp_path / f"{name}.nii.gz")
        write_nifti(files[name], v, affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    base = ["online", "-c", str(nets / "net"), "--half1", files["h1"], "--half2", files["h2"],
            *ONLINE, "--loss", "tod", "--segmenter", str(nets / "seg")]
    assert main([*base, "--labels", files["lab"], "--out", str(tmp_path / "files")]) == 0
    assert load_checkpoint(tmp_path / "files").meta["data"]["labels"] == files["lab"]
    capsys.readouterr()
    for extra, msg in ((["--labels", files["bad"]], "class indices"),
                       (["--labels", files["small"]], "differs in shape"),
                       ([], "--labels"),
                       (["--labels", files["lab"], "--gan-weight", "1"], "without a critic")):
        assert main([*base, *extra, "--out", str(tmp_path / "x")]) == 1
        assert msg in capsys.readouterr().err, msg
    assert main(["online", "-c", str(nets / "net"), "--simulate-study", "7", *ONLINE,
                 "--labels", files["lab"], "--out", str(tmp_path / "y")]) == 1
    assert "--loss tod only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
