"""``tgd simulate``: simulate PET studies and write them as NIfTI + JSON, with one datalist
manifest per reconstruction version (``OUT/manifest_v1.json``, ...) for ``tgd train|finetune``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from tgd.commands.common import add_options, check_writable, field_names, parse
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


def check_targets(folders, names, overwrite: bool) -> None:
    """Before any study is simulated: refuse when a file to be written exists (the flag the
    user gives is --overwrite, not the library's ``overwrite=True``)."""
    if overwrite:
        return
    taken = [f / n for f in folders for n in names if (f / n).exists()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise FileExistsError(f"{taken[0]} exists{more}; refusing to overwrite it (use "
                              "--overwrite)")


def run(args: argparse.Namespace) -> int:
    from tgd.repro.studies import CLASSES_FILE, simulate_to_disk

    opts = parse(args, SIMULATE)
    out = check_writable(opts["out"], "--out", folder=True)
    seeds = study_seeds(opts)
    # every study folder holds these, whatever its versions and durations: an existing study
    # is refused before the first one is simulated (write_study would only see it after)
    fixed = ["labels.nii.gz", CLASSES_FILE, "activity.nii.gz", "mu.nii.gz", "study.json"]
    check_targets([out / f"study_{s:04d}" for s in seeds],
                  fixed + [n.replace(".nii.gz", ".json") for n in fixed[:4]],
                  opts["overwrite"])
    for s in seeds:
        folder = out / f"study_{s:04d}"
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"--out {out}: {folder} is a file, not a study folder")
    try:
        folders = simulate_to_disk(
            out, seeds, overwrite=opts["overwrite"], bmi=opts["bmi"],
            n_slices=opts["n_slices"], shape=opts["shape"], durations=opts["durations"],
            versions=opts["versions"], unseen=opts["unseen"], region=opts["region"],
        )
    except FileExistsError as err:  # an image file alone left in a study folder
        raise FileExistsError(str(err).replace("(pass overwrite=True)", "(use --overwrite)")
                              ) from err
    for f in folders:
        print(f)
    for m in sorted(Path(opts["out"]).glob("manifest_*.json")):
        print(f"manifest: {m}")
    return 0
