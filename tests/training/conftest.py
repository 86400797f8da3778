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
