"""make_dataset: the one place that picks 2.5-D slices or 3-D patches (reading a study folder
back for training: tests/repro/test_studies.py)."""

import pytest
import torch

from tgd.data import (
    Noise2NoiseDataset,
    Noise2NoiseDataset3D,
    NoiseAdaptiveDataset,
    NoiseAdaptiveDataset3D,
)
from tgd.data.factory import DATASET_KINDS, make_dataset
from tgd.data.labelled import LabelledNoiseAdaptiveDataset
from tgd.repro.datasets import study_pairs
from tgd.repro.sim import simulate_study


@pytest.fixture(scope="module")
def study():
    return simulate_study(0, shape=32, n_slices=8, versions=("v2",), durations=(30, 600))


@pytest.fixture(scope="module")
def pairs(study):
    """The study's 30-s -> 600-s pair, with its task classes."""
    return study_pairs([study], "v2", (30,), classes=True)


def _same_items(a, b):
    assert len(a) == len(b)
    for i in (0, len(a) - 1):
        for ta, tb in zip(a[i], b[i], strict=True):
            assert torch.equal(torch.as_tensor(ta), torch.as_tensor(tb))


def test_make_dataset_picks_the_class_for_kind_and_dims(study, pairs):
    kw = {"patch_size": 16, "seed": 3}
    cases = {
        ("noise_adaptive", 2): NoiseAdaptiveDataset(pairs, **kw),
        ("noise_adaptive", 3): NoiseAdaptiveDataset3D(pairs, **kw),
        ("labelled", 2): LabelledNoiseAdaptiveDataset(pairs, **kw),
    }
    for (kind, dims), direct in cases.items():
        made = make_dataset(kind, dims, pairs, **kw)
        assert type(made) is type(direct)
        _same_items(made, direct)
    a, b = study.noise2noise("v2", 30)
    _same_items(make_dataset("noise2noise", 2, a, b, patch_size=16, seed=1),
                Noise2NoiseDataset(a, b, patch_size=16, seed=1))
    _same_items(make_dataset("noise2noise", 3, a, b, patch_size=16, seed=1),
                Noise2NoiseDataset3D(a, b, patch_size=16, seed=1))
    assert set(DATASET_KINDS) == {k for k, _ in cases} | {"noise2noise"}


def test_make_dataset_fills_a_batch_with_3d_patches_only_when_needed(pairs):
    kw = {"patch_size": 16}
    assert len(make_dataset("noise_adaptive", 3, pairs, **kw)) == 4  # 1 x 2 x 2 tiles
    assert len(make_dataset("noise_adaptive", 3, pairs, min_items=4, **kw)) == 4
    more = make_dataset("noise_adaptive", 3, pairs, min_items=10, **kw)
    assert len(more) == 10 and more[9][0].shape == (1, 8, 16, 16)
    fixed = make_dataset("noise_adaptive", 3, pairs, patches_per_volume=2, min_items=10, **kw)
    assert len(fixed) == 2  # an explicit count is kept
    # 2.5-D: one item per slice whatever min_items
    assert len(make_dataset("noise_adaptive", 2, pairs, min_items=100, **kw)) == 8


def test_make_dataset_rejects_impossible_requests(pairs):
    with pytest.raises(ValueError, match="patch_depth applies to 3-D"):
        make_dataset("noise_adaptive", 2, pairs, patch_depth=4)
    with pytest.raises(ValueError, match="2.5-D only"):
        make_dataset("labelled", 3, pairs)
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        make_dataset("noise_adaptive", 1, pairs)
    with pytest.raises(ValueError, match="dataset kind"):
        make_dataset("supervised", 2, pairs)
