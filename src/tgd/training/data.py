"""Training data for the CLI: simulated studies or study folders on disk (``tgd simulate``).

A study folder is what ``tgd.data.io.write_study`` writes; ``tgd.data.io.read_study`` reads it
back with the attributes the datasets read (``images``, ``labels``, ``seed``, ``meta``).
"""

from __future__ import annotations

from pathlib import Path

from tgd.data import DURATIONS, simulate_study
from tgd.data.factory import make_dataset
from tgd.data.io import read_study


def study_folders(paths) -> list[Path]:
    """Study folders named directly or found one level below the given folders."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "study.json").is_file():
            out.append(p)
        elif p.is_dir():
            subs = sorted(s for s in p.iterdir() if (s / "study.json").is_file())
            if not subs:
                raise FileNotFoundError(f"no study folders (with study.json) in {p}")
            out += subs
        else:
            raise FileNotFoundError(f"no such study folder: {p}")
    return out


def load_studies(*, paths=None, seeds=None, version: str, sim: dict | None = None) -> tuple[
    list, dict
]:
    """Studies from folders (``paths``) or simulated (``seeds`` with ``sim`` keyword arguments
    of ``simulate_study``), and their provenance for the checkpoint."""
    if bool(paths) == bool(seeds):
        raise ValueError("give either study folders (--data) or simulation seeds (--seeds)")
    if paths:
        folders = study_folders(paths)
        studies = [read_study(f, versions=[version]) for f in folders]
        prov = {"source": "files", "studies": [str(f) for f in folders]}
    else:
        sim = dict(sim or {})
        studies = [simulate_study(int(s), versions=(version,), **sim) for s in seeds]
        prov = {"source": "simulated", "seeds": [int(s) for s in seeds], "simulate": sim}
    prov["version"] = version
    return studies, prov


def noise_adaptive_set(studies, version: str, patch_size, seed: int, durations=None, *,
                       spatial_dims: int = 2, patch_depth: int | None = None,
                       min_items: int = 0, labelled: bool = False):
    """Noise-adaptive pairs (every input duration -> 600 s) of ``studies`` for a network of
    ``spatial_dims`` (``tgd.data.factory.make_dataset``); ``labelled``: 2.5-D items also carry
    the task classes (tgd.data.task_labels)."""
    kwargs = {} if durations is None else {"input_durations": tuple(durations)}
    return make_dataset("labelled" if labelled else "noise_adaptive", spatial_dims, studies,
                        version, patch_size=patch_size, seed=seed, patch_depth=patch_depth,
                        min_items=min_items, **kwargs)


SIM_DEFAULTS = {"n_slices": 32, "shape": 128, "bmi": "low", "durations": DURATIONS}
