"""make_dataset: the one place that picks 2.5-D slices or 3-D patches; read_study: a study
folder read back for training."""

import numpy as np
import pytest
import torch

from tgd.data import (
    Noise2NoiseDataset,
    Noise2NoiseDataset3D,
    NoiseAdaptiveDataset,
    NoiseAdaptiveDataset3D,
    simulate_study,
    write_study,
)
from tgd.data.factory import DATASET_KINDS, make_dataset
from tgd.data.io import read_study
from tgd.data.task_labels import LabelledNoiseAdaptiveDataset


@pytest.fixture(scope="module")
def study():
    return simulate_study(0, shape=32, n_slices=8, versions=("v2",), durations=(30, 600))


def _same_items(a, b):
    assert len(a) == len(b)
    for i in (0, len(a) - 1):
        for ta, tb in zip(a[i], b[i], strict=True):
            assert torch.equal(torch.as_tensor(ta), torch.as_tensor(tb))


def test_make_dataset_picks_the_class_for_kind_and_dims(study):
    kw = {"input_durations": (30,), "patch_size": 16, "seed": 3}
    cases = {
        ("noise_adaptive", 2): NoiseAdaptiveDataset([study], "v2", **kw),
        ("noise_adaptive", 3): NoiseAdaptiveDataset3D([study], "v2", **kw),
        ("labelled", 2): LabelledNoiseAdaptiveDataset([study], "v2", **kw),
    }
    for (kind, dims), direct in cases.items():
        made = make_dataset(kind, dims, [study], "v2", **kw)
        assert type(made) is type(direct)
        _same_items(made, direct)
    a, b = study.noise2noise("v2", 30)
    _same_items(make_dataset("noise2noise", 2, a, b, patch_size=16, seed=1),
                Noise2NoiseDataset(a, b, patch_size=16, seed=1))
    _same_items(make_dataset("noise2noise", 3, a, b, patch_size=16, seed=1),
                Noise2NoiseDataset3D(a, b, patch_size=16, seed=1))
    assert set(DATASET_KINDS) == {k for k, _ in cases} | {"noise2noise"}


def test_make_dataset_fills_a_batch_with_3d_patches_only_when_needed(study):
    kw = {"input_durations": (30,), "patch_size": 16}
    assert len(make_dataset("noise_adaptive", 3, [study], "v2", **kw)) == 4  # 1 x 2 x 2 tiles
    assert len(make_dataset("noise_adaptive", 3, [study], "v2", min_items=4, **kw)) == 4
    more = make_dataset("noise_adaptive", 3, [study], "v2", min_items=10, **kw)
    assert len(more) == 10 and more[9][0].shape == (1, 8, 16, 16)
    fixed = make_dataset("noise_adaptive", 3, [study], "v2", patches_per_volume=2,
                         min_items=10, **kw)
    assert len(fixed) == 2  # an explicit count is kept
    # 2.5-D: one item per slice whatever min_items
    assert len(make_dataset("noise_adaptive", 2, [study], "v2", min_items=100, **kw)) == 8


def test_make_dataset_rejects_impossible_requests(study):
    with pytest.raises(ValueError, match="patch_depth applies to 3-D"):
        make_dataset("noise_adaptive", 2, [study], "v2", patch_depth=4)
    with pytest.raises(ValueError, match="2.5-D only"):
        make_dataset("labelled", 3, [study], "v2")
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        make_dataset("noise_adaptive", 1, [study], "v2")
    with pytest.raises(ValueError, match="dataset kind"):
        make_dataset("supervised", 2, [study], "v2")


def test_read_study_gives_back_what_write_study_wrote(tmp_path, study):
    write_study(study, tmp_path / "s")
    back = read_study(tmp_path / "s", versions=["v2"])
    assert sorted(back.images) == sorted(study.images) == [("v2", 30), ("v2", 600)]
    for k, img in study.images.items():
        np.testing.assert_array_equal(back.images[k], img.astype(np.float32))
    np.testing.assert_array_equal(back.labels, study.labels)
    assert back.seed == study.seed == 0 and back.meta["suv_per_kbq_ml"] > 0
    _same_items(NoiseAdaptiveDataset([back], "v2", input_durations=(30,), patch_size=16),
                NoiseAdaptiveDataset([study], "v2", input_durations=(30,), patch_size=16))
    with pytest.raises(ValueError, match="no PET images"):
        read_study(tmp_path / "s", versions=["v1"])
    with pytest.raises(FileNotFoundError, match="no study.json"):
        read_study(tmp_path)
    (tmp_path / "s" / "study.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_study(tmp_path / "s")
