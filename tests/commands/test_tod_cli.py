"""The TOD commands end to end: train-segmenter, then TGD fine-tuning with --loss tod, killed
with SIGKILL and resumed: identical weights and critic to an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tgd.training import load_checkpoint

from ..interrupt import sigkill_after_first_checkpoint

pytest.importorskip("monai")

RUN = ["--no-progress", "--threads", "1"]


def tgd(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "tgd.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_tod_commands_and_sigkill_resume(tmp_path, sim_manifests):
    manifests = sim_manifests([0])  # items with 'labels': the study's task classes
    r = tgd("train-segmenter", "--data", manifests["v2"], *RUN, "--patch-size", "16",
            "--iterations", "5", "--width", "4", "--batch-size", "4",
            "--class-names", "background", "liver", "kidney", "lesion",
            "--out", str(tmp_path / "seg"))
    assert r.returncode == 0, r.stderr
    seg = load_checkpoint(tmp_path / "seg").meta
    assert seg["classes"] == ["background", "liver", "kidney", "lesion"]
    fast = [*RUN, "--batch-size", "4", "--patch-size", "16"]
    r = tgd("train", "--data", manifests["v1"], *fast, "--width", "8", "--depth", "3",
            "--iterations", "5", "--fisher-samples", "0", "--out", str(tmp_path / "v1"))
    assert r.returncode == 0, r.stderr
    ft = ["finetune", "-c", str(tmp_path / "v1"), "--data", manifests["v2"], *fast,
          "--method", "tgd", "--threshold",
          "0.6", "--loss", "tod", "--segmenter", str(tmp_path / "seg"), "--n-critic", "2",
          "--iterations", "150"]
    r = tgd(*ft, "--out", str(tmp_path / "ref"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run"
    sigkill_after_first_checkpoint([*ft, "--out", str(out), "--checkpoint-every", "20"], out)
    r = tgd(*ft, "--out", str(out), "--checkpoint-every", "20", "--resume")
    assert r.returncode == 0, r.stderr
    for name in ("model", "model.critic"):
        a, b = load_checkpoint(tmp_path / "ref" / name), load_checkpoint(out / name)
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors), name
    meta = load_checkpoint(out).meta
    assert meta["metrics"]["iterations_this_run"] < 150
    assert meta["frozen_fingerprint"]["preserved"]
    assert meta["objective"]["loss"] == "tod"
    r = tgd(*ft, "--out", str(tmp_path / "x"), "--segmenter", str(tmp_path / "v1"))
    assert r.returncode == 1 and "not a segmenter" in r.stderr
