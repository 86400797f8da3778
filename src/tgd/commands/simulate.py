"""``tgd simulate``: simulate PET studies and write them as NIfTI + JSON (from the data branch)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    s = sub.add_parser("simulate", help="simulate PET studies and write them as NIfTI + JSON")
    s.add_argument("--out", required=True, help="output folder (one sub-folder per study)")
    s.add_argument("--seed", type=int, default=0, help="seed of the first study")
    s.add_argument("--n-studies", type=int, default=1)
    s.add_argument("--bmi", choices=("low", "high"), default="low")
    s.add_argument("--n-slices", type=int, default=32)
    s.add_argument("--shape", type=int, default=128, help="image matrix (FOV is 512 mm)")
    s.add_argument("--durations", type=float, nargs="+",
                   default=[30, 45, 60, 90, 120, 180, 600], help="seconds per bed")
    s.add_argument("--versions", nargs="+", default=["v1", "v2"])
    s.add_argument("--unseen", choices=("bladder", "catheter", "both"), default=None)
    s.add_argument("--region", choices=("pelvis", "abdomen", "thorax"), default=None)
    s.add_argument("--overwrite", action="store_true", help="replace existing files")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tgd.data.io import simulate_to_disk

    if args.n_studies < 1:
        raise ValueError("--n-studies must be >= 1")
    seeds = range(args.seed, args.seed + args.n_studies)
    folders = simulate_to_disk(
        args.out, seeds, overwrite=args.overwrite, bmi=args.bmi, n_slices=args.n_slices,
        shape=args.shape, durations=args.durations, versions=args.versions,
        unseen=args.unseen, region=args.region,
    )
    for f in folders:
        print(f)
    return 0
