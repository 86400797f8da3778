"""The study format of the reproduction: a simulated study as a folder of NIfTI files with JSON
sidecars (``{version}_{seconds}s.nii.gz`` per reconstruction and duration, ``labels``,
``activity``, ``mu`` and ``study.json``), read back as a :class:`SavedStudy`.

Simulated studies are stored with voxel axes along the DICOM patient axes L, P, S (column ->
patient left, row -> posterior, slice -> superior), so their affine is ``diag(-dx, -dy, dz)``
plus the origin; viewers show them correctly, and ``nibabel.aff2axcodes`` gives ('L','P','S').
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tgd.data.io import (
    LPS_TO_RAS,
    check_free,
    read_nifti,
    sidecar_path,
    write_json,
    write_nifti,
)
from tgd.data.manifest import write_manifest
from tgd.repro.sim.classes import TASK_CLASSES, task_classes
from tgd.repro.sim.study import TARGET_DURATION, simulate_study

CLASSES_FILE = "classes.nii.gz"


def study_affine(study) -> np.ndarray:
    """RAS affine of a simulated study's ``(Z, Y, X)`` arrays (voxel axes L, P, S)."""
    dx, dy, dz = study.meta["voxel_size_mm"]
    nz, ny, nx = study.labels.shape
    lps = np.eye(4)
    lps[:3, :3] = np.diag([dx, dy, dz])
    # Voxel centres as in the projector: isocentre in the middle; z is the body coordinate.
    lps[:3, 3] = [-(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy, float(study.phantom.z_mm[0])]
    return LPS_TO_RAS @ lps


def _image_name(version: str, duration) -> str:
    d = f"{int(duration):04d}" if float(duration).is_integer() else f"{float(duration):g}"
    return f"{version}_{d}s.nii.gz"


def write_study(study, out_dir, overwrite: bool = False) -> list[Path]:
    """Write every reconstructed image, the labels, true activity and mu-map of ``study`` as
    NIfTI with JSON sidecars into ``out_dir``; checks all targets before writing any."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    aff = study_affine(study)
    m = study.meta
    common = {
        "seed": m["seed"], "bmi_class": m["bmi_class"], "bmi": m["bmi"], "region": m["region"],
        "unseen": m["unseen"], "voxel_size_mm": m["voxel_size_mm"],
        "orientation": "voxel axes L,P,S (column, row, slice); affine maps to RAS mm",
    }
    items: list[tuple[Path, np.ndarray, dict]] = []
    for (version, duration), img in sorted(study.images.items()):
        sc = {**common, "kind": "pet", "units": m["units"], "duration_s": duration,
              "reconstruction": version, "recon": m["recon"][version],
              "prompts": m["prompts"].get(str(duration)),
              "suv_per_kbq_ml": m["suv_per_kbq_ml"]}
        items.append((out / _image_name(version, duration), img.astype(np.float32), sc))
    items.append((out / "labels.nii.gz", study.labels.astype(np.int16),
                  {**common, "kind": "labels", "labels": study.label_names}))
    items.append((out / CLASSES_FILE, task_classes(study.labels).astype(np.int16),
                  {**common, "kind": "task_classes", "classes": list(TASK_CLASSES)}))
    items.append((out / "activity.nii.gz", study.activity.astype(np.float32),
                  {**common, "kind": "true_activity", "units": m["units"],
                   "suv_per_kbq_ml": m["suv_per_kbq_ml"]}))
    items.append((out / "mu.nii.gz", study.mu.astype(np.float32),
                  {**common, "kind": "attenuation_511keV", "units": "1/cm"}))
    study_json = out / "study.json"
    targets = [p for p, _, _ in items] + [sidecar_path(p) for p, _, _ in items] + [study_json]
    check_free(targets, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for p, arr, sc in items:
        write_nifti(p, arr, aff, sc, overwrite=overwrite)
    write_json(study_json, m)
    return targets


_IMAGE_FILE = re.compile(r"^(?P<version>[A-Za-z0-9]+)_(?P<dur>\d+(?:\.\d+)?)s\.nii(?:\.gz)?$")


@dataclass
class SavedStudy:
    """A study read back from a folder written by :func:`write_study`: the attributes the
    datasets read (``images[(version, seconds)]``, ``labels``, ``seed``, ``meta``)."""

    folder: Path
    meta: dict
    seed: int | str
    images: dict[tuple[str, int | float], np.ndarray]
    labels: np.ndarray
    affine: np.ndarray

    def __repr__(self) -> str:
        return f"SavedStudy({self.folder}, images={sorted(self.images)})"


def read_study(folder, versions: Iterable[str] | None = None) -> SavedStudy:
    """Read the PET images (of ``versions`` only, if given), labels and ``study.json`` of a
    folder written by :func:`write_study`."""
    folder = Path(folder)
    meta_file = folder / "study.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{folder} is not a study folder (no study.json)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_file} is not valid JSON: {err}") from err
    versions = None if versions is None else set(versions)
    images: dict[tuple[str, int | float], np.ndarray] = {}
    for f in sorted(folder.iterdir()):
        m = _IMAGE_FILE.match(f.name)
        if not m or (versions is not None and m["version"] not in versions):
            continue
        d = float(m["dur"])
        images[(m["version"], int(d) if d.is_integer() else d)] = read_nifti(f).data
    if not images:
        raise ValueError(f"no PET images ({{version}}_{{seconds}}s.nii.gz) in {folder}")
    labels = read_nifti(folder / "labels.nii.gz")
    return SavedStudy(folder, meta, meta.get("seed", str(folder)), images, labels.data,
                      labels.affine)


def manifest_name(version: str) -> str:
    return f"manifest_{version}.json"


def write_manifests(out_dir) -> list[Path]:
    """One datalist manifest per reconstruction version over every study folder in ``out_dir``
    (``out_dir/manifest_<version>.json``, rewritten: it is derived from the folders): each
    study a ``group`` whose inputs are its shorter acquisitions, its target the 600-s image and
    its ``labels`` the task classes. Versions without a 600-s image get none."""
    out_dir = Path(out_dir)
    by_version: dict[str, list[dict]] = {}
    for folder in sorted(f for f in out_dir.iterdir() if (f / "study.json").is_file()):
        files = {}
        for f in sorted(folder.iterdir()):
            m = _IMAGE_FILE.match(f.name)
            if m:
                d = float(m["dur"])
                files.setdefault(m["version"], {})[int(d) if d.is_integer() else d] = f
        for version, durs in files.items():
            if TARGET_DURATION not in durs:
                continue
            for d, f in sorted(durs.items()):
                if d == TARGET_DURATION:
                    continue
                item = {"input": f, "target": durs[TARGET_DURATION], "group": folder.name,
                        "level": d}
                if (folder / CLASSES_FILE).is_file():
                    item["labels"] = folder / CLASSES_FILE
                by_version.setdefault(version, []).append(item)
    return [write_manifest(out_dir / manifest_name(v), items, overwrite=True)
            for v, items in sorted(by_version.items())]


def simulate_to_disk(out_dir, seeds: Iterable[int], *, overwrite: bool = False,
                     **kwargs) -> list[Path]:
    """Simulate one study per seed (``simulate_study`` keyword arguments) and write each to
    ``out_dir/study_<seed>``, then the manifests of ``out_dir`` (:func:`write_manifests`);
    returns the study folders."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("need at least one seed")
    folders = []
    for s in seeds:
        folder = Path(out_dir) / f"study_{int(s):04d}"
        write_study(simulate_study(int(s), **kwargs), folder, overwrite=overwrite)
        folders.append(folder)
    write_manifests(out_dir)
    return folders


