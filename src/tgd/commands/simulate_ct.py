"""``tgd simulate-ct``: low-dose CT studies from the phantoms, written as NIfTI in HU."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    s = sub.add_parser(
        "simulate-ct", help="simulate CT studies (normal/quarter/tenth dose) as NIfTI in HU",
        description="Simulate CT studies of the PET simulator's phantoms (HU at ~70 keV, liver "
        "and kidney tumours), transmission Poisson data at each dose level, FBP; writes "
        "OUT/ct_XXXX/ct_{dose}.nii.gz, ct_noise_free, ct_truth, labels and mask_{liver,kidney,"
        "lesion} with JSON sidecars (docs/tod.md).")
    s.add_argument("--out", required=True, help="output folder (one ct_XXXX folder per study)")
    s.add_argument("--seed", type=int, default=0, help="seed of the first study")
    s.add_argument("--n-studies", type=int, default=1)
    s.add_argument("--bmi", choices=("low", "high"), default="low")
    s.add_argument("--n-slices", type=int, default=32)
    s.add_argument("--shape", type=int, default=128, help="image matrix (FOV is 512 mm)")
    s.add_argument("--doses", nargs="+", default=["normal", "quarter", "tenth"],
                   choices=("normal", "quarter", "tenth"))
    s.add_argument("--window", default="hann", choices=("ramlak", "hann", "shepp-logan",
                                                        "cosine"), help="FBP apodisation")
    s.add_argument("--electronic-sd", type=float, default=0.0,
                   help="Gaussian electronic noise (counts per ray; default 0)")
    s.add_argument("--overwrite", action="store_true", help="replace existing files")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tgd.data.ct import simulate_ct, write_ct_study

    if args.n_studies < 1:
        raise ValueError("--n-studies must be >= 1")
    for seed in range(args.seed, args.seed + args.n_studies):
        st = simulate_ct(seed, doses=tuple(args.doses), n_slices=args.n_slices, shape=args.shape,
                         bmi=args.bmi, window=args.window, electronic_sd=args.electronic_sd)
        folder = Path(args.out) / f"ct_{seed:04d}"
        write_ct_study(st, folder, overwrite=args.overwrite)
        print(folder)
    return 0
