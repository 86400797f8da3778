"""A diverged run is flagged, kept out of every mean and counted (planted: a learning rate
that blows the net up)."""

import math

import torch

from tgd.data import NoiseAdaptiveDataset
from tgd.models import DnCNN
from tgd.repro.datasets import study_pairs
from tgd.repro.experiments.common import Validation, diverged, run_training
from tgd.repro.experiments.findings import DIVERGED, decide
from tgd.repro.experiments.replicates import aggregate
from tgd.repro.experiments.reproduce import flag_diverged
from tgd.repro.sim.study import simulate_study
from tgd.training import TrainConfig


def _data():
    st = simulate_study(1, versions=("v2",), durations=(60, 600), n_slices=4, shape=32)
    return NoiseAdaptiveDataset(study_pairs([st], "v2", (60,), normalize="input"))


def test_a_planted_diverging_run_is_flagged_and_a_normal_one_is_not():
    data = _data()
    torch.manual_seed(0)
    net = DnCNN(width=8, depth=4)
    val = Validation(data, every=2, max_items=4)
    base = dict(width=8, depth=4, batch_size=2, patch_size=None, iterations=6, weight_decay=0.0)
    calm = run_training("calm", "ft", net, TrainConfig(method="ft", lr=1e-4, **base).validate(),
                        data, val=val)
    wild = run_training("wild", "ft", net, TrainConfig(method="ft", lr=1e4, **base).validate(),
                        data, val=val)
    assert calm.info["diverged"] is False
    assert wild.info["diverged"] is True
    assert diverged({"val_curve": [[0, 0, 1.0], [5, 1, 9.0]]}, "ft") is False
    assert diverged({"val_curve": [[0, 0, 1.0], [5, 1, 11.0]]}, "ft") is True
    assert diverged({"val_curve": [[0, 0, 1.0], [5, 1, math.nan]]}, "ft") is True
    assert diverged({"val_curve": [[0, 0, 1.0], [5, 1, 50.0]]}, "scratch") is False


def test_diverged_rows_never_enter_a_mean():
    reps = []
    for k, bias in enumerate((-3.0, -4.0, 1e6)):
        exp = {"training": [{"name": "A", "diverged": k == 2}],
               "rows": [{"net": "A", "test": "t", "bias": bias}]}
        flag_diverged(exp)
        reps.append(exp["rows"])
    (row,) = aggregate(reps, ("net", "test"))
    assert row["n_replicates"] == 2 and row["n_diverged"] == 1
    assert row["bias"] == -3.5  # the diverged 1e6 is not averaged in
    f = decide("x", "g", "primary", "claim", "paper", [1.0, 2.0, DIVERGED, 1.5], "superiority",
               "greater", 0.0, "points", "what")
    assert f["n_diverged"] == 1 and len(f["per_replicate"]) == 3
    assert "excluded: a net of the comparison diverged" in f["evidence"]
