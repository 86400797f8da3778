"""``tgd reproduce`` and ``tgd experiment NAME``: the paper's experiments on simulated PET data,
written as a report folder (Markdown + HTML, figures, JSON/CSV numbers).

``--executor submitit`` sends each replicate to a cluster as one submitit job (Slurm, or
``--cluster local`` / ``debug`` on this machine); this process waits for the jobs and writes the
results and the report as with the local process pool (``tgd.repro.experiments.replicates``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tgd.repro.experiments.presets import PRESETS, get_preset
from tgd.repro.experiments.replicates import (
    CLUSTERS,
    EXECUTORS,
    ReplicateFailed,
    check_submitit_options,
    replicate_executor,
)
from tgd.repro.experiments.reproduce import EXPERIMENTS, PET_EXPERIMENTS, experiments_for
from tgd.repro.report import reproduce


def seed_list(text: str) -> tuple[int, ...]:
    """``--set base_seeds=0,1``: base seeds, comma-separated non-negative integers."""
    seeds = tuple(int(t) for t in text.split(",") if t.strip())
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"expected distinct non-negative integers separated by commas, got "
                         f"{text!r}")
    return seeds


OVERRIDABLE = {"base_seeds": seed_list, "shape": int, "n_slices": int, "realizations": int,
               "width": int, "scratch_iterations": int, "finetune_iterations": int,
               "online_iterations": int, "threads": int, "seed": int, "replicates": int,
               "workers": int,
               "weight_decay": float, "val_every": int, "scratch_epochs": int,
               "finetune_epochs": int, "online_epochs": int, "tod": str}
NON_NEGATIVE = {"seed", "weight_decay"}
# submitit option -> its flag (argparse dest = option name)
SUBMITIT_FLAGS = {"folder": "--submitit-folder", "cluster": "--cluster",
                  "slurm_partition": "--slurm-partition", "timeout_min": "--timeout-min",
                  "cpus_per_task": "--cpus-per-task", "gpus_per_node": "--gpus-per-node",
                  "mem_gb": "--mem-gb"}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="quick: 12 replicates, about 45 min on a 2-core CPU; medium: width 64, "
                        "hours on a 2-core CPU; paper: the paper's sizes (GPU); tiny: smoke "
                        "test (default quick)")
    p.add_argument("--out", default=None,
                   help="report folder (default runs/<preset>-<UTC time>); never replaced "
                        "unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset setting (" + ", ".join(OVERRIDABLE) + ")")
    c = p.add_argument_group("replicates on a cluster (submitit; docs/reproduction.md)")
    c.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: a process pool on this machine (default); submitit: each "
                        "replicate one submitit job, results and report written here")
    c.add_argument("--submitit-folder", dest="folder", metavar="DIR", default=None,
                   help="submitit's job scripts, pickles and logs (needed by --executor "
                        "submitit)")
    c.add_argument("--cluster", choices=CLUSTERS, default=None,
                   help="slurm (default): sbatch; local: processes on this machine; debug: "
                        "in this process")
    c.add_argument("--slurm-partition", dest="slurm_partition", metavar="P", default=None)
    c.add_argument("--timeout-min", dest="timeout_min", type=int, metavar="N", default=None,
                   help="time limit of each job (needed on Slurm)")
    c.add_argument("--cpus-per-task", dest="cpus_per_task", type=int, metavar="N",
                   default=None, help="default: the preset's threads")
    c.add_argument("--gpus-per-node", dest="gpus_per_node", type=int, metavar="N",
                   default=None, help="GPUs of each job (default none)")
    c.add_argument("--mem-gb", dest="mem_gb", type=float, metavar="N", default=None)


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce")
    _common(p)
    p.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, default=None,
                   help="run only these (default: every one the preset runs; tod needs the "
                        "preset's tod, e.g. --set tod=quick)")
    p.set_defaults(func=run)
    e = sub.add_parser("experiment")
    e.add_argument("name", choices=(*PET_EXPERIMENTS, "tod"),
                   help="tod: MSE-net / MSE-WGAN / TOD-Net on low-dose CT and PET (docs/tod.md; "
                   "presets tiny, quick, long, paper)")
    _common(e)
    e.set_defaults(func=run_one)


def _overrides(items: list[str]) -> dict:
    out = {}
    for it in items:
        key, sep, val = it.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in OVERRIDABLE:
            raise ValueError(f"--set takes KEY=VALUE with KEY in {sorted(OVERRIDABLE)}, "
                             f"got {it!r}")
        try:
            out[key] = OVERRIDABLE[key](val)
        except ValueError as err:
            raise ValueError(f"--set {key}: {err}") from err
        if key == "base_seeds":
            continue
        if key == "tod":
            out[key] = val.strip()
            if out[key]:  # "" leaves TOD-Net out
                from tgd.repro.experiments.tod import get_tod_preset

                get_tod_preset(out[key])
            continue
        if out[key] < (0 if key in NON_NEGATIVE else 1):
            raise ValueError(f"--set {key} must be positive, got {out[key]}")
    return out


def _executor(args) -> tuple[str, dict | None]:
    """The executor and submitit options of the flags, checked before any work."""
    given = {k: getattr(args, k, None) for k in SUBMITIT_FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    executor = getattr(args, "executor", "local")
    if executor != "submitit":
        if given:
            raise ValueError(f"{SUBMITIT_FLAGS[next(iter(given))]} needs --executor submitit")
        return executor, None
    if "folder" not in given:
        raise ValueError("--executor submitit needs --submitit-folder DIR (for submitit's "
                         "job scripts, pickles and logs)")
    try:
        return executor, check_submitit_options(given, names=SUBMITIT_FLAGS)
    except ImportError as err:
        raise ValueError(str(err)) from err


def _run(args, experiments=None) -> int:
    executor, submitit_options = _executor(args)
    preset = get_preset(args.preset, **_overrides(args.set))
    experiments = experiments_for(preset) if experiments is None else experiments
    out = Path(args.out) if args.out else Path("runs") / (
        f"{preset.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    t0 = time.perf_counter()
    try:
        with replicate_executor(executor, submitit_options):
            res = reproduce(preset, out, experiments=experiments, overwrite=args.overwrite,
                            progress=args.progress)
    except ReplicateFailed as err:  # the job's traceback is in the log the message names
        print(f"tgd {args.command}: error: {err}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    n = len(res["findings"]) if "findings" in res else None
    print(f"tgd {args.command}: report written to {out / 'report.md'} (and report.html) in "
          f"{wall / 60:.1f} min" + (f"; {n} findings checked" if n else ""))
    return 0


def run(args) -> int:
    return _run(args, tuple(dict.fromkeys(args.experiments)) if args.experiments else None)


def run_one(args) -> int:
    if args.name == "tod":
        if _executor(args)[0] != "local":
            raise ValueError("tgd experiment tod runs in this process; to send it to a cluster "
                             "use tgd reproduce --experiments tod --set tod=PRESET --executor "
                             "submitit")
        return _run_tod(args)
    return _run(args, (args.name,))


def _run_tod(args) -> int:
    from tgd.repro.experiments.tod import get_tod_preset, run_tod
    from tgd.repro.report.tod import write_tod_report

    over = {}
    for it in args.set:
        key, sep, val = it.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in ("seeds", "iterations", "pretrain_iterations", "modalities",
                                  "seg_iterations", "threads", "task_weight", "mse_weight"):
            raise ValueError(f"tod: --set takes seeds, modalities, iterations, "
                             f"pretrain_iterations, seg_iterations, threads, task_weight or "
                             f"mse_weight, got {it!r}")
        if key == "modalities":
            over[key] = tuple(v.strip() for v in val.split(","))
            bad = sorted(set(over[key]) - {"ct", "pet", "pet-tgd"})
            if bad or not over[key]:
                raise ValueError(f"tod: modalities are ct, pet, pet-tgd; got {val!r}")
        elif key == "seeds":
            over[key] = tuple(int(v) for v in val.split(","))
        else:
            over[key] = float(val) if key.endswith("weight") else int(val)
    preset = get_tod_preset(args.preset, **over)
    out = Path(args.out) if args.out else Path("runs") / (
        f"tod-{preset.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    res = run_tod(preset, out, overwrite=args.overwrite, progress=args.progress)
    write_tod_report(res, out)
    print(f"tgd experiment tod: {out / 'report.md'} written in {res['wall_time_s'] / 60:.1f} min")
    return 0
