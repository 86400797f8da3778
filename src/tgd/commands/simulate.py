"""``tgd simulate``: simulate PET studies and write them as NIfTI + JSON (from the data branch)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tgd.commands._common import add_options, field_names, parse
from tgd.data.study import DURATIONS
from tgd.training.config import option
from tgd.training.data import SIM_DEFAULTS
from tgd.training.options import OptionSet


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
    s = sub.add_parser("simulate", help="simulate PET studies and write them as NIfTI + JSON")
    add_options(s, SIMULATE, (*field_names(StudiesOptions), *field_names(PetOptions)))
    s.set_defaults(func=run)


def study_seeds(opts: dict) -> range:
    """The seeds of the studies to write: ``n_studies`` from ``seed`` on."""
    if opts["n_studies"] < 1:
        raise ValueError("--n-studies must be >= 1")
    return range(opts["seed"], opts["seed"] + opts["n_studies"])


def run(args: argparse.Namespace) -> int:
    from tgd.data.io import simulate_to_disk

    opts = parse(args, SIMULATE)
    folders = simulate_to_disk(
        opts["out"], study_seeds(opts), overwrite=opts["overwrite"], bmi=opts["bmi"],
        n_slices=opts["n_slices"], shape=opts["shape"], durations=opts["durations"],
        versions=opts["versions"], unseen=opts["unseen"], region=opts["region"],
    )
    for f in folders:
        print(f)
    return 0
