import numpy as np
import pytest
from scipy import ndimage

from tgd.repro.sim.phantom import LABELS, MU_511_PER_CM, make_phantom


def _ph(seed=0, **kw):
    kw.setdefault("shape", 64)
    kw.setdefault("pixel_mm", 8.0)
    kw.setdefault("n_slices", 8)
    return make_phantom(np.random.default_rng(seed), **kw)


def test_abdomen_has_the_organs_a_liver_lesion_and_consistent_values():
    p = _ph(shape=128, pixel_mm=4.0, n_slices=32)
    present = set(np.unique(p.labels))
    for organ in ("soft_tissue", "fat", "lung", "liver", "spleen", "kidney", "bone", "marrow",
                  "myocardium", "blood"):
        assert LABELS[organ] in present, organ
    liver_lesions = [les for les in p.lesions if les["host"] == "liver"]
    assert liver_lesions and liver_lesions[0]["voxels"] > 0
    les = liver_lesions[0]
    assert 3.0 <= les["to_liver"] <= 8.0
    # The lesion sits in the liver: its neighbourhood is mostly liver.
    m = p.labels == les["label"]
    shell = ndimage.binary_dilation(m, iterations=2) & ~m
    assert (p.labels[shell] == LABELS["liver"]).mean() > 0.6
    # Uniform organs: interior voxels carry exactly the organ's activity and mu.
    f = p.meta["kbq_ml_per_suv"]
    inner = ndimage.binary_erosion(p.labels == LABELS["liver"], iterations=2)
    np.testing.assert_allclose(p.activity[inner], p.meta["suv"]["liver"] * f, rtol=1e-5)
    np.testing.assert_allclose(p.mu[inner], MU_511_PER_CM["liver"], rtol=1e-5)
    assert 2.0 <= p.meta["suv"]["liver"] <= 2.5
    assert p.mu.max() <= 0.17 and p.activity.min() >= 0
    assert p.activity_fine.shape == (2 * 32 + 2 * p.margin, 256, 256)


def test_bmi_classes_change_body_size_and_fat():
    lo, hi = _ph(0, bmi="low"), _ph(0, bmi="high")
    assert lo.meta["bmi"] < 23 <= 28 < hi.meta["bmi"]
    area = [(p.labels > 0).sum() for p in (lo, hi)]
    fat = [(p.labels == LABELS["fat"]).sum() for p in (lo, hi)]
    assert area[1] > 1.3 * area[0] and fat[1] > 2 * fat[0]


def test_pelvis_bladder_and_unseen_features():
    normal = _ph(2, region="pelvis", n_slices=16)
    assert LABELS["bladder"] in normal.labels
    assert LABELS["bladder_unseen"] not in normal.labels
    assert LABELS["catheter"] not in normal.labels
    assert 10 <= normal.meta["suv"]["bladder"] <= 30
    odd = _ph(2, region="pelvis", n_slices=16, unseen="both")
    assert LABELS["bladder_unseen"] in odd.labels and LABELS["bladder"] not in odd.labels
    assert (odd.labels == LABELS["catheter"]).any()
    suv = odd.activity / odd.meta["kbq_ml_per_suv"]
    assert suv[odd.labels == LABELS["bladder_unseen"]].max() >= 60
    # The catheter is a thin line: few voxels, but hot (urine) even after voxel averaging.
    cath = odd.labels == LABELS["catheter"]
    assert 0 < cath.sum() < 200
    assert suv[cath].mean() > 0.4 * odd.meta["suv"]["bladder_urine"]
    # The unusual bladder is larger than an ellipsoid of the same seed (diverticulum).
    assert (odd.labels == LABELS["bladder_unseen"]).sum() > (normal.labels == LABELS[
        "bladder"]).sum()


def test_phantom_is_deterministic():
    a, b = _ph(5), _ph(5)
    assert np.array_equal(a.activity_fine, b.activity_fine) and a.lesions == b.lesions
    assert not np.array_equal(a.activity, _ph(6).activity)


def test_phantom_rejects_impossible_options():
    with pytest.raises(ValueError, match="bmi"):
        _ph(bmi="medium")
    with pytest.raises(ValueError, match="region"):
        _ph(region="head")
    with pytest.raises(ValueError, match="unseen"):
        _ph(unseen="tattoo")
    with pytest.raises(ValueError, match="region='pelvis'"):
        _ph(unseen="bladder", region="abdomen")
    with pytest.raises(ValueError, match="FOV"):
        _ph(bmi="high", shape=64, pixel_mm=4.0)
    with pytest.raises(ValueError, match="body range"):
        _ph(n_slices=400)
    with pytest.raises(ValueError, match="n_slices"):
        _ph(n_slices=0)


def test_every_high_bmi_body_fits_the_512_mm_fov():
    from tgd.repro.sim.phantom import BMI_CLASSES, Z_CONTROL_MM, BodyOutline

    z = np.linspace(Z_CONTROL_MM[0], Z_CONTROL_MM[-1], 81)
    worst = 0.0
    for s in range(300):
        rng = np.random.default_rng(s)
        worst = max(worst, BodyOutline(BMI_CLASSES["high"][1], rng).max_radius(z))
    assert worst < 256.0 - 4.0 / np.sqrt(2)
