"""``tgd simulate``: simulate PET studies and write them as NIfTI + JSON, with one datalist
manifest per reconstruction version (``OUT/manifest_v1.json``, ...) for ``tgd train|finetune``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from tgd.commands.common import add_options, field_names, parse
from tgd.repro.sim.study import DURATIONS
from tgd.training.config import option
from tgd.training.options import OptionSet

SIM_DEFAULTS = {"n_slices": 32, "shape": 128, "bmi": "low"}


@dataclass
class StudiesOptions:
    """Which phantoms ``tgd simulate`` and ``tgd simulate-ct`` write, and where."""

    out: str | None = option(None, "output folder (one sub-folder per study)", required=True)
    seed: int = option(0, "seed of the first study", show_default=False)
    n_studies: int = option(1, "number of studies (seeds seed, seed + 1, ...)")
    bmi: str = option(SIM_DEFAULTS["bmi"], "BMI class", choices=("low", "high"))
    n_slices: int = option(SIM_DEFAULTS["n_slices"], "slices per study")
    shape: int = option(SIM_DEFAULTS["shape"], "image matrix (FOV is 512 mm)")
    overwrite: bool = option(False, "replace existing files")


@dataclass
class PetOptions:
    """What ``tgd simulate`` reconstructs."""

    durations: list[float] = option(factory=lambda: list(DURATIONS), help="seconds per bed")
    versions: list[str] = option(factory=lambda: ["v1", "v2"], help="reconstruction versions")
    unseen: str | None = option(None, "add a feature absent from training",
                                choices=("bladder", "catheter", "both"))
    region: str | None = option(None, "body region of the slices",
                                choices=("pelvis", "abdomen", "thorax"))


SIMULATE = OptionSet(StudiesOptions, PetOptions)


def add_parser(sub) -> None:
    s = sub.add_parser(
        "simulate",
        description="Simulate PET studies into OUT/study_<seed>/ and write "
        "OUT/manifest_<version>.json over every study folder in OUT (rewritten each time): "
        "inputs at the shorter durations, the 600-s target, the task classes as labels; train "
        "on them with tgd train --data OUT/manifest_v1.json.",
    )
    add_options(s, SIMULATE, (*field_names(StudiesOptions), *field_names(PetOptions)))
    s.set_defaults(func=run)


def study_seeds(opts: dict) -> range:
    """The seeds of the studies to write: ``n_studies`` from ``seed`` on."""
    if opts["n_studies"] < 1:
        raise ValueError("--n-studies must be >= 1")
    return range(opts["seed"], opts["seed"] + opts["n_studies"])


def run(args: argparse.Namespace) -> int:
    from tgd.repro.studies import simulate_to_disk

    opts = parse(args, SIMULATE)
    folders = simulate_to_disk(
        opts["out"], study_seeds(opts), overwrite=opts["overwrite"], bmi=opts["bmi"],
        n_slices=opts["n_slices"], shape=opts["shape"], durations=opts["durations"],
        versions=opts["versions"], unseen=opts["unseen"], region=opts["region"],
    )
    for f in folders:
        print(f)
    for m in sorted(Path(opts["out"]).glob("manifest_*.json")):
        print(f"manifest: {m}")
    return 0
