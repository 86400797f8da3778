"""Run the reproduction: per independent replicate, simulate, pre-train the v1-net and v2-net
and run the experiments; decide the paper's findings on the replicates; return everything as
one dict (:func:`run_experiments`). :func:`tgd.repro.report.reproduce` runs it and writes the report
folder.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import tgd
from tgd.repro.experiments import finetuning, online, threshold
from tgd.repro.experiments.common import pretrain, simulate
from tgd.repro.experiments.findings import all_findings, quality_times
from tgd.repro.experiments.presets import Preset
from tgd.repro.experiments.replicates import aggregate, run_replicates

EXPERIMENTS = ("finetuning", "threshold", "online", "tod")
PET_EXPERIMENTS = ("finetuning", "threshold", "online")


def experiments_for(preset: Preset) -> tuple[str, ...]:
    """What ``tgd reproduce`` runs with ``preset``: every experiment, TOD-Net only when the
    preset names a TOD preset (``preset.tod``)."""
    return EXPERIMENTS if preset.tod else PET_EXPERIMENTS


def environment() -> dict:
    """Versions and machine, and the git commit of the code when run from a checkout."""
    env = {"tgd": tgd.__version__, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "platform": platform.platform(),
           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "cuda": torch.cuda.is_available()}
    try:
        import matplotlib
        import scipy

        env["scipy"], env["matplotlib"] = scipy.__version__, matplotlib.__version__
    except ImportError:  # pragma: no cover - both are dependencies
        pass
    root = Path(tgd.__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        env["git_commit"] = rev + (" (src/ modified)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def run_experiments(preset: Preset, experiments=None, *, progress: bool = True) -> dict:
    """Everything measured over ``preset.replicates`` independent replicates, as one dict:
    ``replicates`` (each replicate's own results), per experiment the rows aggregated over
    replicates (mean and 95 % interval) with replicate 0's example images, ``findings`` (each
    claim of the paper decided on the replicates), ``environment`` and ``timings``."""
    experiments = experiments_for(preset) if experiments is None else tuple(experiments)
    bad = sorted(set(experiments) - set(EXPERIMENTS))
    if bad or not experiments:
        raise ValueError(f"unknown experiments {bad}; choose from {EXPERIMENTS}")
    if preset.replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {preset.replicates}")
    if "tod" in experiments:
        if not preset.tod:
            raise ValueError("the tod experiment needs a TOD preset: set the preset's tod "
                             "(e.g. --set tod=quick)")
        from tgd.repro.experiments.tod import get_tod_preset

        get_tod_preset(preset.tod)  # an unknown name fails now, not after the other experiments
    env = environment()  # first: the commit of the code that runs, before anything changes
    t0 = time.perf_counter()
    reps = run_replicates(run_once, preset, experiments, progress=progress,
                          log=(lambda m: print(m, file=sys.stderr)) if progress else None)
    res = combine(preset, list(experiments), reps)
    res["environment"] = env
    res["timings"] = {"total_s": time.perf_counter() - t0,
                      "replicate_total_s": [r["timings"]["total_s"] for r in reps]}
    res["command"] = " ".join(["tgd", *sys.argv[1:]]) if sys.argv else None
    return res


def flag_diverged(exp: dict) -> None:
    """Mark the rows of nets whose training diverged in this replicate (``diverged``: True), so
    that no table averages them (:func:`aggregate`)."""
    training = exp.get("training")
    if not isinstance(training, list):  # the TOD experiment keeps other records there
        return
    bad = {t["name"] for t in training if isinstance(t, dict) and t.get("diverged")}
    for row in exp.get("rows", []):
        if row.get("net") in bad:
            row["diverged"] = True


def combine(preset: Preset, experiments: list[str], reps: list[dict]) -> dict:
    """The report's results from the replicates' (see :func:`run_experiments`)."""
    res: dict = {"preset": preset.to_dict(), "experiments": experiments,
                 "replicate_seeds": [r["seed"] for r in reps], "studies": reps[0]["studies"]}
    keys = {"finetuning": ("net", "test"), "online": ("net", "study_index"),
            "threshold": ("threshold",), "tod": ("modality", "method")}
    for name in experiments:
        first = reps[0][name]
        for r in reps:
            flag_diverged(r[name])
        res[name] = {"rows": aggregate([r[name]["rows"] for r in reps], keys[name]),
                     **{k: v for k, v in first.items() if k != "rows"}}
    if "finetuning" not in experiments and "pretraining" in reps[0]:
        res["pretraining"] = reps[0]["pretraining"]
    res["replicates"] = [{k: v for k, v in r.items() if k != "_nets"} for r in reps]
    for r in res["replicates"][1:]:  # the figures show replicate 0's images
        for name in experiments:
            r[name] = {k: v for k, v in r[name].items() if k not in ("examples", "example")}
    if "finetuning" in experiments:
        q0 = quality_times(reps[0]).get("v2-net")
        if q0 is not None:  # the training figure shows replicate 0's curves
            res["finetuning"]["target_val_loss"] = q0["target_mse"]
        res["time_to_quality"] = aggregate(
            [[{**q, "reached_pct": 100.0 * q["reached"]} for q in quality_times(r).values()]
             for r in reps], ("net",))
    res["findings"] = all_findings(res)
    return res


def run_once(preset: Preset, experiments, *, progress: bool = False) -> dict:
    """One replicate of the experiments with ``preset.seed`` (models kept under ``_nets``)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    res: dict = {"seed": preset.seed, "studies": None}
    nets: dict = {}
    if set(experiments) & set(PET_EXPERIMENTS):
        nets = _pet_experiments(preset, experiments, res, timings, progress)
    if "tod" in experiments:  # last, with its own studies and networks (CT and PET)
        from tgd.repro.experiments import tod

        t = time.perf_counter()
        res["tod"] = tod.run_replicate(tod.get_tod_preset(preset.tod), preset.seed)
        timings["tod_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    res["timings"] = timings
    res["_nets"] = nets
    return res


def _pet_experiments(preset: Preset, experiments, res: dict, timings: dict, progress: bool
                     ) -> dict:
    """The paper's PET experiments of one replicate into ``res``; returns their nets."""
    t = time.perf_counter()
    studies = simulate(preset, progress=progress)
    timings["simulate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    base = pretrain(preset, studies, progress=progress)
    timings["pretrain_s"] = time.perf_counter() - t
    res["studies"] = studies.describe()
    nets = {"v1-net": base.v1, "v2-net": base.v2}
    if "finetuning" in experiments:
        t = time.perf_counter()
        ft = finetuning.run(preset, studies, base, progress=progress)
        nets.update({k: v for k, v in ft.pop("nets").items() if v is not None})
        res["finetuning"] = ft
        timings["finetuning_s"] = time.perf_counter() - t
    else:
        res["pretraining"] = [base.v1.info, base.v2.info]
    if "threshold" in experiments:
        t = time.perf_counter()
        res["threshold"] = threshold.run(preset, studies, base, progress=progress)
        timings["threshold_s"] = time.perf_counter() - t
    if "online" in experiments:
        t = time.perf_counter()
        if "finetuning" not in experiments:
            nets.update(finetuning.adapt(preset, studies, base, progress=progress,
                                         which=("TGD-net (parameter)",)))
        res["online"] = online.run(preset, studies, nets, progress=progress)
        timings["online_s"] = time.perf_counter() - t
    return nets
