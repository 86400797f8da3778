"""One source of configuration: the option dataclasses generate the command line and the TOML
keys, and the library entry points run what the commands run."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from tgd.cli import build_parser, main
from tgd.commands.denoise import DENOISE
from tgd.commands.kse import KSE
from tgd.commands.online import ONLINE
from tgd.commands.train_segmenter import SEGMENTER
from tgd.repro.commands.simulate import SIMULATE
from tgd.repro.commands.simulate_ct import SIMULATE_CT
from tgd.training import TrainConfig, adapt, load_checkpoint, train_from_scratch
from tgd.training.driver import ADAPT, TRAIN
from tgd.training.options import DataOptions, OptionSet

COMMANDS = {"train": TRAIN, "finetune": ADAPT, "online": ONLINE, "kse": KSE, "denoise": DENOISE,
            "train-segmenter": SEGMENTER, "simulate": SIMULATE, "simulate-ct": SIMULATE_CT}
SMALL = {"batch_size": 4, "patch_size": 16, "progress": False, "iterations": 3}


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser(name)._actions
               if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_options_are_exactly_the_option_set(command):
    """Every flag is an option of the set (so a TOML key), every option of the set a flag."""
    options = COMMANDS[command]
    dests = {a.dest for a in _subparser(command)._actions
             if not isinstance(a, argparse._HelpAction)} - {"config"}
    assert dests == set(options.fields)
    for name, f in options.fields.items():
        assert f.metadata["help"], f"{command}: option {name} has no help"


def test_help_shows_the_dataclass_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser("finetune").parse_args(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {TrainConfig.lr})" in text
    assert f"(default {TrainConfig.batch_size})" in text
    assert "(default: the checkpoint's)" in text  # finetune's own default of --spatial-dims
    assert "(default: the 'validation' section of --data, if any)" in text  # --val-data


def test_defaults_are_the_fields_unless_the_entry_point_says_otherwise():
    common = set(TRAIN.defaults) & set(ADAPT.defaults)
    assert {k for k in common if TRAIN.defaults[k] != ADAPT.defaults[k]} == {"spatial_dims"}
    assert TRAIN.defaults["spatial_dims"] == TrainConfig.spatial_dims == 2
    assert ADAPT.defaults["spatial_dims"] is None
    assert TRAIN.defaults["data"] is DataOptions.data is None
    assert ONLINE.defaults["epochs"] == 150 and TRAIN.defaults["epochs"] is None


def test_resolve_order_and_errors():
    s = OptionSet(TrainConfig, DataOptions, epochs=5)
    opts = s.resolve({"lr": 0.5}, {"lr": 0.1, "batch_size": 2, "patch_size": "none"})
    assert opts["lr"] == 0.5 and opts["batch_size"] == 2 and opts["patch_size"] is None
    assert opts["epochs"] == 5 and opts["iterations"] is None
    # the user's run length replaces the default of the other
    assert s.resolve({"iterations": 7})["epochs"] is None
    assert s.resolve({}, {"iterations": 7}) == {**s.defaults, "iterations": 7, "epochs": None}
    with pytest.raises(ValueError, match="config file.*iteratons"):
        s.resolve({}, {"iteratons": 3})
    with pytest.raises(ValueError, match="unknown option.*lrr"):
        s.resolve({"lrr": 1})
    with pytest.raises(ValueError, match="amp"):
        s.resolve({}, {"amp": "fp16"})
    with pytest.raises(ValueError, match="defined twice"):
        OptionSet(TrainConfig, (TrainConfig, ("lr",)))


def test_online_config_rejects_options_it_does_not_take(tmp_path, capsys):
    cfg = tmp_path / "o.toml"
    cfg.write_text('data = ["pairs.json"]\n')  # online adapts to --half1/--half2, not manifests
    rc = main(["online", "-c", str(tmp_path), "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert rc == 1 and "data" in capsys.readouterr().err


def _tensors(path):
    ck = load_checkpoint(path)
    return {k: v for k, v in ck.tensors.items()}


def test_library_entry_points_give_the_commands_weights(tmp_path, sim_manifests):
    """train_from_scratch / adapt with keyword options and a TOML file reach bit-identical
    weights to tgd train / tgd finetune with the same options."""
    v1_data, v2_data = sim_manifests([0])["v1"], sim_manifests([3])["v2"]
    lib_v1, cli_v1 = tmp_path / "lib_v1", tmp_path / "cli_v1"
    train_from_scratch(v1_data, width=8, depth=4, fisher_samples=0, out=str(lib_v1), **SMALL)
    small_flags = ["--batch-size", "4", "--patch-size", "16", "--no-progress", "--iterations",
                   "3"]
    assert main(["train", "--data", v1_data, "--width", "8", "--depth", "4", "--fisher-samples",
                 "0", "--out", str(cli_v1), *small_flags]) == 0
    a, b = _tensors(lib_v1), _tensors(cli_v1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    toml = tmp_path / "tgd.toml"
    toml.write_text('threshold = 0.5\nbatch-size = 4\n[optim]\nlr = 0.002\n')
    lib, cli = tmp_path / "lib_tgd", tmp_path / "cli_tgd"
    summary = adapt(lib_v1, v2_data, method="tgd", config=toml, out=str(lib),
                    **{k: v for k, v in SMALL.items() if k != "batch_size"})
    assert summary["frozen_preserved"] is True
    assert main(["finetune", "-c", str(cli_v1), "--data", v2_data, "--method", "tgd",
                 "--config", str(toml), "--out", str(cli), *small_flags[2:]]) == 0
    a, b = _tensors(lib), _tensors(cli)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = load_checkpoint(lib).meta
    assert meta["config"]["lr"] == 0.002 and meta["plan"]["threshold"] == 0.5
    assert meta["config"]["batch_size"] == 4  # from the file
    with pytest.raises(ValueError, match="unknown option"):
        adapt(lib_v1, v2_data, out=str(tmp_path / "x"), iteratons=3)
    # one manifest given as a path is one manifest, not a list of characters
    with pytest.raises(FileNotFoundError, match="no such manifest: .*nowhere"):
        adapt(lib_v1, tmp_path / "nowhere.json", out=str(tmp_path / "y"), iterations=1)


def test_every_training_option_field_has_cli_metadata():
    for f in dataclasses.fields(TrainConfig):
        if f.name != "extra":
            assert f.metadata.get("help"), f.name
