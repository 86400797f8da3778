"""``tgd simulate-ct``: low-dose CT studies from the phantoms, written as NIfTI in HU."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tgd.commands.common import add_options, check_writable, field_names, parse
from tgd.repro.commands.simulate import StudiesOptions, check_targets, study_seeds
from tgd.training.config import option
from tgd.training.options import OptionSet

DOSES = ("normal", "quarter", "tenth")


@dataclass
class CtOptions:
    """What ``tgd simulate-ct`` acquires and reconstructs."""

    doses: list[str] = option(factory=lambda: list(DOSES), help="dose levels",
                              choices=DOSES)
    window: str = option("hann", "FBP apodisation",
                         choices=("ramlak", "hann", "shepp-logan", "cosine"))
    electronic_sd: float = option(0.0, "Gaussian electronic noise (counts per ray)")


SIMULATE_CT = OptionSet(StudiesOptions, CtOptions)


def add_parser(sub) -> None:
    s = sub.add_parser(
        "simulate-ct",
        description="Simulate CT studies of the PET simulator's phantoms (HU at ~70 keV, liver "
        "and kidney tumours), transmission Poisson data at each dose level, FBP; writes "
        "OUT/ct_XXXX/ct_{dose}.nii.gz, ct_noise_free, ct_truth, labels and mask_{liver,kidney,"
        "lesion} with JSON sidecars (docs/tod.md).")
    add_options(s, SIMULATE_CT, (*field_names(StudiesOptions), *field_names(CtOptions)))
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tgd.repro.sim.ct import simulate_ct, write_ct_study

    opts = parse(args, SIMULATE_CT)
    out = check_writable(opts["out"], "--out", folder=True)
    seeds = study_seeds(opts)
    # the files write_ct_study checks, checked before any study is simulated
    names = [f"ct_{d}.nii.gz" for d in opts["doses"]] + [
        "ct_noise_free.nii.gz", "ct_truth.nii.gz", "labels.nii.gz"]
    check_targets([out / f"ct_{s:04d}" for s in seeds], names, opts["overwrite"])
    for seed in seeds:
        st = simulate_ct(seed, doses=tuple(opts["doses"]), n_slices=opts["n_slices"],
                         shape=opts["shape"], bmi=opts["bmi"], window=opts["window"],
                         electronic_sd=opts["electronic_sd"])
        folder = out / f"ct_{seed:04d}"
        write_ct_study(st, folder, overwrite=opts["overwrite"])
        print(folder)
    return 0
