"""Adaptations (tgd.targeting.adaptation): only the retrained entries are saved, and applying
them to the base reproduces the adapted model bit for bit; wrong bases and damaged files are
refused in one line; plain_state_dict and trainable_summary agree with the attach machinery."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

import tgd
from tgd.models import DnCNN
from tgd.targeting.adaptation import (
    ADAPTATION_FORMAT,
    load_adaptation,
    plain_state_dict,
    print_trainable_parameters,
    read_adaptation,
    retrained_entries,
    save_adaptation,
    trainable_summary,
)


def dncnn(seed=0):
    torch.manual_seed(seed)
    m = DnCNN(width=16, depth=6)
    with torch.no_grad():  # non-trivial running statistics, so keeping them is visible
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2)
    return m.eval()


def monai_unet(seed=0):
    nets = pytest.importorskip("monai.networks.nets")
    torch.manual_seed(seed)
    # strided convs down, transposed convs up, batch norm with running statistics, PReLU
    return nets.UNet(2, 3, 1, channels=(8, 16, 32), strides=(2, 2), num_res_units=1,
                     norm="batch").eval()  # fmt: skip


MODELS = {"dncnn": dncnn, "monai-unet": monai_unet}


def finetune(model, plan, mode="parameter", steps=3):
    """Attach TGD and train a few AdamW steps (weight decay moves the raw frozen entries)."""
    handle = tgd.attach(model, plan, mode=mode)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        x = torch.randn(4, 3, 16, 16, generator=g)
        opt.zero_grad()
        (model(x) - x[:, 1:2]).square().mean().backward()
        opt.step()
    model.eval()
    return handle


@pytest.fixture
def adapted(request):
    build, mode = request.param
    base = build()
    model = copy.deepcopy(base)
    plan = tgd.plan(model, 0.3)
    handle = finetune(model, plan, mode)
    return base, model, plan, handle


CASES = [(MODELS[m], mode) for m in MODELS for mode in ("parameter", "activation")]
IDS = [f"{m}-{mode}" for m in MODELS for mode in ("parameter", "activation")]


@pytest.mark.parametrize("adapted", CASES, ids=IDS, indirect=True)
def test_save_then_load_on_the_base_is_bit_identical(adapted, tmp_path):
    base, model, plan, handle = adapted
    save_adaptation(tmp_path / "a", model, plan, base_state=base)
    handle.detach()
    want = model.state_dict()
    assert any(not torch.equal(want[k], v) for k, v in base.state_dict().items()), "no change"

    fresh = copy.deepcopy(base)
    out = load_adaptation(tmp_path / "a", fresh)
    assert out is fresh and not tgd.is_attached(out)
    got = out.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(out(x), model(x))


@pytest.mark.parametrize("build", list(MODELS.values()), ids=list(MODELS))
def test_file_holds_only_the_retrained_entries_and_is_small(build, tmp_path):
    base = build()
    model = copy.deepcopy(base)
    plan = tgd.plan(model, 0.3)
    finetune(model, plan).detach()
    save_adaptation(tmp_path / "a", model, plan)
    stored = load_file(tmp_path / "a.safetensors")
    full = tmp_path / "full.safetensors"
    save_file(model.state_dict(), full)

    retrained = retrained_entries(model, plan)
    assert set(stored) == set(retrained)
    state = model.state_dict()
    for key, mask in retrained.items():
        assert torch.equal(stored[key], state[key][mask])
    # the parameter entries stored are exactly what trainable_summary counts
    meta = json.loads((tmp_path / "a.json").read_text())
    n_params = sum(e["retrained"] for e in meta["entries"].values() if e["kind"] == "parameter")
    summary = trainable_summary(model, plan)
    assert n_params == summary["trainable"]
    assert summary["fraction"] < 0.3
    size = (tmp_path / "a.safetensors").stat().st_size
    assert size < 0.4 * full.stat().st_size, (size, full.stat().st_size)
    assert meta["format"] == ADAPTATION_FORMAT and meta["tgd_version"]
    assert tgd.TGDPlan.from_dict(meta["plan"]).to_dict() == plan.to_dict()


def test_hash_is_the_same_with_or_without_base_state_and_attached_or_not(tmp_path):
    base = dncnn()
    model = copy.deepcopy(base)
    plan = tgd.plan(model, 0.3)
    handle = finetune(model, plan)
    save_adaptation(tmp_path / "attached", model, plan)
    save_adaptation(tmp_path / "with-base", model, plan, base_state=base.state_dict())
    handle.detach()
    save_adaptation(tmp_path / "plain", model, plan)
    hashes = {n: read_adaptation(tmp_path / n)[0]["base_sha256"]
              for n in ("attached", "with-base", "plain")}  # fmt: skip
    assert len(set(hashes.values())) == 1, hashes
    data = {n: (tmp_path / f"{n}.safetensors").read_bytes() for n in hashes}
    assert len(set(data.values())) == 1


def test_wrong_base_is_refused_naming_the_entries_unless_not_strict(tmp_path):
    base = dncnn(seed=0)
    model = copy.deepcopy(base)
    plan = tgd.plan(model, 0.3)
    finetune(model, plan).detach()
    save_adaptation(tmp_path / "a", model, plan)

    other = dncnn(seed=0)
    with torch.no_grad():
        other.body[0].weight[-1].add_(1.0)  # one frozen kernel of the first conv differs
    frozen = ~plan.layers["body.0"].mask
    assert frozen[-1], "the test needs the last channel of body.0 frozen"
    with pytest.raises(ValueError, match=r"entries that differ: body\.0\.weight") as err:
        load_adaptation(tmp_path / "a", other)
    assert "\n" not in str(err.value) and "strict_base=False" in str(err.value)

    load_adaptation(tmp_path / "a", other, strict_base=False)
    for key, mask in retrained_entries(model, plan).items():
        assert torch.equal(other.state_dict()[key][mask], model.state_dict()[key][mask])
    assert not torch.equal(other.body[0].weight[-1], model.body[0].weight[-1])


def test_a_base_differing_only_in_retrained_entries_gives_the_same_result(tmp_path):
    base = dncnn()
    model = copy.deepcopy(base)
    plan = tgd.plan(model, 0.3)
    finetune(model, plan).detach()
    save_adaptation(tmp_path / "a", model, plan)
    other = copy.deepcopy(base)
    name = next(n for n, lp in plan.layers.items() if lp.n_targeted)
    with torch.no_grad():
        dict(other.named_modules())[name].weight[plan.layers[name].mask] = 7.0
    load_adaptation(tmp_path / "a", other)
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_save_checks_the_model_against_base_state(tmp_path):
    base = dncnn()
    model = copy.deepcopy(base)
    plan = tgd.plan(model, 0.3)
    finetune(model, plan).detach()
    with torch.no_grad():
        model.body[0].weight[~plan.layers["body.0"].mask] += 1.0  # breaks TGD's promise
    with pytest.raises(ValueError, match=r"outside the entries TGD retrains.*body\.0\.weight"):
        save_adaptation(tmp_path / "a", model, plan, base_state=base)
    assert not (tmp_path / "a.json").exists()


def test_plan_of_another_structure_is_refused(tmp_path):
    model = dncnn()
    plan = tgd.plan(model, 0.3)
    save_adaptation(tmp_path / "a", model, plan)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="the plan does not match this model"):
        load_adaptation(tmp_path / "a", DnCNN(width=8, depth=6))


def test_refuses_to_overwrite_or_to_load_into_an_attached_model(tmp_path):
    model = dncnn()
    plan = tgd.plan(model, 0.3)
    save_adaptation(tmp_path / "a", model, plan)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_adaptation(tmp_path / "a", model, plan)
    save_adaptation(tmp_path / "a", model, plan, overwrite=True)
    with tgd.attach(model, plan):
        with pytest.raises(ValueError, match="attached"):
            load_adaptation(tmp_path / "a", model)


def _damage(kind, tmp_path):
    st, js = tmp_path / "a.safetensors", tmp_path / "a.json"
    if kind == "no json":
        js.unlink()
    elif kind == "no tensors":
        st.unlink()
    elif kind == "truncated":
        st.write_bytes(st.read_bytes()[:-7])
    elif kind == "not json":
        js.write_text("{ not json")
    elif kind == "other format":
        js.write_text(json.dumps({"format": "tgd-checkpoint/1"}))
    elif kind == "no plan":
        meta = json.loads(js.read_text())
        del meta["plan"]
        js.write_text(json.dumps(meta))
    elif kind == "bad base hash":
        meta = json.loads(js.read_text())
        meta["base_entries"] = ["not", "a", "dict"]
        js.write_text(json.dumps(meta))
    elif kind == "bad plan":
        meta = json.loads(js.read_text())
        meta["plan"]["format"] = "nope"
        js.write_text(json.dumps(meta))
    elif kind == "garbage tensors":  # consistent hash, but not safetensors
        import hashlib

        data = b"\x08" + b"\x00" * 7 + b"garbage!"
        st.write_bytes(data)
        meta = json.loads(js.read_text())
        meta["tensors"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        js.write_text(json.dumps(meta))
    elif kind == "wrong entries":  # a readable, consistent file that lacks one entry
        import hashlib

        from safetensors.torch import save

        tensors = load_file(st)
        tensors.pop(sorted(tensors)[0])
        data = save(tensors)
        st.write_bytes(data)
        meta = json.loads(js.read_text())
        meta["tensors"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
        js.write_text(json.dumps(meta))


DAMAGE = {
    "no json": (FileNotFoundError, "no TGD adaptation"),
    "no tensors": (FileNotFoundError, "tensor file .* is missing"),
    "truncated": (ValueError, "truncated, corrupt, or from another save"),
    "not json": (ValueError, "not valid JSON"),
    "other format": (ValueError, "is not a TGD adaptation"),
    "no plan": (ValueError, "malformed TGD adaptation .*plan"),
    "bad base hash": (ValueError, "malformed TGD adaptation .*base_entries"),
    "bad plan": (ValueError, "not a TGD plan"),
    "garbage tensors": (ValueError, "not a readable safetensors file"),
    "wrong entries": (ValueError, "stored entries do not match .*missing entries"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_files_are_refused_in_one_line(kind, tmp_path):
    base = dncnn()
    model = copy.deepcopy(base)
    plan = tgd.plan(model, 0.3)
    finetune(model, plan).detach()
    save_adaptation(tmp_path / "a", model, plan)
    load_adaptation(tmp_path / "a.json", copy.deepcopy(base))  # intact: loads (either name)
    _damage(kind, tmp_path)
    exc, pattern = DAMAGE[kind]
    with pytest.raises(exc, match=pattern) as err:
        load_adaptation(tmp_path / "a", copy.deepcopy(base))
    assert "\n" not in str(err.value)


class Scaled(nn.Module):
    """A module with its own parameter and children, plus a root-level parameter: the key
    order of a parametrized state dict differs most from the plain one here."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor([1.5]))
        self.block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        return self.head(self.block(x)) * self.gain


@pytest.mark.parametrize("build", [dncnn, monai_unet, Scaled], ids=["dncnn", "monai", "own"])
def test_plain_state_dict_equals_effective_state_dict(build):
    torch.manual_seed(0)
    model = build()
    plan = tgd.plan(model, 0.6)
    finetune(model, plan)
    saved = model.state_dict()
    assert any(".parametrizations." in f".{k}" for k in saved)
    plain = plain_state_dict(saved)
    want = tgd.effective_state_dict(model)
    assert list(plain) == list(want)
    for key in want:
        assert torch.equal(plain[key], want[key]), key
    # only keys under the prefix are resolved
    nested = {f"net.{k}": v for k, v in saved.items()} | {"other.w": torch.ones(1)}
    assert list(plain_state_dict(nested, prefix="net.")) == [f"net.{k}" for k in want] + [
        "other.w"]
    assert plain_state_dict(nested, prefix="elsewhere.") == nested


def test_plain_state_dict_refuses_a_foreign_parametrization():
    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    conv = nn.Conv2d(1, 1, 1)
    parametrize.register_parametrization(conv, "weight", Double())
    parametrize.register_parametrization(conv, "weight", Double())
    with pytest.raises(ValueError, match="not TGD's"):
        plain_state_dict(conv.state_dict())


def test_trainable_summary_reuses_the_plan_counts(capsys):
    model = dncnn()
    plan = tgd.plan(model, 0.3)
    s = trainable_summary(model, plan, mode="parameter")
    counts = plan.parameter_counts(model)
    assert s["trainable"] == sum(t for t, _ in counts.values()) > 0
    assert s["total"] == sum(p.numel() for p in model.parameters())
    assert s["fraction"] == pytest.approx(plan.trainable_fraction(model))
    assert s["convs"] == len(plan.layers) == 6
    assert s["convs_retrained"] == sum(1 for lp in plan.layers.values() if lp.n_targeted)
    line = print_trainable_parameters(model, plan, mode="parameter")
    assert capsys.readouterr().out.strip() == line == s["text"]
    assert line == (
        f"TGD retrains {s['trainable']:,} of {s['total']:,} parameters "
        f"({100 * s['fraction']:.2f} %) in {s['convs_retrained']} of 6 convs; mode parameter"
    )
    assert "," in f"{s['total']:,}"  # DnCNN(16, 6) has thousands of parameters
    with tgd.attach(model, plan):  # the same numbers while attached
        assert trainable_summary(model, plan, mode="parameter") == s
    assert "mode" not in trainable_summary(model, plan)["text"]
