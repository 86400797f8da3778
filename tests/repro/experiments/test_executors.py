"""Replicates as submitit jobs (``run_replicates(executor="submitit")``, ``tgd reproduce
--executor submitit``), checked with submitit's local executor (each job a process on this
machine) and its debug executor (in this process): the same numbers as the in-process path, a
failed job named with its seed and log, and bad flags refused before any work."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tgd.cli import main
from tgd.repro.experiments import replicates
from tgd.repro.experiments.presets import get_preset
from tgd.repro.experiments.replicates import ReplicateFailed, run_replicates
from tgd.repro.experiments.reproduce import PET_EXPERIMENTS, run_once
from tgd.repro.report.writer import load_results

submitit = pytest.importorskip("submitit")

TINY = get_preset("tiny")
# what depends on the clock (bench/tiny_digest.py's idea): durations and the clock column of
# validation curves
VOLATILE_KEYS = {"timings", "train_time_s", "wall_s", "seconds", "seconds_ci"}


def strip(x):
    if isinstance(x, dict):
        return {k: ([[row[0], *row[2:]] for row in v] if k == "val_curve" else strip(v))
                for k, v in x.items() if k not in VOLATILE_KEYS and not k.endswith("_s")}
    if isinstance(x, list | tuple):
        return type(x)(strip(v) for v in x)
    return x


def assert_same(a, b, where: str = "results") -> int:
    """``a == b`` down to every number, arrays bit for bit; returns how many numbers."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        return sum(assert_same(a[k], b[k], f"{where}.{k}") for k in a)
    if isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        return sum(assert_same(x, y, f"{where}[{i}]")
                   for i, (x, y) in enumerate(zip(a, b, strict=True)))
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=True), where
        return a.size
    assert type(a) is type(b), where
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
    return int(isinstance(a, int | float) and not isinstance(a, bool))


@pytest.mark.slow
def test_local_submitit_jobs_give_the_in_process_results(tmp_path):
    """The tiny preset's replicates (every PET experiment) as two submitit jobs in their own
    processes equal the in-process path (one worker) on every non-clock number."""
    assert TINY.workers == 1  # the reference really runs in this process
    ref = run_replicates(run_once, TINY, PET_EXPERIMENTS, progress=False, log=None)
    lines: list[str] = []
    got = run_replicates(run_once, TINY, PET_EXPERIMENTS, progress=False, log=lines.append,
                         executor="submitit",
                         submitit_options={"folder": tmp_path / "jobs", "cluster": "local"})
    assert [r["seed"] for r in got] == TINY.replicate_seeds() == [0, 1]
    assert all("_nets" not in r for r in got)
    assert assert_same(strip(ref), strip(got)) > 1000
    # the two replicates differ, so the comparison above can tell seeds apart
    assert strip(got[0]["finetuning"]["rows"]) != strip(got[1]["finetuning"]["rows"])
    # each replicate was one job of its own, logged where the options said
    assert lines[0].startswith("2 replicates submitted as submitit jobs (local:")
    assert len(list((tmp_path / "jobs").glob("*_result.pkl"))) == 2
    assert [m.split(" done")[0] for m in lines[1:]] in (
        ["replicate 1/2 (seed 0)", "replicate 2/2 (seed 1)"],
        ["replicate 2/2 (seed 1)", "replicate 1/2 (seed 0)"])


def fail_at_seed_1(preset, experiments, *, progress=False):
    """A ``run_once`` whose replicate with seed 1 raises."""
    if preset.seed == 1:
        raise RuntimeError(f"boom in replicate seed {preset.seed}")
    return {"seed": preset.seed, "rows": [{"x": 2.0 * preset.seed}]}


@pytest.fixture
def stub_by_value():
    """submitit pickles functions by reference; this module need not be importable in a job
    (pytest's rootdir), so send its functions by value."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_failed_job_names_replicate_seed_and_log(tmp_path, cluster, stub_by_value):
    p = dataclasses.replace(TINY, replicates=3)
    with pytest.raises(ReplicateFailed) as info:
        run_replicates(fail_at_seed_1, p, (), log=None, executor="submitit",
                       submitit_options={"folder": tmp_path, "cluster": cluster})
    err = info.value
    assert (err.index, err.seed) == (1, 1)
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith("replicate 2/3 (seed 1) failed in submitit job ")
    assert "RuntimeError: boom in replicate seed 1" in msg
    if cluster == "local":  # the job's stderr log holds its traceback
        assert err.log is not None and f"its log: {err.log}" in msg
        assert "boom in replicate seed 1" in err.log.read_text()
    else:  # the debug executor runs the job here: no log file, and no pdb
        assert err.log is None and "debug cluster" in msg


def test_jobs_that_succeed_come_back_in_seed_order(tmp_path, stub_by_value):
    p = dataclasses.replace(TINY, replicates=3, seed=2)  # seeds 2000, 2001, 2002
    got = run_replicates(fail_at_seed_1, p, (), log=None, executor="submitit",
                         submitit_options={"folder": tmp_path, "cluster": "debug"})
    assert got == [{"seed": s, "rows": [{"x": 2.0 * s}]} for s in (2000, 2001, 2002)]


def test_bad_options_are_refused_before_any_job(tmp_path):
    with pytest.raises(ValueError, match="needs submitit_options\\['folder'\\]"):
        run_replicates(fail_at_seed_1, TINY, (), executor="submitit", submitit_options={})
    with pytest.raises(ValueError, match="cluster'\\] must be one of slurm, local, debug"):
        run_replicates(fail_at_seed_1, TINY, (), executor="submitit",
                       submitit_options={"folder": tmp_path, "cluster": "pbs"})
    with pytest.raises(ValueError, match="submitit rejects"):
        run_replicates(fail_at_seed_1, TINY, (), executor="submitit",
                       submitit_options={"folder": tmp_path, "cluster": "local",
                                         "slurm_partiton": "gpu"})
    with pytest.raises(ValueError, match="executor must be one of"):
        run_replicates(fail_at_seed_1, TINY, (), executor="ray")
    with pytest.raises(ValueError, match="need executor='submitit'"):
        run_replicates(fail_at_seed_1, TINY, (), executor="local",
                       submitit_options={"folder": tmp_path})
    assert list(tmp_path.iterdir()) == []  # no job was written


def test_slurm_gets_one_job_array_with_the_options_cancelled_on_interrupt(tmp_path,
                                                                          monkeypatch):
    """With a stand-in sbatch (it keeps the script), sacct and scancel: the replicates are one
    Slurm job array carrying the options; an interrupted wait cancels every job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"sbatch": f'cp "$1" {tmp_path}/job.sh\necho "Submitted batch job 4242"',
               "srun": "exit 0", "sacct": "exit 0",
               "scancel": f'echo "$@" >> {tmp_path}/scancel.txt'}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    def interrupt(_s):
        raise KeyboardInterrupt

    monkeypatch.setattr(replicates, "time", SimpleNamespace(perf_counter=time.perf_counter,
                                                            sleep=interrupt))
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_replicates(run_once, dataclasses.replace(TINY, replicates=3), PET_EXPERIMENTS,
                       log=lines.append, executor="submitit",
                       submitit_options={"folder": tmp_path / "jobs", "timeout_min": 90,
                                         "slurm_partition": "gpu", "gpus_per_node": 1,
                                         "mem_gb": 16})
    script = (tmp_path / "job.sh").read_text().splitlines()
    for line in ("--array=0-2%3", "--partition=gpu", "--time=90", "--gpus-per-node=1",
                 "--mem=16GB", "--cpus-per-task=1", "--job-name=tgd-tiny"):
        assert f"#SBATCH {line}" in script
    assert lines == [f"3 replicates submitted as submitit jobs (slurm: 4242_0, 4242_1, 4242_2); "
                     f"logs in {tmp_path / 'jobs'}"]
    assert (tmp_path / "scancel.txt").read_text().split() == ["4242_0", "4242_1", "4242_2"]


@pytest.fixture
def no_work(monkeypatch):
    """``tgd reproduce`` with the reproduction replaced: records the executor it would use."""
    import tgd.repro.commands.reproduce as cmd

    seen: list = []

    def fake(preset, out, **kw):
        seen.append(replicates.current_executor())
        return {}

    monkeypatch.setattr(cmd, "reproduce", fake)
    return seen


def _fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "srun"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_flags_reach_the_replicates(tmp_path, monkeypatch, no_work):
    _fake_slurm(tmp_path, monkeypatch)  # validation looks for sbatch, srun; nothing is submitted
    rc = main(["reproduce", "--preset", "tiny", "--out", str(tmp_path / "r"), "--executor",
               "submitit", "--submitit-folder", str(tmp_path / "jobs"), "--slurm-partition",
               "gpu", "--timeout-min", "90", "--cpus-per-task", "4", "--gpus-per-node", "1",
               "--mem-gb", "16"])
    assert rc == 0
    assert no_work == [("submitit", {"folder": tmp_path / "jobs", "cluster": "slurm",
                                     "slurm_partition": "gpu", "timeout_min": 90,
                                     "cpus_per_task": 4, "gpus_per_node": 1, "mem_gb": 16.0})]
    assert replicates.current_executor() == ("local", None)  # only for that command
    assert main(["reproduce", "--preset", "tiny", "--out", str(tmp_path / "r2")]) == 0
    assert no_work[-1] == ("local", None)


@pytest.mark.parametrize("flags, expected", [
    (["--executor", "submitit"], "--executor submitit needs --submitit-folder DIR"),
    (["--cluster", "local"], "--cluster needs --executor submitit"),
    (["--timeout-min", "60"], "--timeout-min needs --executor submitit"),
    (["--executor", "submitit", "--submitit-folder", "{file}/sub", "--cluster", "local"],
     "--submitit-folder {file}/sub: not a writable folder"),
    (["--executor", "submitit", "--submitit-folder", "{tmp}/jobs"],
     "--cluster slurm (the default) needs --timeout-min"),
    (["--executor", "submitit", "--submitit-folder", "{tmp}/jobs", "--timeout-min", "60"],
     "--cluster slurm needs Slurm's sbatch and srun on PATH (sbatch and srun not found"),
    (["--executor", "submitit", "--submitit-folder", "{tmp}/jobs", "--cluster", "local",
      "--cpus-per-task", "0"], "--cpus-per-task must be a positive whole number, got 0"),
    (["--executor", "submitit", "--submitit-folder", "{tmp}/jobs", "--cluster", "local",
      "--mem-gb", "-2"], "--mem-gb must be a positive number, got -2.0"),
])
def test_bad_flags_are_one_line_errors_before_any_work(tmp_path, monkeypatch, capsys, no_work,
                                                       flags, expected):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no sbatch here
    fill = {"tmp": str(tmp_path), "file": str(tmp_path / "file")}
    out = tmp_path / "report"
    rc = main(["reproduce", "--preset", "tiny", "--out", str(out),
               *(f.format(**fill) for f in flags)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("tgd reproduce: error: ")
    assert expected.format(**fill) in err
    assert no_work == [] and not out.exists()


def test_experiment_tod_stays_in_process(tmp_path, capsys, no_work):
    rc = main(["experiment", "tod", "--preset", "tiny", "--out", str(tmp_path / "t"),
               "--executor", "submitit", "--submitit-folder", str(tmp_path / "jobs"),
               "--cluster", "local"])
    assert rc == 1
    assert "tgd reproduce --experiments tod" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_reproduce_on_local_jobs_writes_the_report_here(tmp_path, capsys):
    """End to end: ``tgd reproduce --executor submitit --cluster local``; the jobs return the
    replicates, this process writes the report, and the numbers are the in-process ones."""
    out, jobs = tmp_path / "report", tmp_path / "jobs"
    rc = main(["reproduce", "--preset", "tiny", "--experiments", "threshold", "--out",
               str(out), "--no-progress", "--executor", "submitit", "--cluster", "local",
               "--submitit-folder", str(jobs), "--timeout-min", "20"])
    assert rc == 0
    assert "report written to" in capsys.readouterr().out
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert len(list(jobs.glob("*_result.pkl"))) == 2
    res = load_results(out / "results.json")
    assert res["replicate_seeds"] == [0, 1]
    ref = run_replicates(run_once, TINY, ("threshold",), progress=False, log=None)
    for mine, theirs in zip(res["replicates"], ref, strict=True):
        assert mine["threshold"]["rows"] == [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()}
            for r in theirs["threshold"]["rows"]]


def test_a_failed_replicate_is_a_one_line_error_of_the_command(tmp_path, monkeypatch, capsys):
    import tgd.repro.experiments.reproduce as experiments

    monkeypatch.setattr(experiments, "run_once", fail_at_seed_1)
    out = tmp_path / "report"
    rc = main(["reproduce", "--preset", "tiny", "--out", str(out), "--no-progress",
               "--executor", "submitit", "--cluster", "debug", "--submitit-folder",
               str(tmp_path / "jobs")])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert err.count("\n") == 1
    assert err.startswith("tgd reproduce: error: replicate 2/2 (seed 1) failed in submitit job")
    assert "RuntimeError: boom in replicate seed 1" in err


def test_without_submitit_the_error_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    rc = main(["reproduce", "--preset", "tiny", "--out", str(tmp_path / "r"), "--executor",
               "submitit", "--cluster", "local", "--submitit-folder", str(tmp_path / "jobs")])
    assert rc == 1
    assert "pip install 'tgd[cluster]'" in capsys.readouterr().err
    with pytest.raises(ImportError, match="tgd\\[cluster\\]"):
        run_replicates(fail_at_seed_1, TINY, (), executor="submitit",
                       submitit_options={"folder": tmp_path, "cluster": "debug"})
