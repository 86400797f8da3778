"""Training data for the CLI: simulated studies or study folders on disk (``tgd simulate``).

A study folder is what ``tgd.data.write_study`` writes: ``{version}_{seconds:04d}s.nii.gz``
images, ``labels.nii.gz`` and ``study.json``. ``DiskStudy`` offers the attributes
``tgd.data.NoiseAdaptiveDataset`` reads (``images``, ``labels``, ``seed``, ``meta``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from tgd.data import (
    DURATIONS,
    NoiseAdaptiveDataset,
    NoiseAdaptiveDataset3D,
    read_nifti,
    simulate_study,
)

_IMAGE = re.compile(r"^(?P<version>[A-Za-z0-9]+)_(?P<dur>\d+(?:\.\d+)?)s\.nii(?:\.gz)?$")


class DiskStudy:
    """A study read back from a folder written by ``write_study``."""

    def __init__(self, folder: str | Path, versions=None) -> None:
        folder = Path(folder)
        meta_file = folder / "study.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{folder} is not a study folder (no study.json)")
        try:
            self.meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_file} is not valid JSON: {err}") from err
        self.folder = folder
        self.seed = self.meta.get("seed", str(folder))
        self.images: dict[tuple[str, int | float], np.ndarray] = {}
        for f in sorted(folder.iterdir()):
            m = _IMAGE.match(f.name)
            if not m or (versions is not None and m["version"] not in versions):
                continue
            d = float(m["dur"])
            self.images[(m["version"], int(d) if d.is_integer() else d)] = read_nifti(f).data
        if not self.images:
            raise ValueError(f"no PET images ({{version}}_{{seconds}}s.nii.gz) in {folder}")
        self.labels = read_nifti(folder / "labels.nii.gz").data

    def __repr__(self) -> str:
        return f"DiskStudy({self.folder}, images={sorted(self.images)})"


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
        studies = [DiskStudy(f, versions=[version]) for f in folders]
        prov = {"source": "files", "studies": [str(f) for f in folders]}
    else:
        sim = dict(sim or {})
        studies = [simulate_study(int(s), versions=(version,), **sim) for s in seeds]
        prov = {"source": "simulated", "seeds": [int(s) for s in seeds], "simulate": sim}
    prov["version"] = version
    return studies, prov


def enough_patches(make, min_items: int):
    """``make(patches_per_volume)`` of a 3-D dataset: each volume tiled once (``None``) or, when
    that gives fewer than ``min_items`` items (one batch, on small data), as many random
    patches per volume as one batch needs."""
    ds = make(None)
    if len(ds) < min_items:
        volumes = len(ds) // ds.patches_per_volume
        ds = make(math.ceil(min_items / volumes))
    return ds


def noise_adaptive_set(studies, version: str, patch_size, seed: int, durations=None, *,
                       spatial_dims: int = 2, patch_depth: int | None = None,
                       min_items: int = 0, labelled: bool = False):
    """Noise-adaptive pairs (every input duration -> 600 s) of ``studies``: 2.5-D slices, or
    3-D patches (``patch_depth`` slices deep, at least ``min_items``) for ``spatial_dims=3``.
    ``labelled``: 2.5-D items also carry the task classes (tgd.data.task_labels)."""
    kwargs = {}
    if durations is not None:
        kwargs["input_durations"] = tuple(durations)
    if spatial_dims == 3:
        if labelled:
            raise ValueError("labelled (task-loss) data are 2.5-D only")
        return enough_patches(
            lambda ppv: NoiseAdaptiveDataset3D(studies, version, patch_size=patch_size,
                                               patch_depth=patch_depth, patches_per_volume=ppv,
                                               seed=seed, **kwargs), min_items)
    if patch_depth is not None:
        raise ValueError("patch_depth applies to 3-D networks only")
    if labelled:
        from tgd.data.task_labels import LabelledNoiseAdaptiveDataset

        return LabelledNoiseAdaptiveDataset(studies, version, patch_size=patch_size, seed=seed,
                                            **kwargs)
    return NoiseAdaptiveDataset(studies, version, patch_size=patch_size, seed=seed, **kwargs)


SIM_DEFAULTS = {"n_slices": 32, "shape": 128, "bmi": "low", "durations": DURATIONS}
