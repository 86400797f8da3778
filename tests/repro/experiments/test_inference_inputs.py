"""The experiments' inference reads only the input image: each realization normalised from
itself (as ``tgd denoise`` does), with no reference image and no labels."""

import inspect

import numpy as np
import torch

from tgd.data import intensity_scale
from tgd.inference import denoise_volume
from tgd.models import DnCNN
from tgd.repro.experiments import common


def test_denoise_ensemble_normalises_each_realization_from_itself():
    torch.manual_seed(0)
    net = DnCNN(width=8, depth=4).eval()
    rng = np.random.default_rng(0)
    ens = rng.gamma(4.0, 1.0, (3, 4, 24, 24)).astype(np.float32)
    ens[1] *= 7.0  # a realization at another intensity level gets its own scale
    out = common.denoise_ensemble(net, ens)
    for e, o in zip(ens, out, strict=True):
        ref = denoise_volume(net, e, scale=intensity_scale(e))
        np.testing.assert_allclose(o, ref, rtol=1e-5, atol=1e-6)
    # what it is given is all it reads: no study, reference image or labels in its signature
    assert list(inspect.signature(common.denoise_ensemble).parameters) == ["model", "ensemble"]
    assert common.NORMALIZE == "input"


def test_training_data_are_normalised_from_the_input_too():
    from tgd.repro.sim.study import simulate_study

    st = simulate_study(2, versions=("v2",), durations=(120, 600), n_slices=4, shape=32)
    preset = common.Preset(name="t", shape=32, n_slices=4, pelvis_slices=4, n_v1_low=1,
                           n_v1_high=0, n_ft=1, n_unseen=0, realizations=2, width=8, depth=4,
                           batch_size=2, patch_size=None, scratch_iterations=1)
    ds = common.dataset([st], "v2", preset, durations=(120,))
    x, y = ds[1]
    s = intensity_scale(st.images[("v2", 120)])  # the input's own body mean, not the 600-s
    np.testing.assert_allclose(x[1].numpy(), st.images[("v2", 120)][1] * s, rtol=1e-6)
    np.testing.assert_allclose(y[0].numpy(), st.images[("v2", 600)][1] * s, rtol=1e-6)
