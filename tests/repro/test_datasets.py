"""Simulated studies as the library's training data (tgd.repro.datasets): study_pairs and the
reproduction's normalisations (study_scale)."""

import numpy as np
import pytest
import torch

from tgd.data import NoiseAdaptiveDataset, intensity_scale
from tgd.repro.datasets import study_pairs, study_scale
from tgd.repro.sim import INPUT_DURATIONS, simulate_study
from tgd.repro.sim.classes import task_classes

KW = dict(n_slices=4, shape=64, versions=("v2",))


@pytest.fixture(scope="module")
def studies():
    return [simulate_study(s, **KW) for s in (10, 11)]


def test_study_pairs_keep_the_target_mean_normalisation(studies):
    pairs = study_pairs(studies, "v2")
    assert [p.levels for p in pairs] == [INPUT_DURATIONS] * 2
    assert [p.name for p in pairs] == ["study 10", "study 11"] and pairs[0].classes is None
    ds = NoiseAdaptiveDataset(pairs)
    assert len(ds) == 2 * 6 * 4
    st = studies[1]
    scale = ds.targets[1][0].sum() / torch.from_numpy(st.images[("v2", 600)]).sum()
    # Item (study 1, duration 90 s, slice 2): input slices 1..3 of the 90-s image.
    i = 1 * 24 + 3 * 4 + 2
    x, y = ds[i]
    torch.testing.assert_close(x, torch.from_numpy(st.images[("v2", 90)][1:4]) * scale)
    torch.testing.assert_close(y[0], torch.from_numpy(st.images[("v2", 600)][2]) * scale)
    # Normalised so the 600-s image has mean 1 over the labelled body, at every level.
    body = torch.from_numpy(st.labels > 0)
    for target in ds.targets[1]:
        assert float(target[body].mean()) == pytest.approx(1.0, rel=1e-5)
    assert study_scale(st, "v2") == pytest.approx(float(scale), rel=1e-6)
    suv = NoiseAdaptiveDataset(study_pairs(studies, "v2", normalize="suv"))
    assert float(suv.targets[0][0].max()) == pytest.approx(
        float(studies[0].suv(studies[0].images[("v2", 600)]).max()), rel=1e-5)
    raw = NoiseAdaptiveDataset(study_pairs(studies, "v2", (60,), normalize=None))
    torch.testing.assert_close(raw[0][1][0], torch.from_numpy(studies[0].images[("v2", 600)][0]))
    # "input": the library's default, each input's own scale
    assert study_scale(st, "v2", "input") is None
    own = NoiseAdaptiveDataset(study_pairs(studies, "v2", (60,), normalize="input"))
    assert float(own.inputs[0][0].sum()) == pytest.approx(
        float(studies[0].images[("v2", 60)].sum()) * intensity_scale(
            studies[0].images[("v2", 60)]), rel=1e-5)


def test_study_pairs_with_the_task_classes(studies):
    pairs = study_pairs(studies, "v2", (30, 60), classes=True)
    np.testing.assert_array_equal(pairs[1].classes, task_classes(studies[1].labels))
    assert pairs[1].class_volume().dtype == torch.int64


def test_study_pairs_errors(studies):
    with pytest.raises(KeyError, match="no image"):
        study_pairs(studies, "v1")
    with pytest.raises(KeyError, match="no image"):
        study_pairs(studies, "v2", input_durations=(45, 50))
    with pytest.raises(ValueError, match="normalize"):
        study_pairs(studies, "v2", normalize="zscore")
    with pytest.raises(ValueError, match="at least one study"):
        study_pairs([], "v2")
    with pytest.raises(ValueError, match="at least one input duration"):
        study_pairs(studies, "v2", input_durations=())


def test_otsu_body_mask_of_a_simulated_pelvis_with_unseen_features():
    st = simulate_study(4000, shape=48, n_slices=16, region="pelvis", unseen="both",
                        versions=("v2",), durations=(60, 600))
    ref = intensity_scale(st.images[("v2", 600)], st.labels > 0)
    for d in (60, 600):
        # measured 1.04-1.08x the labelled-body scale at 48^2 and 96^2 (abdomen and pelvis)
        assert intensity_scale(st.images[("v2", d)]) == pytest.approx(ref, rel=0.09)
