"""CT simulator physics: noise variance ~ 1/I0, unbiased mean HU, FBP of noise-free data."""

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from tgd.data.io import read_nifti
from tgd.repro.sim.ct import (
    DOSE_LEVELS,
    fbp,
    hu_to_mu,
    mu_to_hu,
    ramp_filter,
    simulate_ct,
    transmission_counts,
    write_ct_study,
)
from tgd.repro.sim.projector import Geometry, get_projector

SIM = {"n_slices": 4, "shape": 64}


@pytest.fixture(scope="module")
def study():
    return simulate_ct(3, i0={"a": 1e5, "b": 2.5e4}, doses=("a", "b"), **SIM)


def interior(mask):
    return binary_erosion(mask, structure=np.ones((1, 5, 5), bool))


def test_hu_mu_round_trip_and_table():
    hu = np.array([-1000.0, 0.0, 60.0, 1000.0])
    assert np.allclose(mu_to_hu(hu_to_mu(hu)), hu)
    assert hu_to_mu(-1000.0) == 0.0
    assert DOSE_LEVELS["normal"] == 4 * DOSE_LEVELS["quarter"] == 10 * DOSE_LEVELS["tenth"]


def test_fbp_of_a_uniform_disc():
    """A water disc (radius 150 mm) from strip integrals on a 2x finer grid: FBP within 2 % of
    mu in its interior, and air (< 30 HU off) outside it."""
    g = Geometry(64, 8.0, 128, 64, 8.0)
    fine = g.fine(2)
    x, y = fine.pixel_centres()
    disc = (np.hypot(x, y) <= 150.0).reshape(1, 128, 128).astype(np.float32)
    mu = 0.0193
    p = get_projector(fine, "strip", 1, 1, False).forward(torch.from_numpy(disc * mu))
    img = fbp(p, g, "hann").numpy()[0]
    xc, yc = g.pixel_centres()
    r = np.hypot(xc, yc).reshape(64, 64)
    assert abs(img[r < 120].mean() / mu - 1) < 0.02
    assert np.abs(img[(r > 180) & g.fov_mask()]).mean() < 0.03 * mu
    with pytest.raises(ValueError, match="window"):
        ramp_filter(64, 8.0, "gauss")


def test_noise_free_fbp_reproduces_the_phantom(study):
    body = interior(study.labels > 0)
    err = np.abs(study.noise_free - study.truth)[body]
    assert np.median(err) < 5.0  # HU, body interior (edges of bone excluded by the median)
    liver = interior(study.labels == 4)
    assert liver.sum() > 50
    assert abs(study.noise_free[liver].mean() - study.truth[liver].mean()) < 3.0


def test_noise_variance_scales_as_one_over_i0():
    """Water disc, 16 independent slices per dose: the noise variance of the FBP interior
    scales as 1 / I0 (ratio 4 for I0 1e5 vs 2.5e4, and 10 vs 1e4)."""
    g = Geometry(64, 8.0, 128, 64, 8.0)
    fine = g.fine(2)
    x, y = fine.pixel_centres()
    disc = (np.hypot(x, y) <= 150.0).reshape(1, 128, 128).astype(np.float32) * 0.0193
    p = get_projector(fine, "strip", 1, 1, False).forward(torch.from_numpy(disc)).numpy()
    p = np.repeat(np.maximum(p, 0), 16, axis=1)
    r = np.hypot(*g.pixel_centres()).reshape(64, 64) < 120
    var = {}
    for i0 in (1e5, 2.5e4, 1e4):
        n = transmission_counts(p, i0, np.random.default_rng(int(i0)))
        img = mu_to_hu(fbp(torch.from_numpy(np.log(i0 / n)), g).numpy())
        var[i0] = img[:, r].var()
    assert 3.6 < var[2.5e4] / var[1e5] < 4.4
    assert 9.0 < var[1e4] / var[1e5] < 11.0


def test_study_noise_grows_with_lower_dose(study):
    liver = interior(study.labels == 4)
    va = (study.images[("ct", "a")] - study.noise_free)[liver].var()
    vb = (study.images[("ct", "b")] - study.noise_free)[liver].var()
    assert 3.0 < vb / va < 5.5  # I0 ratio 4; few correlated liver pixels at 8 mm


def test_mean_hu_of_large_regions_is_unbiased(study):
    for name, lid in (("liver", 4), ("soft_tissue", 1)):
        m = interior(study.labels == lid)
        for d in ("a", "b"):
            bias = study.images[("ct", d)][m].mean() - study.noise_free[m].mean()
            assert abs(bias) < 5.0, (name, d, bias)


def test_counts_electronic_noise_and_errors():
    rng = np.random.default_rng(0)
    p = np.full(20000, 2.0)
    n = transmission_counts(p, 1e4, rng)
    assert abs(n.mean() / (1e4 * np.exp(-2)) - 1) < 0.01
    assert abs(n.var() / n.mean() - 1) < 0.05  # Poisson
    ne = transmission_counts(p, 1e4, np.random.default_rng(0), electronic_sd=30.0)
    assert abs(ne.var() - (n.var() + 900)) / ne.var() < 0.1
    assert transmission_counts(np.full(10, 50.0), 10.0, rng).min() == 0.5
    with pytest.raises(ValueError, match="I0"):
        transmission_counts(p, 0.0, rng)
    with pytest.raises(ValueError, match="non-negative"):
        transmission_counts(np.array([np.nan]), 1e4, rng)


def test_tumours_determinism_and_nifti(study, tmp_path):
    hosts = {le["host"] for le in study.lesions}
    assert "liver" in hosts
    again = simulate_ct(3, i0={"a": 1e5, "b": 2.5e4}, doses=("a", "b"), **SIM)
    assert np.array_equal(again.images[("ct", "b")], study.images[("ct", "b")])
    files = write_ct_study(study, tmp_path)
    names = {f.name for f in files}
    assert {"ct_a.nii.gz", "labels.nii.gz", "mask_lesion.nii.gz"} <= names
    back = read_nifti(tmp_path / "ct_b.nii.gz").data
    assert np.allclose(back, study.images[("ct", "b")])
    with pytest.raises(FileExistsError):
        write_ct_study(study, tmp_path)
    with pytest.raises(ValueError, match="dose"):
        simulate_ct(0, doses=("half",), **SIM)


def test_kidney_tumours_at_the_default_window():
    st = simulate_ct(0, doses=("tenth",), n_slices=16, shape=64)
    kid = [le for le in st.lesions if le["host"] == "kidney"]
    assert kid and all(le["hu"] < st.meta["hu_table"]["kidney"] - 30 for le in kid)
    assert all((st.labels == le["label"]).any() for le in kid)


def test_simulate_ct_command(tmp_path):
    from tgd.cli import main

    assert main(["simulate-ct", "--out", str(tmp_path), "--shape", "64", "--n-slices", "2",
                 "--doses", "quarter", "--electronic-sd", "5"]) == 0
    assert (tmp_path / "ct_0000" / "ct_quarter.nii.gz").is_file()
    assert main(["simulate-ct", "--out", str(tmp_path), "--shape", "64", "--n-slices", "2",
                 "--doses", "quarter"]) == 1  # never overwrites silently
