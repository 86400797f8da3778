import math

import numpy as np
import pytest
import torch
from torch import nn

from tgd import kse_scores
from tgd.targeting.geometry import kernels_per_input_channel
from tgd.targeting.kse import kse_scores_many, minmax


def brute_force_kse(weight: np.ndarray, groups=1, transposed=False, alpha=1.0, k=5):
    """Loop-per-channel KSE straight from the paper's definition, in float64 numpy."""
    w = np.asarray(weight, dtype=np.float64)
    if transposed:
        c_in = w.shape[0]
        per_channel = [w[c].reshape(w.shape[1], -1) for c in range(c_in)]
    else:
        c_out, c_in_g = w.shape[:2]
        n_g = c_out // groups
        per_channel = []
        for g in range(groups):
            for j in range(c_in_g):
                per_channel.append(w[g * n_g : (g + 1) * n_g, j].reshape(n_g, -1))
    s, e = [], []
    for kern in per_channel:
        n = kern.shape[0]
        s.append(np.abs(kern).sum())
        if n == 1:
            e.append(0.0)
            continue
        dm = []
        for i in range(n):
            d = sorted(np.linalg.norm(kern[i] - kern[j]) for j in range(n) if j != i)
            dm.append(sum(d[: min(k, n - 1)]))
        dm = np.array(dm)
        p = dm / dm.sum() if dm.sum() > 0 else np.full(n, 1.0 / n)
        e.append(-sum(pi * math.log2(pi) for pi in p if pi > 0))

    def mm(v):
        v = np.asarray(v)
        span = v.max() - v.min()
        return np.ones_like(v) if span <= 0 else (v - v.min()) / span

    return mm(np.sqrt(mm(s) / (1 + alpha * mm(e))))


@pytest.mark.parametrize(
    "module",
    [
        nn.Conv2d(16, 16, 3),
        nn.Conv2d(8, 24, 3),
        nn.Conv2d(24, 8, 5),
        nn.Conv1d(5, 7, 3),
        nn.Conv3d(4, 6, 3),
        nn.Conv2d(8, 12, 3, groups=4),
        nn.Conv2d(8, 8, 3, groups=8),  # depthwise: one kernel per channel, e = 0
        nn.ConvTranspose2d(6, 10, 3),
        nn.ConvTranspose2d(6, 10, 3, groups=2),
        nn.Conv2d(64, 64, 3),
    ],
    ids=lambda m: f"{type(m).__name__}{tuple(m.weight.shape)}g{m.groups}",
)
def test_matches_brute_force(module):
    torch.manual_seed(0)
    with torch.no_grad():
        module.weight.normal_()
    transposed = isinstance(module, nn.ConvTranspose2d)
    ref = brute_force_kse(module.weight.detach().numpy(), module.groups, transposed)
    got = kse_scores(module)
    assert got.dtype == torch.float32 and got.shape == (len(ref),)
    assert got.shape[0] == (module.in_channels)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    assert float(got.min()) == 0.0 and float(got.max()) == 1.0


@pytest.mark.parametrize("alpha,k", [(0.0, 5), (2.0, 1), (1.0, 3), (1.0, 100)])
def test_alpha_and_k(alpha, k):
    torch.manual_seed(1)
    w = torch.randn(12, 9, 3, 3)
    np.testing.assert_allclose(
        kse_scores(w, alpha=alpha, k=k).numpy(), brute_force_kse(w.numpy(), alpha=alpha, k=k),
        atol=1e-6,
    )  # fmt: skip


def test_hand_computed_1x1_case():
    # 1x1 conv, 3 output kernels per input channel, k=5 > N-1 so 2 neighbours each.
    w = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [3.0, 1.0, 2.0]]).view(3, 3, 1, 1)
    # channel 0: kernels 0, 1, 3 -> dm = (1+3, 1+2, 3+2) = (4, 3, 5), p = (1/3, 1/4, 5/12)
    e0 = -(1 / 3 * math.log2(1 / 3) + 1 / 4 * math.log2(1 / 4) + 5 / 12 * math.log2(5 / 12))
    # channel 1: identical kernels -> all dm 0 -> uniform p -> log2(3)
    e1 = math.log2(3)
    # channel 2: kernels 0, 0, 2 -> dm = (2, 2, 4) -> p = (1/4, 1/4, 1/2) -> 1.5
    e2 = 1.5
    s = [4.0, 3.0, 2.0]
    sn = [(v - 2) / 2 for v in s]
    en = [(v - e2) / (e1 - e2) for v in (e0, e1, e2)]
    raw = [math.sqrt(a / (1 + b)) for a, b in zip(sn, en, strict=True)]
    expected = [(r - min(raw)) / (max(raw) - min(raw)) for r in raw]
    got = kse_scores(w)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-7)
    assert got[1] == pytest.approx(math.sqrt(0.25) / math.sqrt(1 / (1 + en[0])), abs=1e-6)


def test_scores_input_channels_not_output_filters():
    # Input channel 3 is read by all-zero kernels: the least informative input map (KSE 0).
    # Scoring output filters (the KSE authors' reshape bug) would not single it out.
    torch.manual_seed(2)
    w = torch.randn(8, 8, 3, 3)
    w[:, 3] = 0
    scores = kse_scores(w)
    assert scores.argmin() == 3 and scores[3] == 0
    bugged = kse_scores(w.reshape(8, 8, 3, 3).transpose(0, 1).contiguous())
    assert bugged.argmin() != 3


def test_single_kernel_per_channel_has_zero_entropy():
    w = torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1)
    # e = 0 everywhere -> KSE = minmax(sqrt(minmax(s)))
    np.testing.assert_allclose(kse_scores(w).numpy(), [0.0, math.sqrt(1 / 3), 1.0], atol=1e-7)


def test_identical_kernels_give_uniform_entropy():
    w = torch.ones(6, 4, 3, 3)
    w[:, 1] *= 2  # channel 1: larger but still identical kernels
    kern = kernels_per_input_channel(w)
    assert kern.shape == (4, 6, 9)
    scores = kse_scores(w)
    assert torch.isfinite(scores).all()
    # every channel has e = log2(6) (constant -> ones); s picks out channel 1
    np.testing.assert_allclose(scores.numpy(), [0, 1, 0, 0], atol=1e-7)


def test_constant_and_all_zero_layers_single_nothing_out():
    for w in (torch.zeros(8, 5, 3, 3), torch.full((8, 5, 3, 3), 0.5)):
        scores = kse_scores(w)
        assert torch.equal(scores, torch.ones(5))


def test_minmax_constant_is_ones():
    assert torch.equal(minmax(torch.full((4,), 3.0)), torch.ones(4))
    assert torch.equal(minmax(torch.tensor([1.0, 3.0, 2.0])), torch.tensor([0.0, 1.0, 0.5]))


def test_module_and_weight_agree_and_batched_agrees():
    torch.manual_seed(3)
    convs = [nn.Conv2d(16, 16, 3) for _ in range(3)] + [nn.Conv2d(16, 1, 3), nn.Conv1d(4, 6, 3)]
    many = kse_scores_many(convs)
    for conv, s in zip(convs, many, strict=True):
        assert torch.equal(kse_scores(conv), kse_scores(conv.weight))
        torch.testing.assert_close(s, kse_scores(conv), atol=1e-7, rtol=0)


def test_double_and_half_precision_weights():
    torch.manual_seed(4)
    w = torch.randn(10, 6, 3, 3, dtype=torch.float64)
    ref = brute_force_kse(w.numpy())
    np.testing.assert_allclose(kse_scores(w).numpy(), ref, atol=1e-6)
    assert torch.isfinite(kse_scores(w.to(torch.bfloat16))).all()


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.ones(4, 4, 3, 3, dtype=torch.int64), "floating-point"),
        (torch.tensor([[[[float("nan")]]]]), "NaN or infinite"),
        (torch.full((2, 2, 1, 1), float("inf")), "NaN or infinite"),
        (torch.zeros(0, 4, 3, 3), "empty"),
        (torch.zeros(4, 4), "at least 3 dims"),
    ],
)
def test_bad_weights_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        kse_scores(bad)


def test_bad_options_raise():
    w = torch.randn(4, 4, 3, 3)
    with pytest.raises(ValueError, match="k must be"):
        kse_scores(w, k=0)
    with pytest.raises(ValueError, match="alpha"):
        kse_scores(w, alpha=-1)
    with pytest.raises(TypeError, match="Conv"):
        kse_scores(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="weight tensor"):
        kse_scores([[1.0]])


def test_chunked_distance_buffer_gives_the_same_scores(monkeypatch):
    import tgd.targeting.kse as kse_module

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(12, 9, 3)
    whole = kse_scores(conv)
    monkeypatch.setattr(kse_module, "_CHUNK_ELEMENTS", 2 * 9 * 9)  # two channels per chunk
    torch.testing.assert_close(kse_scores(conv), whole, rtol=0, atol=0)
