"""Independent replicates of the experiments, run in parallel processes, and their tables.

Replicate ``r`` runs every experiment with the preset's seed replaced by
``preset.replicate_seeds()[r]``: new phantoms, noise, network initialisation, crops and batch
order. Replicates run in ``preset.workers`` processes (default: one per CPU, at most one per
replicate), each with ``preset.threads`` torch threads; a single worker runs them in this
process. Results come back as plain data (no models).

With ``executor="submitit"`` every replicate is instead one job of `submitit
<https://github.com/facebookincubator/submitit>`_ (``pip install 'tgd[cluster]'``): on Slurm
(``cluster="slurm"``), as local subprocesses (``"local"``) or in this process (``"debug"``).
The submitting process waits for the jobs and gets the same plain dicts back, in seed order;
:func:`replicate_executor` sets the executor for the ``run_replicates`` calls in a block (how
``tgd reproduce --executor submitit`` reaches the reproduction without changing its signature).

:func:`aggregate` turns the per-replicate rows of one experiment into one row per key (net and
test set, or threshold) holding, for every numeric metric, the mean over replicates and its
95 % Student-t interval ``<metric>_ci = [lo, hi]``, plus ``n_replicates``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from tgd.repro.experiments.presets import Preset
from tgd.repro.statistics import mean_ci

# per-realization lists and bookkeeping that are not metrics to average
NOT_METRICS = {"realizations", "study", "threshold", "n_replicates", "n_diverged", "diverged"}


RunOnce = Callable[..., dict]

EXECUTORS = ("local", "submitit")
CLUSTERS = ("slurm", "local", "debug")  # submitit's AutoExecutor(cluster=...)
# the submitit options tgd checks itself (any other key goes to executor.update_parameters as is,
# e.g. slurm_account, slurm_qos, slurm_constraint; submitit rejects unknown names)
SUBMITIT_NUMBERS = {"timeout_min": (int, "a positive whole number"),
                    "cpus_per_task": (int, "a positive whole number"),
                    "gpus_per_node": (int, "a whole number >= 0"),
                    "mem_gb": (float, "a positive number")}
# submitit's own job time-outs are 5 min (Slurm) and 2 min (local): far below one replicate
LOCAL_TIMEOUT_MIN = 7 * 24 * 60
POLL_S = {"slurm": 15.0, "local": 0.5, "debug": 0.0}
INSTALL_HINT = "pip install 'tgd[cluster]'"

_EXECUTOR: contextvars.ContextVar[tuple[str, dict | None]] = contextvars.ContextVar(
    "tgd_replicate_executor", default=("local", None))


class ReplicateFailed(RuntimeError):
    """A replicate's submitit job failed; the message names the replicate, its seed and the
    job's stderr log (``log``)."""

    def __init__(self, message: str, *, index: int, seed: int, log: Path | None):
        super().__init__(message)
        self.index, self.seed, self.log = index, seed, log


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


@contextlib.contextmanager
def replicate_executor(executor: str = "local",
                       submitit_options: Mapping | None = None) -> Iterator[None]:
    """Within the block, :func:`run_replicates` calls that name no executor use ``executor``
    (and ``submitit_options``); checked on entry (:func:`check_submitit_options`)."""
    opts = _check_executor(executor, submitit_options)
    token = _EXECUTOR.set((executor, opts))
    try:
        yield
    finally:
        _EXECUTOR.reset(token)


def current_executor() -> tuple[str, dict | None]:
    """The executor and submitit options :func:`run_replicates` uses when it names none."""
    return _EXECUTOR.get()


def run_replicates(run_once: RunOnce, preset: Preset, experiments: Sequence[str], *,
                   progress: bool = True,
                   log: Callable[[str], None] | None = print,
                   executor: str | None = None,
                   submitit_options: Mapping | None = None) -> list[dict]:
    """Every replicate's results, in seed order. ``run_once`` must be a module-level function
    (worker processes and submitit jobs receive it by reference).

    ``executor``: ``"local"`` runs the replicates in ``preset.workers`` spawned processes (one
    worker: in this process); ``"submitit"`` runs each replicate as one submitit job with
    ``submitit_options`` (:func:`check_submitit_options`: ``folder``, ``cluster``, and
    parameters of ``executor.update_parameters`` such as ``timeout_min``,
    ``slurm_partition``, ``cpus_per_task``, ``gpus_per_node``, ``mem_gb``), waits for them and
    raises :class:`ReplicateFailed` (the other jobs cancelled) when one fails. ``None``: what
    :func:`replicate_executor` set, else ``"local"``."""
    if executor is None:
        if submitit_options is not None:
            raise ValueError("submitit_options need executor='submitit'")
        executor, submitit_options = current_executor()
    opts = _check_executor(executor, submitit_options)
    seeds = preset.replicate_seeds()
    presets = [dataclasses.replace(preset, seed=s) for s in seeds]
    workers = preset.workers or min(len(seeds), os.cpu_count() or 1)
    t0 = time.perf_counter()
    out: dict[int, dict] = {}

    def done(i: int) -> None:
        if log is not None:
            log(f"replicate {i + 1}/{len(seeds)} (seed {seeds[i]}) done after "
                f"{(time.perf_counter() - t0) / 60:.1f} min")

    if executor == "submitit":
        assert opts is not None
        out = _run_submitit(run_once, presets, tuple(experiments), opts, done, log)
    elif workers <= 1:
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


def _check_executor(executor: str, submitit_options: Mapping | None) -> dict | None:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if executor == "local":
        if submitit_options:
            raise ValueError("submitit_options need executor='submitit'")
        return None
    return check_submitit_options(submitit_options or {})


def _import_submitit():
    try:
        import submitit
    except ImportError as err:
        raise ImportError(f"the submitit executor needs the submitit package: {INSTALL_HINT}"
                          ) from err
    return submitit


def check_submitit_options(options: Mapping, names: Mapping[str, str] | None = None) -> dict:
    """``options`` checked and completed, before any job: ``folder`` (required; created, must be
    writable), ``cluster`` (one of :data:`CLUSTERS`, default ``"slurm"``, which needs ``sbatch``,
    ``srun`` and an explicit ``timeout_min``), the numbers of :data:`SUBMITIT_NUMBERS` positive
    (``gpus_per_node`` may be 0), and every other key a parameter submitit knows. ``names``
    says how errors name a key (e.g. ``{"folder": "--submitit-folder"}`` for the command line).
    Raises ValueError (ImportError without submitit)."""
    def name(key: str) -> str:
        return (names or {}).get(key, f"submitit_options[{key!r}]")

    if not isinstance(options, Mapping):
        raise ValueError(f"submitit_options must be a dict, got {type(options).__name__}")
    opts = {k: v for k, v in options.items() if v is not None}
    if not opts.get("folder"):
        raise ValueError(f"the submitit executor needs {name('folder')} (where submitit keeps "
                         "its job scripts, pickles and logs)")
    opts.setdefault("cluster", "slurm")
    if opts["cluster"] not in CLUSTERS:
        raise ValueError(f"{name('cluster')} must be one of {', '.join(CLUSTERS)}, got "
                         f"{opts['cluster']!r}")
    for key, (kind, what) in SUBMITIT_NUMBERS.items():
        v = opts.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, kind | int)
                              or v < 0 or (v == 0 and key != "gpus_per_node")):
            raise ValueError(f"{name(key)} must be {what}, got {v!r}")
    if opts["cluster"] == "slurm":
        if "timeout_min" not in opts:
            raise ValueError(f"{name('cluster')} slurm (the default) needs "
                             f"{name('timeout_min')}: submitit's default time limit is 5 "
                             "minutes, shorter than a replicate")
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if missing:
            raise ValueError(f"{name('cluster')} slurm needs Slurm's sbatch and srun on PATH "
                             f"({' and '.join(missing)} not found here); cluster 'local' runs "
                             "the jobs as processes on this machine")
    else:
        opts.setdefault("timeout_min", LOCAL_TIMEOUT_MIN)
    opts["folder"] = _writable_folder(opts["folder"], name("folder"))
    _submitit_executor(opts)  # submitit's own checks: unknown parameters, their types
    return opts


def _writable_folder(folder, label: str) -> Path:
    """``folder`` absolute, its part before any of submitit's placeholders (``%j``) created and
    checked writable."""
    path = Path(folder).expanduser().absolute()
    base = Path(path.anchor)
    for part in path.parts[1:]:
        if "%" in part:
            break
        base /= part
    try:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise ValueError(f"{label} {folder}: not a writable folder "
                         f"({err.strerror or err})") from None
    return path


def _submitit_executor(opts: Mapping, **defaults):
    """The AutoExecutor of ``opts`` (``defaults`` for the parameters ``opts`` leaves out)."""
    submitit = _import_submitit()
    params = {**defaults, **{k: v for k, v in opts.items() if k not in ("folder", "cluster")}}
    try:
        ex = submitit.AutoExecutor(folder=opts["folder"], cluster=opts["cluster"])
        ex.update_parameters(**params)
    except (NameError, AssertionError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"submitit rejects the options {params}: "
                         f"{str(err).splitlines()[0] if str(err) else err!r}") from err
    return ex


def _run_submitit(run_once: RunOnce, presets: list[Preset], experiments: tuple[str, ...],
                  opts: dict, done: Callable[[int], None],
                  log: Callable[[str], None] | None) -> dict[int, dict]:
    """Each replicate one job (a Slurm job array on Slurm); results by replicate index. The
    first failed job raises :class:`ReplicateFailed`; the others are cancelled then, and when
    the wait is interrupted."""
    n = len(presets)
    defaults = {"name": f"tgd-{presets[0].name}"}
    if presets[0].threads:  # one core per torch thread of the replicate
        defaults["cpus_per_task"] = presets[0].threads
    ex = _submitit_executor(opts, **defaults)
    jobs = ex.map_array(run_replicate, [run_once] * n, presets, [experiments] * n,
                        [False] * n)
    if log is not None:
        log(f"{n} replicates submitted as submitit jobs ({opts['cluster']}: "
            f"{', '.join(str(j.job_id) for j in jobs)}); logs in {opts['folder']}")
    out: dict[int, dict] = {}
    pending = list(range(n))
    try:
        while pending:
            for i in list(pending):
                job = jobs[i]
                # a debug job runs when asked; its done() drops into pdb on an error
                if opts["cluster"] != "debug" and not job.done():
                    continue
                pending.remove(i)
                err = job.exception()
                if err is not None:
                    # a debug job ran in this process: its traceback is the error's own
                    log_path = None if opts["cluster"] == "debug" else job.paths.stderr
                    raise ReplicateFailed(
                        f"replicate {i + 1}/{n} (seed {presets[i].seed}) failed in submitit "
                        f"job {job.job_id}: {_summary(err)}; its log: "
                        f"{log_path or 'none (the debug cluster runs jobs in this process)'}",
                        index=i, seed=presets[i].seed, log=log_path) from err
                out[i] = job.result()
                done(i)
            if pending:
                time.sleep(POLL_S[opts["cluster"]])
    except BaseException:
        for i in pending:
            with contextlib.suppress(Exception):
                jobs[i].cancel(check=False)
        raise
    return out


def _summary(err: BaseException) -> str:
    """One line of a job's error: the last line of its traceback when it has one (submitit's
    FailedJobError), else its first lines (a job that ended without a result, e.g. TIMEOUT)."""
    from submitit.core.utils import UncompletedJobError

    if not isinstance(err, UncompletedJobError):  # the debug executor's own exception
        return (f"{type(err).__name__}: {err}".splitlines() or [""])[0]
    lines = [ln.strip() for ln in str(err).splitlines()]
    start = next((k for k, ln in enumerate(lines) if ln.startswith("Traceback")), None)
    if start is not None:
        trace = []
        for ln in lines[start:]:
            if ln.startswith("-----"):
                break
            if ln:
                trace.append(ln)
        return trace[-1]
    return " ".join(ln for ln in lines[:2] if ln)[:300]


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
