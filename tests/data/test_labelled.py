"""LabelledNoise2NoiseDataset: the Noise2Noise pairs of one study carrying its class map (online
learning with the task loss, ``tgd online --loss tod``)."""

import numpy as np
import pytest
import torch

from tgd.data import PairedVolumes
from tgd.data.labelled import LabelledNoise2NoiseDataset, LabelledNoiseAdaptiveDataset


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


@pytest.mark.parametrize("patch", [None, 8])
def test_labelled_noise_adaptive_items_carry_the_classes_of_the_same_crop(patch):
    a, _, classes = _volumes()
    pair = PairedVolumes([a, 2 * a], a, scales=1.0, classes=classes, levels=("low", "high"))
    ds = LabelledNoiseAdaptiveDataset([pair], patch_size=patch, seed=3)
    assert len(ds) == 2 * a.shape[0]  # two levels of four slices
    for i in range(len(ds)):
        x, y, c = ds[i]
        assert c.dtype == torch.int64 and c.shape == y.shape[1:]
        assert torch.equal(y[0] - 1, c.to(torch.float32))
    with pytest.raises(ValueError, match="no class map"):
        LabelledNoiseAdaptiveDataset([PairedVolumes([a], a)])
    with pytest.raises(ValueError, match="integer"):
        LabelledNoiseAdaptiveDataset([PairedVolumes([a], a, classes=classes.astype(float))])
