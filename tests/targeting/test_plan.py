import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tgd
from tgd.models import DnCNN
from tgd.targeting import TGDPlan, UnsupportedModelError

DNCNN_CONVS = ["body.0", "body.2", "body.5", "body.8", "body.11", "body.14", "body.17", "body.20"]


@pytest.fixture
def dncnn():
    torch.manual_seed(0)
    return DnCNN(width=16)


def test_dncnn_layout():
    m = DnCNN()
    convs = [n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)]
    norms = [n for n, mod in m.named_modules() if isinstance(mod, nn.BatchNorm2d)]
    assert convs == DNCNN_CONVS and len(norms) == 6
    assert m.body[0].in_channels == 3 and m.body[-1].out_channels == 1
    assert isinstance(m.body[1], nn.ReLU) and not isinstance(m.body[-1], nn.ReLU)
    x = torch.randn(2, 3, 20, 20)
    m.eval()
    torch.testing.assert_close(m(x), x[:, 1:2] - m.body(x))


def test_dncnn_plan_masks(dncnn):
    p = tgd.plan(dncnn, threshold=0.3)
    assert list(p.layers) == DNCNN_CONVS
    modules = dict(dncnn.named_modules())
    for i, name in enumerate(DNCNN_CONVS[:-1]):
        lp = p.layers[name]
        consumer = DNCNN_CONVS[i + 1]
        assert lp.role == "targeted" and lp.consumers == [consumer] and lp.consumer == consumer
        assert lp.norms == ([] if i == 0 else [f"body.{int(name.split('.')[1]) + 1}"])
        kse = tgd.kse_scores(modules[consumer])
        assert torch.equal(lp.kse, kse)
        assert torch.equal(p.masks[name], kse < 0.3)
        assert p.masks[name].dtype == torch.bool and p.masks[name].shape == (16,)
    last = p.layers["body.20"]
    assert last.role == "frozen" and last.consumers == [] and not last.mask.any()
    assert last.reason == "output layer" and torch.isnan(last.kse).all()
    for npl in p.norms.values():
        assert torch.equal(npl.mask, p.masks[npl.producer])
    assert 0 < p.trainable_fraction(dncnn) < 1


def test_threshold_extremes(dncnn):
    assert not any(m.any() for m in tgd.plan(dncnn, 0.0).masks.values())
    p1 = tgd.plan(dncnn, 1.0)
    for lp in p1.layers.values():
        if lp.role == "targeted":
            assert torch.equal(lp.mask, lp.kse < 1.0) and lp.n_targeted == lp.out_channels - 1


def test_freeze_and_train_overrides(dncnn):
    p = tgd.plan(dncnn, 0.3, freeze=["body.2"], train=["body.20"])
    assert p.layers["body.2"].role == "frozen" and not p.masks["body.2"].any()
    assert p.layers["body.20"].role == "full" and p.masks["body.20"].all()
    with pytest.raises(ValueError, match="not conv layers"):
        tgd.plan(dncnn, freeze=["body.3"])
    with pytest.raises(ValueError, match="both freeze and train"):
        tgd.plan(dncnn, freeze=["body.2"], train=["body.2"])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf"), "0.3", None])
def test_threshold_validated(dncnn, bad):
    with pytest.raises(ValueError, match="threshold"):
        tgd.plan(dncnn, bad)


def test_model_without_conv():
    with pytest.raises(ValueError, match="no conv layer"):
        tgd.plan(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))


class Shuffle(nn.Module):
    """A channel shuffle (view + transpose over channels) between two convs."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.b(y)


class NeedsBigInput(nn.Module):
    """Accepts 100 x 100 images only (beyond every default example size)."""

    def __init__(self, size=100):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * (size - 2) ** 2, 1)

    def forward(self, x):
        return self.fc(self.a(x).flatten(1))


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.a(self.a(x))


@pytest.mark.parametrize(
    "model,match",
    [
        (Shuffle(), "conv 'b' reads channels mixed by the operation 'view'"),
        (NeedsBigInput(), "example input failed"),
        (Shared(), "more than once"),
    ],
)
def test_unsupported_graphs_raise(model, match):
    with pytest.raises(UnsupportedModelError, match=match):
        tgd.plan(model)


def test_example_input_option():
    m = NeedsBigInput()
    p = tgd.plan(m, 0.5, example_input=torch.zeros(1, 3, 100, 100))
    assert p.layers["a"].role == "frozen" and p.layers["a"].reason == "output layer"
    assert p.other_parameters == ["fc.weight", "fc.bias"]


def test_default_example_input_is_the_smallest_accepted():
    m = NeedsBigInput(size=16)  # accepts 16 x 16 only: 4 and 8 fail, 16 is found
    p = tgd.plan(m, 0.5)
    assert p.layers["a"].reason == "output layer"


def test_data_dependent_forward_is_traced_by_running_it():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 1, 3, padding=1)

        def forward(self, x):
            if x.shape[-1] % 2 == 0 and x.sum() >= 0:
                return self.b(torch.relu(self.a(x)))
            return x

    p = tgd.plan(DataDependent(), 0.5)
    assert p.layers["a"].consumers == ["b"] and p.layers["b"].role == "frozen"


def test_nested_sequential_functional_and_head():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Sequential(nn.BatchNorm2d(8)))
            self.block = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.Dropout(0.1))
            self.head = nn.Conv2d(8, 4, 1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = F.leaky_relu(self.stem(x)).contiguous()
            x = torch.relu(self.block(x))
            x = self.head(x).mean((2, 3))
            return self.fc(x)

    p = tgd.plan(Net(), 0.5)
    assert p.layers["stem.0"].consumers == ["block.1"] and p.layers["stem.0"].norms == ["stem.1.0"]
    assert p.norms["stem.1.0"].producer == "stem.0"
    assert p.layers["block.1"].consumers == ["head"] and p.layers["head"].consumers == []
    assert p.layers["head"].role == "frozen"
    assert "read by 'linear'" in str(p.layers["head"].reason) or p.layers["head"].leaving.all()
    assert p.other_parameters == ["fc.weight", "fc.bias"]


def test_json_round_trip(dncnn, tmp_path):
    p = tgd.plan(dncnn, 0.4, freeze=["body.5"])
    q = TGDPlan.from_json(p.to_json())
    assert q.threshold == 0.4 and q.alpha == p.alpha and q.k == p.k
    assert q.structure == p.structure and q.weights_sha256 == p.weights_sha256
    for name, lp in p.layers.items():
        lq = q.layers[name]
        assert torch.equal(lq.mask, lp.mask) and lq.role == lp.role and lq.norms == lp.norms
        assert torch.equal(lq.kse, lp.kse, ) or torch.equal(lq.kse.isnan(), lp.kse.isnan())
        finite = ~lp.kse.isnan()
        assert torch.equal(lq.kse[finite], lp.kse[finite])  # float32 survives JSON exactly
    assert q.reads == p.reads and q.norms.keys() == p.norms.keys()
    for name, npl in p.norms.items():
        assert torch.equal(q.norms[name].mask, npl.mask) and q.norms[name].sources == npl.sources
    path = tmp_path / "plan.json"
    p.to_json(path)
    assert torch.equal(TGDPlan.from_json(path).masks["body.2"], p.masks["body.2"])
    with pytest.raises(FileExistsError):
        p.to_json(path)


@pytest.mark.parametrize(
    "text,match",
    [
        ("not json", "not valid JSON"),
        ('{"format": "other"}', "not a TGD plan"),
        ('{"format": "tgd-plan/1", "threshold": 0.3}', "malformed"),
    ],
)
def test_bad_json_raises(text, match):
    with pytest.raises(ValueError, match=match):
        TGDPlan.from_json(text if text.startswith("{") else "{" + text)


def test_bad_role_and_threshold_in_json(dncnn):
    d = json.loads(tgd.plan(dncnn).to_json())
    d["layers"]["body.0"]["role"] = "sometimes"
    with pytest.raises(ValueError, match="unknown role"):
        TGDPlan.from_dict(d)
    d = json.loads(tgd.plan(dncnn).to_json())
    d["threshold"] = 2
    with pytest.raises(ValueError, match="threshold"):
        TGDPlan.from_dict(d)


def test_summary_is_readable(dncnn):
    p = tgd.plan(dncnn, 0.3)
    text = p.summary(dncnn)
    for name in DNCNN_CONVS:
        assert name in text
    assert "output layer" in text and "trainable:" in text and "threshold=0.3" in text
    counts = p.parameter_counts(dncnn)
    trainable, total = counts["body.2"]
    assert total == 16 * 16 * 9  # conv without bias
    assert trainable == p.layers["body.2"].n_targeted * 16 * 9
    assert counts["body.3"] == (2 * p.layers["body.2"].n_targeted, 2 * 16)  # BN weight + bias
