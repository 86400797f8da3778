import math

import numpy as np
import pytest
import torch
from torch import nn

import tgd.targeting.kse as kse_module
from tgd import kse_scores
from tgd.targeting.geometry import kernels_per_input_channel
from tgd.targeting.kse import kse_from_kernels, kse_scores_many, minmax


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

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(12, 9, 3)
    whole = kse_scores(conv)
    monkeypatch.setattr(kse_module, "_CHUNK_ELEMENTS", 2 * 9 * 9)  # two channels per chunk
    torch.testing.assert_close(kse_scores(conv), whole, rtol=0, atol=0)


# --- the fast exact paths (1x1 "line", wide "wide") against the Gram path ---------------------

THRESHOLDS = np.round(np.arange(0.1, 1.0, 0.1), 1)


def _quantised(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 2).round() / 4  # many exact ties


def _with_duplicates_and_zeros(shape, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    w[:, 1] = 0  # an all-zero input channel
    w[3 : 3 + shape[0] // 3] = w[0]  # a third of the output kernels identical to the first
    return w


def _random(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# (name, weight, groups, transposed)
FAST_PATH_CASES = [
    ("1x1 wide", _random((200, 24, 1, 1), 0), 1, False),
    ("1x1 N<k+1", _random((4, 30, 1, 1), 1), 1, False),
    ("1x1 N=2", _random((2, 9, 1, 1), 2), 1, False),
    ("1x1 N=1", _random((1, 9, 1, 1), 3), 1, False),
    ("1x1 ties", _quantised((100, 20, 1, 1), 4), 1, False),
    ("1x1 duplicates, zeros", _with_duplicates_and_zeros((120, 20, 1, 1), 5), 1, False),
    ("1x1 groups", _random((120, 10, 1, 1), 6), 4, False),
    ("1x1 transposed", _random((20, 100, 1, 1), 7), 1, True),
    ("Conv1d 1", _random((90, 12, 1), 8), 1, False),
    ("3x3 wide", _random((100, 16, 3, 3), 9), 1, False),
    ("3x3 N<k+1", _random((3, 10, 3, 3), 10), 1, False),
    ("3x3 ties", _quantised((80, 16, 3, 3), 11), 1, False),
    ("3x3 duplicates, zeros", _with_duplicates_and_zeros((80, 12, 3, 3), 12), 1, False),
    ("3x3 groups", _random((160, 8, 3, 3), 13), 2, False),
    ("3x3 transposed", _random((12, 80, 3, 3), 14), 1, True),
    ("3x3x3", _random((80, 10, 3, 3, 3), 15), 1, False),
    ("Conv1d 5", _random((130, 8, 5), 16), 1, False),
]


def _scores_on_path(monkeypatch, path, kernels, k=5):
    monkeypatch.setattr(kse_module, "_density_path", lambda n, length: path)
    return kse_from_kernels(kernels, k=k).numpy()


@pytest.mark.parametrize("k", [5, 1, 100])
@pytest.mark.parametrize("name,weight,groups,transposed", FAST_PATH_CASES,
                         ids=[c[0] for c in FAST_PATH_CASES])  # fmt: skip
def test_fast_paths_agree_with_the_gram_path(monkeypatch, name, weight, groups, transposed, k):
    kernels = kernels_per_input_channel(weight, groups, transposed)
    default = kse_from_kernels(kernels, k=k).numpy()
    gram = _scores_on_path(monkeypatch, "gram", kernels, k)
    paths = ["wide"] + (["line"] if kernels.shape[-1] == 1 else [])
    for path in paths:
        got = _scores_on_path(monkeypatch, path, kernels, k)
        np.testing.assert_allclose(got, gram, rtol=0, atol=1e-12, err_msg=path)
        for t in THRESHOLDS:
            assert np.array_equal(got < t, gram < t), (path, t)
    np.testing.assert_allclose(default, gram, rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", ["gram", "wide", "line"])
def test_every_path_matches_brute_force_on_ties_and_duplicates(monkeypatch, path):
    for w in (_quantised((12, 9, 1, 1), 20), _with_duplicates_and_zeros((15, 6, 1, 1), 21),
              torch.ones(6, 4, 1, 1)):  # fmt: skip
        ref = brute_force_kse(w.numpy())
        got = _scores_on_path(monkeypatch, path, kernels_per_input_channel(w))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    if path != "line":
        w = _with_duplicates_and_zeros((15, 6, 3, 3), 22)
        got = _scores_on_path(monkeypatch, path, kernels_per_input_channel(w))
        np.testing.assert_allclose(got, brute_force_kse(w.numpy()), rtol=0, atol=1e-12)


def test_line_density_is_the_knn_distance_sum_on_a_line():
    x = np.array([[0.0, 3.0, 0.0, 10.0, 1.0, 3.0, 3.0]])
    for kk in range(1, 7):
        ref = sorted(sum(sorted(abs(a - b) for j, b in enumerate(x[0]) if j != i)[:kk])
                     for i, a in enumerate(x[0]))  # fmt: skip
        np.testing.assert_array_equal(np.sort(kse_module._line_density(x, kk)[0]), ref)


def test_identical_kernels_are_at_distance_exactly_zero_on_every_path():
    big = torch.full((100, 2, 3, 3), 1e3 / 3)  # large, not exactly representable: rounding
    big[:, 1] = torch.linspace(-1, 1, 9).view(1, 3, 3) * 7.1
    d = kse_module._wide_density(kernels_per_input_channel(big).double(), 5)
    assert torch.equal(d, torch.zeros_like(d))
    line = kse_module._line_density(np.full((3, 80), 1e3 / 3), 5)
    assert np.array_equal(line, np.zeros_like(line))


def test_fast_paths_do_not_depend_on_their_chunk_sizes(monkeypatch):
    w1, w3 = _random((70, 9, 1, 1), 30), _random((70, 9, 3, 3), 31)
    whole = [kse_scores(w1), kse_scores(w3)]
    monkeypatch.setattr(kse_module, "_LINE_CHUNK", 2 * 70)
    monkeypatch.setattr(kse_module, "_WIDE_CHUNK", 1)
    assert torch.equal(kse_scores(w1), whole[0]) and torch.equal(kse_scores(w3), whole[1])


def test_narrow_layers_keep_the_gram_path():
    # The reproduction's DnCNN (3x3, at most 64 kernels per channel) keeps its numbers bit for bit.
    assert kse_module._density_path(64, 9) == "gram"
    assert kse_module._density_path(65, 9) == "wide" and kse_module._density_path(2, 1) == "line"
