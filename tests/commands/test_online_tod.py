"""Online learning with the task loss (``tgd online --loss tod``): Noise2Noise pairs carrying
the study's class map (--labels), a frozen segmenter, no critic (the targets are noisy); the
dataset itself: tests/data/test_labelled.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tgd.cli import main
from tgd.data.io import write_nifti
from tgd.training import load_checkpoint

pytest.importorskip("monai")


@pytest.fixture(scope="module")
def nets(tmp_path_factory, sim_manifests):
    from tgd.models import Segmenter
    from tgd.repro.sim.classes import TASK_CLASSES
    from tgd.training.segmenter import save_segmenter

    root = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    seg = Segmenter("unet", n_classes=len(TASK_CLASSES), width=4)
    save_segmenter(root / "seg", seg, {"classes": list(TASK_CLASSES)})
    assert main(["train", "--data", sim_manifests([0])["v1"],
                 "--width", "8", "--depth", "3", "--iterations", "2", "--batch-size", "4",
                 "--patch-size", "16", "--no-progress", "--threads", "1",
                 "--out", str(root / "net")]) == 0
    return root


ONLINE = ["--iterations", "3", "--batch-size", "4",
          "--patch-size", "16", "--threshold", "0.6", "--no-progress", "--threads", "1"]


def test_online_with_the_task_loss(nets, tmp_path, capsys, halves):
    seg_before = load_checkpoint(nets / "seg")
    out = tmp_path / "sim"
    study = halves(7)  # a simulated study: its halves and its task classes
    assert main(["online", "-c", str(nets / "net"), "--half1", study["half1"], "--half2",
                 study["half2"], "--labels", study["labels"], *ONLINE,
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
    assert meta["data"]["labels"] == study["labels"]

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
    assert main(["online", "-c", str(nets / "net"), "--half1", files["h1"], "--half2",
                 files["h2"], *ONLINE, "--labels", files["lab"], "--out", str(tmp_path / "y")]) == 1
    assert "--loss tod only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
