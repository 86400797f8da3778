"""What only 3-D networks do through the commands (dims taken from the checkpoint, patch counts
on small data); the command tests shared with 2.5-D networks run over both dims in
test_cli.py."""

import pytest

from tgd.cli import main
from tgd.training import load_checkpoint

from ..conftest import CLI

FAST = CLI[3]["fast"]


def _data(sim_manifests, seed, version):
    return ["--data", sim_manifests([seed], **CLI[3]["sim"])[version]]


def test_contradicting_spatial_dims_is_a_clear_error(tmp_path, dn3, capsys, sim_manifests,
                                                     halves):
    common = [*_data(sim_manifests, 3, "v2"), *FAST, "--out", str(tmp_path / "o")]
    assert main(["finetune", "-c", str(dn3), "--spatial-dims", "2", *common]) == 1
    err = capsys.readouterr().err
    assert "spatial_dims=2" in err and "its network is 3-D" in err
    cfg = tmp_path / "c.toml"
    cfg.write_text("spatial-dims = 2\n")
    study = halves(1, n_slices=8)
    assert main(["online", "-c", str(dn3), "--config", str(cfg), "--half1", study["half1"],
                 "--half2", study["half2"], *FAST, "--out", str(tmp_path / "o2")]) == 1
    assert "its network is 3-D" in capsys.readouterr().err
    assert main(["finetune", "-c", str(dn3), "--spatial-dims", "3", *common]) == 0  # agrees
    # a 2-D net with a 3-D-only setting
    assert main(["train", *_data(sim_manifests, 0, "v1"), "--patch-depth", "4", "--width", "4",
                 "--depth", "2", *FAST, "--out", str(tmp_path / "p")]) == 1
    assert "patch_depth applies to 3-D networks only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--spatial-dims", "4", "--data", "m.json", "--out", str(tmp_path / "x")])
    assert e.value.code == 2


def test_small_3d_data_fills_one_batch_with_more_patches(tmp_path, dn3, halves):
    # 1 x 2 x 2 tiles per realization = 8 N2N items; the default batch of 16 needs more patches
    out = tmp_path / "online16"
    study = halves(2, n_slices=8, duration=60)
    assert main(["online", "-c", str(dn3), "--half1", study["half1"], "--half2", study["half2"],
                 "--patch-size", "16", "--iterations", "1", "--no-progress",
                 "--out", str(out)]) == 0
    m = load_checkpoint(out).meta
    assert m["config"]["batch_size"] == 16 and m["data"]["items"] == 16
