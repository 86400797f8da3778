"""Independent replicates of the experiments, run in parallel processes, and their tables.

Replicate ``r`` runs every experiment with the preset's seed replaced by
``preset.replicate_seeds()[r]``: new phantoms, noise, network initialisation, crops and batch
order. Replicates run in ``preset.workers`` processes (default: one per CPU, at most one per
replicate), each with ``preset.threads`` torch threads; a single worker runs them in this
process. Results come back as plain data (no models).

:func:`aggregate` turns the per-replicate rows of one experiment into one row per key (net and
test set, or threshold) holding, for every numeric metric, the mean over replicates and its
95 % Student-t interval ``<metric>_ci = [lo, hi]``, plus ``n_replicates``.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import torch

from tgd.repro.experiments.presets import Preset
from tgd.repro.statistics import mean_ci

# per-realization lists and bookkeeping that are not metrics to average
NOT_METRICS = {"realizations", "study", "threshold", "n_replicates", "n_diverged", "diverged"}


RunOnce = Callable[..., dict]


def run_replicate(run_once: RunOnce, preset: Preset, experiments: Sequence[str],
                  progress: bool = False) -> dict:
    """``run_once(preset, experiments, progress=...)`` for one replicate (``preset.seed`` is its
    seed) with ``preset.threads`` torch threads; the models it returns under ``_nets`` dropped."""
    threads = torch.get_num_threads()
    if preset.threads:
        torch.set_num_threads(preset.threads)
    try:
        res = run_once(preset, experiments, progress=progress)
    finally:
        torch.set_num_threads(threads)
    res.pop("_nets", None)
    return res


def run_replicates(run_once: RunOnce, preset: Preset, experiments: Sequence[str], *,
                   progress: bool = True,
                   log: Callable[[str], None] | None = print) -> list[dict]:
    """Every replicate's results, in seed order. ``run_once`` must be a module-level function
    (worker processes receive it by reference)."""
    seeds = preset.replicate_seeds()
    presets = [dataclasses.replace(preset, seed=s) for s in seeds]
    workers = preset.workers or min(len(seeds), os.cpu_count() or 1)
    t0 = time.perf_counter()
    out: dict[int, dict] = {}

    def done(i: int) -> None:
        if log is not None:
            log(f"replicate {i + 1}/{len(seeds)} (seed {seeds[i]}) done after "
                f"{(time.perf_counter() - t0) / 60:.1f} min")

    if workers <= 1:
        for i, p in enumerate(presets):
            out[i] = run_replicate(run_once, p, experiments, progress)
            done(i)
    else:
        # spawn: a forked child would inherit this process's torch thread pools
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(run_replicate, run_once, p, tuple(experiments), False): i
                       for i, p in enumerate(presets)}
            for f in as_completed(futures):
                out[futures[f]] = f.result()
                done(futures[f])
    return [out[i] for i in range(len(seeds))]


def _numeric(v) -> bool:
    return isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool)


def aggregate(rows_per_replicate: Sequence[Sequence[dict]], keys: Sequence[str]) -> list[dict]:
    """One row per value of ``keys`` (in first-seen order): the identifying fields, the mean
    and ``_ci`` of every numeric field over the replicates that have the row, and
    ``n_replicates``. Non-finite values (e.g. an infinite PSNR) are left out of the mean. Rows
    flagged ``diverged`` (a diverged training run's) never enter a mean: they are counted in
    ``n_diverged``, and a key whose every row diverged keeps only its identifying fields."""
    groups: dict[tuple, list[dict]] = {}
    diverged: dict[tuple, int] = {}
    for rows in rows_per_replicate:
        for r in rows:
            key = tuple(r.get(k) for k in keys)
            groups.setdefault(key, [])
            if r.get("diverged"):
                diverged[key] = diverged.get(key, 0) + 1
            else:
                groups[key].append(r)
    out = []
    for key, rs in groups.items():
        row: dict = dict(zip(keys, key, strict=True))
        row["n_replicates"] = len(rs)
        row["n_diverged"] = diverged.get(key, 0)
        if not rs:
            out.append(row)
            continue
        names = [k for k, v in rs[0].items() if k not in keys and k not in NOT_METRICS
                 and _numeric(v)]
        for k in names:
            vals = [float(r[k]) for r in rs if k in r and _numeric(r[k])]
            fin = [v for v in vals if math.isfinite(v)]
            if not fin:
                row[k] = vals[0] if vals else math.nan
                continue
            m, lo, hi = mean_ci(fin)
            row[k] = m
            row[f"{k}_ci"] = [lo, hi]
        for k, v in rs[0].items():  # identifying text fields (e.g. version, bmi)
            if k not in row and isinstance(v, str):
                row[k] = v
        out.append(row)
    return out
