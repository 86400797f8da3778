"""Two-process DDP (gloo, CPU) via torchrun matches a single process with the same global batch."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import tgd
from tgd.training import load_checkpoint, load_model


def _run(cmd, timeout=150):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


@pytest.fixture(scope="module")
def parent(tmp_path_factory, sim_manifests):
    out = tmp_path_factory.mktemp("ddp") / "v1"
    from tgd.cli import main

    assert main(["train", "--data", sim_manifests([0])["v1"], "--width", "8", "--depth", "4",
                 "--iterations", "6",
                 "--batch-size", "4", "--patch-size", "16", "--lr", "0.003",
                 "--fisher-samples", "0", "--no-progress", "--out", str(out)]) == 0
    return out


def test_two_process_gloo_matches_single_process(tmp_path, parent, sim_manifests):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun not found next to the interpreter"
    args = ["finetune", "-c", str(parent), "--method", "tgd", "--threshold", "0.6",
            "--data", sim_manifests([3])["v2"], "--iterations", "5", "--batch-size", "4",
            "--patch-size", "16", "--threads", "1", "--no-progress"]
    _run([sys.executable, "-m", "tgd.cli", *args, "--out", str(tmp_path / "single")])
    _run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "tgd.cli", *args,
          "--out", str(tmp_path / "ddp")])
    single, ddp = load_checkpoint(tmp_path / "single"), load_checkpoint(tmp_path / "ddp")
    assert ddp.meta["metrics"]["processes"] == 2 and single.meta["metrics"]["processes"] == 1
    assert ddp.meta["plan"]["layers"] == single.meta["plan"]["layers"]  # same masks
    assert ddp.meta["frozen_fingerprint"]["preserved"]
    assert ddp.meta["frozen_fingerprint"]["after"] == single.meta["frozen_fingerprint"]["after"]
    base, _ = load_model(parent)
    changed = False
    for k, v in single.tensors.items():
        torch.testing.assert_close(ddp.tensors[k], v, rtol=1e-4, atol=1e-5, msg=k)
        changed |= not torch.equal(v, base.state_dict()[k])
    assert changed
    m, _ = load_model(tmp_path / "ddp")
    plan = tgd.TGDPlan.from_dict(ddp.meta["plan"])
    assert tgd.frozen_fingerprint(m, plan) == tgd.frozen_fingerprint(base, plan)


def test_two_process_wgan_matches_single_process(tmp_path, parent, sim_manifests):
    """MSE-WGAN fine-tuning: the critic's gradients are all-reduced, so model and critic after
    2-process DDP match one process on the same global batch."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    args = ["finetune", "-c", str(parent), "--method", "ft", "--loss", "wgan", "--n-critic", "2",
            "--data", sim_manifests([3])["v2"], "--iterations", "4", "--batch-size", "4",
            "--patch-size", "16", "--threads", "1", "--no-progress", "--critic-width", "4"]
    _run([sys.executable, "-m", "tgd.cli", *args, "--out", str(tmp_path / "single")])
    _run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "tgd.cli", *args,
          "--out", str(tmp_path / "ddp")])
    for name in ("model", "model.critic"):
        single = load_checkpoint(tmp_path / "single" / name)
        ddp = load_checkpoint(tmp_path / "ddp" / name)
        for k, v in single.tensors.items():
            torch.testing.assert_close(ddp.tensors[k], v, rtol=1e-4, atol=1e-5, msg=name + k)
