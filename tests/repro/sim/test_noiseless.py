"""The noiseless reference: the expected counts of the protocol reconstructed with the same
OSEM as the noisy images (what the findings decide on)."""

import numpy as np
import torch

from tgd.repro.sim.recon import osem
from tgd.repro.sim.study import simulate_study


def test_noiseless_is_the_reconstruction_of_the_expected_counts():
    st = simulate_study(5, versions=("v2",), durations=(60, 600), n_slices=4, shape=32)
    nl = st.noiseless("v2")
    e = st.expected
    # the same OSEM called directly on the expected prompts of 600 s
    direct = osem(torch.from_numpy((e.prompts * 600).numpy().astype(np.float32)),
                  e.multiplicative * 600, e.background * 600, st.geom, st.versions["v2"],
                  mask=torch.from_numpy(st.geom.fov_mask())).numpy()
    np.testing.assert_allclose(nl, direct, rtol=1e-5, atol=1e-6)
    assert st.noiseless("v2") is nl  # cached
    # it is not the 600-s image (which carries noise) but close to it on average
    liver = st.mask("liver")
    img = st.images[("v2", 600)]
    assert not np.allclose(nl, img)
    assert abs(img[liver].mean() / nl[liver].mean() - 1) < 0.05
    noise600 = (img - nl)[liver].std() / nl[liver].mean()
    noise60 = (st.images[("v2", 60)] - nl)[liver].std() / nl[liver].mean()
    assert 0.01 < noise600 < noise60  # 600 s is noisy, 60 s noisier


def test_noiseless_depends_on_the_reconstruction_version():
    st = simulate_study(5, versions=("v1", "v2"), durations=(600,), n_slices=4, shape=32)
    a, b = st.noiseless("v1"), st.noiseless("v2")
    assert a.shape == b.shape and not np.allclose(a, b)
