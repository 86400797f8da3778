"""Tiny simulated PET data and a tiny pre-trained DnCNN shared by the training tests."""

from __future__ import annotations

import pytest
import torch

from tgd.data import NoiseAdaptiveDataset, simulate_study
from tgd.models import DnCNN
from tgd.training import TrainConfig, prepare, train

SIM = {"n_slices": 4, "shape": 32, "durations": (30, 60, 600)}
DURS = (30, 60)


def tiny_cfg(method="scratch", **kw) -> TrainConfig:
    base = {"width": 8, "depth": 4, "batch_size": 4, "patch_size": None, "iterations": 6,
            "threshold": 0.5}
    base.update(kw)
    return TrainConfig(method=method, **base)


@pytest.fixture(scope="session")
def studies():
    return {v: [simulate_study(s, versions=(v,), **SIM) for s in (0, 1)] for v in ("v1", "v2")}


@pytest.fixture(scope="session")
def v1_set(studies):
    return NoiseAdaptiveDataset(studies["v1"], "v1", input_durations=DURS, patch_size=16)


@pytest.fixture(scope="session")
def v2_set(studies):
    return NoiseAdaptiveDataset(studies["v2"], "v2", input_durations=DURS, patch_size=16)


@pytest.fixture(scope="session")
def pretrained_state(v1_set):
    """A tiny v1-net (state dict) trained for a few iterations."""
    torch.manual_seed(0)
    model = DnCNN(width=8, depth=4)
    cfg = tiny_cfg(iterations=15, lr=3e-3)
    setup = prepare("scratch", model, cfg)
    train(setup, cfg, v1_set)
    return {k: v.clone() for k, v in setup.finish().state_dict().items()}


@pytest.fixture
def pretrained(pretrained_state):
    model = DnCNN(width=8, depth=4)
    model.load_state_dict(pretrained_state)
    return model


# Command-line runs of the CLI tests, per spatial dims of the network: tiny simulated data, and
# a few iterations on 16-voxel patches.
CLI = {
    2: {"data": ["--sim-shape", "32", "--sim-slices", "4", "--durations", "30", "60"],
        "fast": ["--batch-size", "4", "--patch-size", "16", "--no-progress", "--iterations", "4"],
        "net": ["--width", "8", "--depth", "4", "--fisher-samples", "4"]},
    3: {"data": ["--sim-shape", "32", "--sim-slices", "8", "--durations", "30", "60"],
        "fast": ["--batch-size", "2", "--patch-size", "16", "--no-progress", "--iterations", "2"],
        "net": ["--spatial-dims", "3", "--width", "4", "--depth", "3", "--fisher-samples", "2"]},
}


def _cli_train(tmp_path_factory, dims: int):
    from tgd.cli import main

    out = tmp_path_factory.mktemp(f"cli{dims}d") / "net"
    c = CLI[dims]
    assert main(["train", "--seeds", "0", *c["net"], "--val-seeds", "5", "--val-every", "2",
                 "--out", str(out), *c["data"], *c["fast"]]) == 0
    return out


@pytest.fixture(scope="session")
def v1(tmp_path_factory):
    """A tiny 2.5-D DnCNN checkpoint trained by ``tgd train`` (CLI[2])."""
    return _cli_train(tmp_path_factory, 2)


@pytest.fixture(scope="session")
def dn3(tmp_path_factory):
    """A tiny 3-D DnCNN checkpoint trained by ``tgd train`` on 8-slice, 16^2 patches (CLI[3])."""
    return _cli_train(tmp_path_factory, 3)


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def cli_net(request):
    """``(spatial_dims, checkpoint folder)`` of the tiny CLI-trained net of each dims."""
    return request.param, request.getfixturevalue("v1" if request.param == 2 else "dn3")
