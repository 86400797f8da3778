"""A user's own paired images as training data: datalist manifests (tgd.data.manifest), the CLI
(tgd train / finetune / denoise --data manifest) and the library (tgd.training.adapt over a
manifest or any Dataset), on images this test makes itself (a 3-D phantom of ellipsoids and
blobs with Poisson noise, written with nibabel directly) rather than the simulator's studies."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from tgd.cli import main
from tgd.data import NoiseAdaptiveDataset, PairedVolumes, intensity_scale
from tgd.data.manifest import load_pairs, read_manifest, write_manifest
from tgd.training import adapt

SHAPE = (6, 32, 32)  # z, y, x
SPACING = (2.0, 2.0, 3.0)  # x, y, z mm
FAST = ["--batch-size", "4", "--patch-size", "16", "--no-progress", "--iterations", "3",
        "--width", "8", "--depth", "4", "--fisher-samples", "2"]


def phantom(seed: int) -> np.ndarray:
    """A head-like object: an ellipsoid of uptake 1 with a few hotter and colder blobs."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    img = ((x / 0.8) ** 2 + (y / 0.7) ** 2 + (z / 1.2) ** 2 < 1).astype(np.float32)
    for _ in range(4):
        c = rng.uniform(-0.4, 0.4, 3)
        r = rng.uniform(0.1, 0.25)
        blob = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < r ** 2
        img[blob] *= rng.choice([0.3, 3.0])
    return img * 5.0 + 0.05


def save(path, data: np.ndarray, spacing=SPACING):
    """``(Z, Y, X)`` data written as a NIfTI (x, y, z) with ``spacing`` mm, nibabel only."""
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)),
                             np.diag([*spacing, 1.0])), str(path))
    return path


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """Two subjects, each a full-count target and two low-count inputs (counts 20 and 40 per
    unit uptake); manifests: noise-adaptive (JSON, with a validation section) and CSV pairs."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    items, val = [], []
    for s in range(3):
        truth = phantom(s)
        target = save(root / f"sub{s}_full.nii.gz", rng.poisson(truth * 400) / 400.0)
        for counts in (20, 40):
            x = save(root / f"sub{s}_{counts}.nii.gz", rng.poisson(truth * counts) / counts)
            item = {"input": x.name, "target": target.name, "group": f"sub{s}", "level": counts}
            (val if s == 2 else items).append(item)
    (root / "pairs.json").write_text(json.dumps({"training": items, "validation": val}))
    with (root / "pairs.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["input", "target"])
        w.writeheader()
        w.writerows({"input": i["input"], "target": i["target"]} for i in items)
    return root


def test_manifest_groups_levels_and_normalises_from_the_input(own_data):
    pairs, prov = load_pairs(own_data / "pairs.json")
    assert [p.name for p in pairs] == ["sub0", "sub1"]
    assert [len(p.inputs) for p in pairs] == [2, 2] and pairs[0].levels == (20, 40)
    x, y, scales = pairs[0].volumes()
    assert x[0].shape == y.shape == SHAPE
    assert scales == [pytest.approx(intensity_scale(v)) for v in x]  # from the inputs alone
    assert prov["studies"][0]["inputs"][0].endswith("sub0_20.nii.gz")
    val, _ = load_pairs(own_data / "pairs.json", "validation")
    assert [p.name for p in val] == ["sub2"]
    csv_pairs, _ = load_pairs(own_data / "pairs.csv")
    assert len(csv_pairs) == 4 and all(len(p.inputs) == 1 for p in csv_pairs)  # no groups
    ds = NoiseAdaptiveDataset(pairs, patch_size=16)
    assert len(ds) == 2 * 2 * SHAPE[0]
    xi, yi = ds[0]
    assert xi.shape == (3, 16, 16) and yi.shape == (1, 16, 16)
    # input and target share the input's scale: the item is the raw pair times that scale
    full = NoiseAdaptiveDataset(pairs)
    xf, yf = full[1]
    np.testing.assert_allclose(yf[0].numpy(), y[1].numpy() * scales[0], rtol=1e-6)
    np.testing.assert_allclose(xf[1].numpy(), x[0][1].numpy() * scales[0], rtol=1e-6)


def test_train_finetune_and_denoise_own_images_through_the_cli(own_data, tmp_path):
    net, tuned, den = tmp_path / "net", tmp_path / "tuned", tmp_path / "den.nii.gz"
    assert main(["train", "--data", str(own_data / "pairs.json"), "--val-every", "3",
                 "--out", str(net), *FAST]) == 0
    meta = json.loads((net / "model.json").read_text())
    assert meta["data"]["source"] == "manifest" and meta["data"]["items"] == 24
    assert meta["data"]["validation"]["studies"][0]["group"] == "sub2"
    assert np.isfinite(meta["metrics"]["val_loss_final"])
    assert main(["finetune", "-c", str(net), "--data", str(own_data / "pairs.csv"),
                 "--method", "tgd", "--threshold", "0.5", "--out", str(tuned),
                 *FAST[:-6]]) == 0
    tmeta = json.loads((tuned / "model.json").read_text())
    assert tmeta["frozen_fingerprint"]["preserved"] is True
    assert tmeta["data"]["manifests"] == [str(own_data / "pairs.csv")]
    assert main(["denoise", str(own_data / "sub2_20.nii.gz"), str(den), "-c", str(tuned),
                 "--no-progress"]) == 0
    out = nib.load(str(den))
    assert out.shape == (32, 32, 6) and np.isfinite(out.get_fdata()).all()
    np.testing.assert_allclose(np.abs(np.diag(out.affine))[:3], SPACING)


class Pairs(torch.utils.data.Dataset):
    """A user's own Dataset of (input (3, H, W), target (1, H, W)) items."""

    def __init__(self, pairs):
        self.base = NoiseAdaptiveDataset(pairs, patch_size=16)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i]


def test_adapt_takes_a_manifest_or_any_dataset(own_data, tmp_path):
    net = tmp_path / "net"
    assert main(["train", "--data", str(own_data / "pairs.json"), "--out", str(net),
                 *FAST]) == 0
    s1 = adapt(net, own_data / "pairs.json", out=tmp_path / "a", iterations=2, batch_size=4,
               patch_size=16, progress=False)
    assert s1["frozen_preserved"] is True
    pairs, _ = load_pairs(own_data / "pairs.json")
    s2 = adapt(net, Pairs(pairs), method="ft", out=tmp_path / "b", iterations=2, batch_size=4,
               progress=False)
    assert (tmp_path / "b" / "model.safetensors").is_file() and s2["iterations"] == 2
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    assert meta["data"] == {"source": "dataset", "type": "Pairs", "items": len(Pairs(pairs))}
    with pytest.raises(ValueError, match="empty"):
        adapt(net, [], out=tmp_path / "c")
    with pytest.raises(ValueError, match="empty"):
        adapt(net, torch.utils.data.TensorDataset(torch.zeros(0, 3, 8, 8)), out=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def _manifest(tmp_path, items, name="m.json"):
    p = tmp_path / name
    p.write_text(json.dumps(items))
    return p


@pytest.mark.parametrize("case, match", [
    ("missing", "does not exist"),
    ("shape", "differ in shape"),
    ("spacing", "spacing"),
    ("nan", "NaN"),
    ("empty", "empty"),
    ("key", "unknown keys"),
    ("no_target", "missing"),
    ("two_targets", "more than one target"),
    ("labels", "class indices"),
    ("json", "not valid JSON"),
])
def test_bad_manifests_fail_with_a_clear_message(tmp_path, case, match):
    a = save(tmp_path / "a.nii.gz", phantom(0))
    b = save(tmp_path / "b.nii.gz", phantom(1))
    item = {"input": "a.nii.gz", "target": "b.nii.gz"}
    if case == "missing":
        items = [{**item, "target": "nope.nii.gz"}]
    elif case == "shape":
        save(tmp_path / "small.nii.gz", phantom(0)[:, :16])
        items = [{**item, "target": "small.nii.gz"}]
    elif case == "spacing":
        save(tmp_path / "c.nii.gz", phantom(1), spacing=(1.0, 1.0, 3.0))
        items = [{**item, "target": "c.nii.gz"}]
    elif case == "nan":
        bad = phantom(0)
        bad[0, 0, 0] = np.nan
        save(tmp_path / "a.nii.gz", bad)
        items = [item]
    elif case == "empty":
        items = []
    elif case == "key":
        items = [{**item, "inptu": "a.nii.gz"}]
    elif case == "no_target":
        items = [{"input": "a.nii.gz"}]
    elif case == "two_targets":
        items = [{**item, "group": "g"}, {"input": "b.nii.gz", "target": "a.nii.gz", "group": "g"}]
    elif case == "labels":
        save(tmp_path / "lab.nii.gz", phantom(2))  # floats, not classes
        items = [{**item, "labels": "lab.nii.gz"}]
    else:
        (tmp_path / "m.json").write_text("[{")
        items = None
    m = tmp_path / "m.json" if items is None else _manifest(tmp_path, items)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_pairs(m, labels=case == "labels")
    assert a.exists() and b.exists()  # nothing the user had is touched


def test_cli_names_the_manifest_problem_before_training(tmp_path, capsys, own_data):
    net = tmp_path / "net"
    assert main(["train", "--data", str(tmp_path / "none.json"), "--out", str(net), *FAST]) == 1
    assert "no such manifest" in capsys.readouterr().err
    assert main(["train", "--out", str(net), *FAST]) == 1
    assert "give --data" in capsys.readouterr().err
    assert not net.exists()


def test_write_manifest_round_trips_and_refuses_to_overwrite(tmp_path):
    a = save(tmp_path / "a.nii.gz", phantom(0))
    b = save(tmp_path / "b.nii.gz", phantom(1))
    m = write_manifest(tmp_path / "m.json", [{"input": a, "target": b, "level": 1}])
    assert json.loads(m.read_text())["training"][0]["input"] == "a.nii.gz"  # relative
    (item,) = read_manifest(m)
    assert item.input == a and item.level == 1
    with pytest.raises(FileExistsError):
        write_manifest(m, [{"input": a, "target": b}])


def test_paired_volumes_checks_its_inputs():
    good = phantom(0)
    with pytest.raises(ValueError, match="at least one input"):
        PairedVolumes([], good)
    with pytest.raises(ValueError, match="differ in shape"):
        PairedVolumes([good[:3]], good).volumes()
    with pytest.raises(ValueError, match="scale must be positive"):
        PairedVolumes([good], good, scales=0.0).volumes()
    with pytest.raises(ValueError, match="2 scales for 1 inputs"):
        PairedVolumes([good], good, scales=[1.0, 2.0]).volumes()
    with pytest.raises(ValueError, match="no class map"):
        PairedVolumes([good], good).class_volume()
