"""Tiny simulated PET data, a tiny pre-trained DnCNN and tiny CLI-trained checkpoints shared by
the training, inference, model and command tests.

The library's commands take datalist manifests (``--data MANIFEST``): :func:`sim_manifests`
simulates the studies once per (seeds, size, durations) with the reproduction's
``simulate_to_disk`` (which writes ``manifest_<version>.json``) and hands out the manifests;
:func:`halves` writes the two half-count realizations of a simulated study as NIfTI files for
``tgd online --half1/--half2``.
"""

from __future__ import annotations

import pytest
import torch

from tgd.data import NoiseAdaptiveDataset
from tgd.models import DnCNN
from tgd.repro.datasets import study_pairs
from tgd.repro.sim import simulate_study
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
    return NoiseAdaptiveDataset(study_pairs(studies["v1"], "v1", DURS), patch_size=16)


@pytest.fixture(scope="session")
def v2_set(studies):
    return NoiseAdaptiveDataset(study_pairs(studies["v2"], "v2", DURS), patch_size=16)


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


@pytest.fixture(scope="session")
def sim_manifests(tmp_path_factory):
    """``get(seeds, n_slices=4, shape=32, durations=(30, 60))``: the datalist manifests
    ``{"v1": path, "v2": path}`` of simulated studies of ``seeds`` (inputs at ``durations``,
    600-s targets, task classes as labels), simulated once per distinct request."""
    from tgd.repro.studies import simulate_to_disk

    made: dict[tuple, dict[str, str]] = {}

    def get(seeds, n_slices: int = 4, shape: int = 32, durations=DURS) -> dict[str, str]:
        key = (tuple(int(s) for s in seeds), n_slices, shape, tuple(durations))
        if key not in made:
            out = tmp_path_factory.mktemp("sim")
            simulate_to_disk(out, key[0], n_slices=n_slices, shape=shape,
                             durations=(*durations, 600), versions=("v1", "v2"))
            made[key] = {v: str(out / f"manifest_{v}.json") for v in ("v1", "v2")}
        return made[key]

    return get


@pytest.fixture(scope="session")
def halves(tmp_path_factory):
    """``get(seed, n_slices=4, shape=32, duration=120)``: NIfTI files of one simulated v2 study
    (what ``tgd online --simulate-study`` used to simulate): ``{"half1", "half2"}`` (the two
    half-count realizations of ``duration``), ``"image"`` (the whole ``duration`` image) and
    ``"labels"`` (its task classes), as path strings."""
    from tgd.data.io import write_nifti
    from tgd.repro.sim.classes import task_classes
    from tgd.repro.studies import study_affine

    made: dict[tuple, dict[str, str]] = {}

    def get(seed: int, n_slices: int = 4, shape: int = 32, duration: int = 120
            ) -> dict[str, str]:
        key = (seed, n_slices, shape, duration)
        if key not in made:
            st = simulate_study(seed, n_slices=n_slices, shape=shape,
                                durations=(duration, 600), versions=("v2",))
            h1, h2 = st.noise2noise("v2", duration)
            out = tmp_path_factory.mktemp(f"halves{seed}")
            aff = study_affine(st)
            files = {}
            for name, vol in (("half1", h1), ("half2", h2), ("image", st.images[("v2", duration)]),
                              ("labels", task_classes(st.labels).astype("int16"))):
                files[name] = str(write_nifti(out / f"{name}.nii.gz", vol, aff))
            made[key] = files
        return made[key]

    return get


# Command-line runs of the CLI tests, per spatial dims of the network: tiny simulated data
# (``sim(dims)``: the sim_manifests arguments), and a few iterations on 16-voxel patches.
CLI = {
    2: {"sim": {"n_slices": 4},
        "fast": ["--batch-size", "4", "--patch-size", "16", "--no-progress", "--iterations", "4"],
        "net": ["--width", "8", "--depth", "4", "--fisher-samples", "4"]},
    3: {"sim": {"n_slices": 8},
        "fast": ["--batch-size", "2", "--patch-size", "16", "--no-progress", "--iterations", "2"],
        "net": ["--spatial-dims", "3", "--width", "4", "--depth", "3", "--fisher-samples", "2"]},
}


def _cli_train(tmp_path_factory, sim_manifests, dims: int):
    from tgd.cli import main

    out = tmp_path_factory.mktemp(f"cli{dims}d") / "net"
    c = CLI[dims]
    data = sim_manifests([0], **c["sim"])["v1"]
    val = sim_manifests([5], **c["sim"])["v1"]
    assert main(["train", "--data", data, *c["net"], "--val-data", val, "--val-every", "2",
                 "--out", str(out), *c["fast"]]) == 0
    return out


@pytest.fixture(scope="session")
def v1(tmp_path_factory, sim_manifests):
    """A tiny 2.5-D DnCNN checkpoint trained by ``tgd train`` (CLI[2])."""
    return _cli_train(tmp_path_factory, sim_manifests, 2)


@pytest.fixture(scope="session")
def dn3(tmp_path_factory, sim_manifests):
    """A tiny 3-D DnCNN checkpoint trained by ``tgd train`` on 8-slice, 16^2 patches (CLI[3])."""
    return _cli_train(tmp_path_factory, sim_manifests, 3)


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def cli_net(request):
    """``(spatial_dims, checkpoint folder)`` of the tiny CLI-trained net of each dims."""
    return request.param, request.getfixturevalue("v1" if request.param == 2 else "dn3")
