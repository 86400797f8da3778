"""Datalist manifests: a user's own paired images as training data.

A manifest lists items in the MONAI datalist style, as JSON or CSV. Each item names an
``input`` image (the user's count level, dose or reconstruction) and its ``target`` (the
full-count or normal-dose image of the same object, same grid), and optionally:

- ``labels``: an integer class map (0 background), read only by losses that use it (``tod``)
  and by segmenter training;
- ``mask``: a body mask; the input's normalisation scale is then 1 / its mean inside the mask
  instead of inside the body estimated from the input (:func:`tgd.data.otsu_body_mask`);
- ``group``: items of one group share one ``target`` (one study at several count levels):
  noise-adaptive training; ``level`` names an item's level (e.g. seconds, dose fraction).

Images are NIfTI files (``.nii``/``.nii.gz``) or DICOM series folders
(:func:`tgd.data.read_image`; PET series in Bq/mL are converted to SUVbw when their tags
allow, and the provenance says so); relative paths are relative to the manifest's folder.

JSON: a list of items, or an object with a ``"training"`` list and optionally a
``"validation"`` list (MONAI's ``load_decathlon_datalist`` layout). CSV: a header row naming the
columns (``input``, ``target``, then any of ``labels``, ``mask``, ``group``, ``level``) and one
item per row; a CSV holds one section.

Normalisation is computed from the input alone (:mod:`tgd.data.pairs`), as ``tgd denoise`` does
on an image it has never seen. Every file is checked when the manifest is read, before any
training: a missing file, an input and target of different shapes or voxel spacing, NaN or
infinite voxels, a non-integer class map, an empty list are errors that name the item.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tgd.data.io import atomic_write, check_free, read_image
from tgd.data.pairs import PairedVolumes
from tgd.data.volumes import intensity_scale

__all__ = ["KEYS", "SECTIONS", "ManifestItem", "load_pairs", "read_manifest", "write_manifest"]

KEYS = ("input", "target", "labels", "mask", "group", "level")
SECTIONS = ("training", "validation")
SPACING_RTOL = 1e-3


@dataclass(frozen=True)
class ManifestItem:
    """One item of a manifest, paths resolved."""

    input: Path
    target: Path
    labels: Path | None = None
    mask: Path | None = None
    group: str | None = None
    level: str | float | None = None
    where: str = ""


def _items_of(path: Path, section: str) -> list[dict] | None:
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        if section != "training":
            return None
        rows = list(csv.DictReader(text.splitlines()))
        return [{k.strip(): (v.strip() if isinstance(v, str) else v)
                 for k, v in row.items() if k is not None and v not in (None, "")}
                for row in rows]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"manifest {path} is not valid JSON: {err}") from None
    if isinstance(doc, list):
        return doc if section == "training" else None
    if not isinstance(doc, dict):
        raise ValueError(f"manifest {path} must hold a list of items or an object with a "
                         "'training' list")
    unknown = sorted(set(doc) - set(SECTIONS))
    if "training" not in doc:
        raise ValueError(f"manifest {path} has no 'training' list (keys: {sorted(doc)})")
    if unknown:
        raise ValueError(f"manifest {path}: unknown sections {unknown} (allowed: {SECTIONS})")
    got = doc.get(section)
    if got is not None and not isinstance(got, list):
        raise ValueError(f"manifest {path}: '{section}' must be a list of items")
    return got


def read_manifest(path, section: str = "training") -> list[ManifestItem] | None:
    """The items of ``section`` of the manifest at ``path`` (None if it has no such section),
    checked for keys and file existence (not yet read)."""
    path = Path(path)
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {section!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no such manifest: {path}")
    if path.suffix.lower() not in (".json", ".csv"):
        raise ValueError(f"manifest {path}: expected a .json or .csv datalist")
    raw = _items_of(path, section)
    if raw is None:
        return None
    if not raw:
        raise ValueError(f"manifest {path}: the '{section}' list is empty")
    out = []
    for n, item in enumerate(raw):
        where = f"{path} item {n}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be an object with 'input' and 'target'")
        unknown = sorted(set(item) - set(KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (allowed: {KEYS})")
        missing = [k for k in ("input", "target") if not item.get(k)]
        if missing:
            raise ValueError(f"{where}: missing {missing}")
        files = {}
        for key in ("input", "target", "labels", "mask"):
            if item.get(key):
                f = Path(str(item[key]))
                f = f if f.is_absolute() else path.parent / f
                if not f.exists():
                    raise FileNotFoundError(f"{where}: {key} {f} does not exist")
                files[key] = f
        level = item.get("level")
        out.append(ManifestItem(**files, group=None if item.get("group") is None
                                else str(item["group"]), level=level, where=where))
    return out


def _check_same_grid(a, b, what: str, where: str) -> None:
    if a.data.shape != b.data.shape:
        raise ValueError(f"{where}: input {a.data.shape} and {what} {b.data.shape} differ in "
                         "shape")
    if not np.allclose(a.voxel_size, b.voxel_size, rtol=SPACING_RTOL):
        raise ValueError(f"{where}: input spacing {a.voxel_size} mm and {what} spacing "
                         f"{b.voxel_size} mm differ")


def _class_map(vol, where: str) -> np.ndarray:
    lab = vol.data
    if not np.array_equal(lab, np.round(lab)) or lab.min() < 0:
        raise ValueError(f"{where}: labels {vol.source} must hold class indices (integers >= 0)")
    return lab.astype(np.int64)


def load_pairs(manifests, section: str = "training", *, labels: bool = False
               ) -> tuple[list[PairedVolumes], dict] | tuple[None, None]:
    """The :class:`PairedVolumes` of ``section`` of one or more manifests (items of one
    ``group`` with one target form one study with several inputs) and their provenance;
    ``(None, None)`` when no manifest has that section. ``labels``: every item must name its
    class map (the task loss, segmenter training)."""
    manifests = [manifests] if isinstance(manifests, str | Path) else list(manifests)
    if not manifests:
        raise ValueError("no manifest given")
    items: list[ManifestItem] = []
    for m in manifests:
        got = read_manifest(m, section)
        if got is not None:
            items += got
    if not items:
        return None, None
    groups: dict[str, list[ManifestItem]] = {}
    for n, it in enumerate(items):
        groups.setdefault(it.group if it.group is not None else f"\0{n}", []).append(it)
    pairs, studies = [], []
    for key, members in groups.items():
        first = members[0]
        if any(m.target != first.target for m in members):
            raise ValueError(f"{first.where}: group {key!r} names more than one target")
        if labels and any(m.labels is None for m in members):
            bad = next(m for m in members if m.labels is None)
            raise ValueError(f"{bad.where}: no 'labels' (this loss needs a class map per item)")
        target = read_image(first.target)
        inputs, scales, units = [], [], []
        for m in members:
            x = read_image(m.input)
            _check_same_grid(x, target, "target", m.where)
            scale = None
            if m.mask is not None:
                mask = read_image(m.mask)
                _check_same_grid(x, mask, "mask", m.where)
                scale = intensity_scale(x.data, mask.data > 0)
            inputs.append(x.data)
            scales.append(scale)
            units.append(x.meta.get("units"))
        classes = None
        if labels:
            lab = read_image(first.labels)
            _check_same_grid(target, lab, "labels", first.where)
            classes = _class_map(lab, first.where)
        levels = [m.level if m.level is not None else i for i, m in enumerate(members)]
        name = first.group or first.where
        pairs.append(PairedVolumes(inputs, target.data,
                                   scales=None if all(s is None for s in scales) else [
                                       s if s is not None else _own_scale(x, name)
                                       for s, x in zip(scales, inputs, strict=True)],
                                   classes=classes, levels=levels, name=name))
        studies.append({"group": first.group, "target": str(first.target),
                        "inputs": [str(m.input) for m in members], "levels": levels,
                        **({"labels": str(first.labels)} if labels else {}),
                        **({"units": units[0]} if units[0] else {}),
                        **({"suv_applied": True} if target.meta.get("suv_applied") else {})})
    prov = {"source": "manifest", "manifests": [str(m) for m in manifests], "section": section,
            "studies": studies}
    return pairs, prov


def _own_scale(x, name: str) -> float:
    try:
        return intensity_scale(x)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def write_manifest(path, training: list[dict], validation: list[dict] | None = None,
                   *, overwrite: bool = False) -> Path:
    """Write a JSON manifest (paths relative to its folder where they lie below it)."""
    path = Path(path)
    check_free([path], overwrite)

    def rel(item: dict) -> dict:
        out = {}
        for k, v in item.items():
            if k not in KEYS:
                raise ValueError(f"manifest item: unknown key {k!r} (allowed: {KEYS})")
            if k in ("input", "target", "labels", "mask"):
                p = Path(v)
                try:
                    v = str(p.resolve().relative_to(path.parent.resolve()))
                except ValueError:
                    v = str(p)
            out[k] = v
        return out

    doc = {"training": [rel(i) for i in training]}
    if validation:
        doc["validation"] = [rel(i) for i in validation]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: p.write_text(json.dumps(doc, indent=1) + "\n"))
    return path
