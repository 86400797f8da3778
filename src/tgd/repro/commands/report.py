"""``tgd report RESULTS_JSON --out DIR``: write the report folder again from a results.json
(tables, findings, plots; the image grids need the images, which results.json does not
keep)."""

from __future__ import annotations

from pathlib import Path

from tgd.repro.report import load_results, write_report_folder


def add_parser(sub) -> None:
    p = sub.add_parser("report")
    p.add_argument("results", type=Path, help="results.json of an earlier tgd reproduce")
    p.add_argument("--out", type=Path, required=True, help="report folder to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing report folder")
    p.set_defaults(func=run)


def run(args) -> int:
    src, out = args.results, args.out
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist")
    if out.resolve() == src.resolve().parent:
        raise ValueError(f"--out {out} is the folder {src.name} is in: writing there would "
                         "replace its image figures, which results.json cannot rebuild; "
                         "choose another folder")
    write_report_folder(load_results(src), out, overwrite=args.overwrite)
    print(f"tgd report: {out / 'report.md'} and {out / 'report.html'} written from {src}")
    return 0
