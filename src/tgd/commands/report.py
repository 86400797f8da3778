"""``tgd report RESULTS_JSON --out DIR``: write the report folder again from a results.json
(tables, findings, plots; the image grids need the images, which results.json does not
keep)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tgd.experiments.reproduce import check_out
from tgd.report import load_results, write_report


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write a report folder (Markdown, self-contained HTML, "
                                      "figures) from a results.json")
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
    res = load_results(src)
    check_out(out, args.overwrite)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_report(res, tmp)
        check_out(out, args.overwrite)  # nothing appeared meanwhile
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"tgd report: {out / 'report.md'} and {out / 'report.html'} written from {src}")
    return 0
