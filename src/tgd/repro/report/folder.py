"""The report folder on disk: :func:`write_report_folder` writes the whole folder under a
temporary name next to ``out`` and renames it at the end, so an interrupted run leaves no
half-written report; an existing ``out`` is refused unless ``overwrite``, and then only if it
looks like a report folder. ``tgd report`` and ``tgd reproduce`` (:func:`reproduce`) both write
through it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tgd.repro.report.writer import write_report

if TYPE_CHECKING:
    from tgd.repro.experiments.presets import Preset

REPORT_MARKERS = ("results.json", "report.md")


def check_report_folder(out: str | Path, overwrite: bool) -> None:
    """Refuse to replace ``out`` unless ``overwrite`` and it is a report folder (an empty
    folder or a missing one is always free)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
        if not out.is_dir() or not any((out / m).exists() for m in REPORT_MARKERS):
            raise FileExistsError(f"{out} exists and is not a tgd report folder (no "
                                  f"{' or '.join(REPORT_MARKERS)}); not replacing it")


def write_report_folder(res: dict, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the report of ``res`` (:func:`tgd.repro.report.write_report`) as the folder ``out``,
    all or nothing; returns ``out``."""
    out = Path(out)
    check_report_folder(out, overwrite)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_report(res, tmp)
        check_report_folder(out, overwrite)  # still safe to replace (nothing appeared meanwhile)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def reproduce(preset: Preset, out: str | Path, *, experiments: Sequence[str] | None = None,
              overwrite: bool = False, progress: bool = True) -> dict:
    """Run the experiments (:func:`tgd.repro.experiments.reproduce.run_experiments`; those of
    ``experiments_for(preset)`` unless ``experiments`` names some) and write the report folder
    ``out``; returns the results. ``out`` is checked before the run starts."""
    # imported here so that drawing figures (tgd.repro.report) does not load the experiments
    from tgd.repro.experiments.reproduce import experiments_for, run_experiments

    experiments = experiments_for(preset) if experiments is None else experiments
    out = Path(out)
    check_report_folder(out, overwrite)
    t0 = time.perf_counter()
    res = run_experiments(preset, experiments, progress=progress)
    res["timings"]["wall_s"] = time.perf_counter() - t0
    write_report_folder(res, out, overwrite=overwrite)
    return res
