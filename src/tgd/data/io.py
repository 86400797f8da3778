"""Reading and writing volumes: NIfTI (+ JSON sidecar) and DICOM PET series.

Every reader returns a :class:`Volume`: ``data`` as ``(Z, Y, X)`` (slice axis first, as used
throughout tgd: ``data[k, j, i]``) and a 4x4 ``affine`` that maps voxel indices ``(i, j, k, 1)``
(column, row, slice) to RAS+ world coordinates in mm, as in NIfTI/nibabel.

Simulated studies are stored with voxel axes along the DICOM patient axes L, P, S (column ->
patient left, row -> posterior, slice -> superior), so their affine is ``diag(-dx, -dy, dz)``
plus the origin; viewers show them correctly, and ``nibabel.aff2axcodes`` gives ('L','P','S').
Writing never replaces an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "Volume",
    "read_dicom_series",
    "read_nifti",
    "simulate_to_disk",
    "write_nifti",
    "write_study",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A 3-D image: ``data[k, j, i]``, RAS ``affine`` of ``(i, j, k)``, and metadata."""

    data: np.ndarray
    affine: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """(column, row, slice) spacing in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def _nifti_suffix(path: Path) -> bool:
    return path.name.endswith(".nii") or path.name.endswith(".nii.gz")


def _sidecar(path: Path) -> Path:
    name = path.name[:-7] if path.name.endswith(".nii.gz") else path.name[:-4]
    return path.with_name(name + ".json")


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix="-" + path.name)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_free(paths: Iterable[Path], overwrite: bool) -> None:
    if overwrite:
        return
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise FileExistsError(
            f"refusing to overwrite existing file(s): {', '.join(taken)} (pass overwrite=True)"
        )


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_nifti(path, data: np.ndarray, affine: np.ndarray, meta: dict | None = None,
                *, overwrite: bool = False) -> Path:
    """Write ``data[k, j, i]`` with ``affine`` to ``path`` (.nii or .nii.gz) and, if ``meta``
    is given, a JSON sidecar next to it. Raises FileExistsError rather than overwrite."""
    path = Path(path)
    if not _nifti_suffix(path):
        raise ValueError(f"NIfTI path must end in .nii or .nii.gz: {path}")
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"data must be (Z, Y, X), got shape {data.shape}")
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError("affine must be a finite 4x4 matrix")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("affine is singular")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ValueError(f"refusing to write non-finite values to {path}")
    targets = [path] + ([_sidecar(path)] if meta is not None else [])
    _check_free(targets, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(data, (2, 1, 0))), affine)
    img.header.set_xyzt_units("mm", "sec")
    _atomic_write(path, lambda p: nib.save(img, p))
    if meta is not None:
        text = json.dumps(_jsonable(meta), indent=2, sort_keys=True, allow_nan=False)
        _atomic_write(_sidecar(path), lambda p: p.write_text(text + "\n"))
    return path


def load_nifti(path) -> tuple[np.ndarray, np.ndarray, nib.spatialimages.SpatialImage]:
    """``(data[z, y, x], RAS affine, nibabel image)`` of a 3-D NIfTI file, checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such NIfTI file: {path}")
    try:
        img = nib.load(path)
        arr = np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for corrupt files
        raise ValueError(f"{path} is not a readable NIfTI file: {e}") from e
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {arr.shape}")
    data = np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ValueError(f"{path} contains {int((~np.isfinite(data)).sum())} NaN/inf voxels")
    affine = np.asarray(img.affine, np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{path} has an invalid (singular or non-finite) affine")
    return data, affine, img


def read_nifti(path) -> Volume:
    """Read a 3-D NIfTI file (and its JSON sidecar if present) into a :class:`Volume`."""
    path = Path(path)
    data, affine, _ = load_nifti(path)
    meta: dict = {}
    side = _sidecar(path)
    if side.exists():
        try:
            meta = json.loads(side.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"sidecar {side} is not valid JSON: {e}") from e
        if not isinstance(meta, dict):
            raise ValueError(f"sidecar {side} must hold a JSON object")
    return Volume(data, affine, meta)


# ----------------------------------------------------------------------------- studies


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
    items.append((out / "activity.nii.gz", study.activity.astype(np.float32),
                  {**common, "kind": "true_activity", "units": m["units"],
                   "suv_per_kbq_ml": m["suv_per_kbq_ml"]}))
    items.append((out / "mu.nii.gz", study.mu.astype(np.float32),
                  {**common, "kind": "attenuation_511keV", "units": "1/cm"}))
    study_json = out / "study.json"
    targets = [p for p, _, _ in items] + [_sidecar(p) for p, _, _ in items] + [study_json]
    _check_free(targets, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for p, arr, sc in items:
        write_nifti(p, arr, aff, sc, overwrite=overwrite)
    text = json.dumps(_jsonable(m), indent=2, sort_keys=True, allow_nan=False)
    _atomic_write(study_json, lambda p: p.write_text(text + "\n"))
    return targets


def simulate_to_disk(out_dir, seeds: Iterable[int], *, overwrite: bool = False,
                     **kwargs) -> list[Path]:
    """Simulate one study per seed (``simulate_study`` keyword arguments) and write each to
    ``out_dir/study_<seed>``; returns the study folders."""
    from tgd.data.study import simulate_study

    seeds = list(seeds)
    if not seeds:
        raise ValueError("need at least one seed")
    folders = []
    for s in seeds:
        folder = Path(out_dir) / f"study_{int(s):04d}"
        write_study(simulate_study(int(s), **kwargs), folder, overwrite=overwrite)
        folders.append(folder)
    return folders


# ----------------------------------------------------------------------------- DICOM


def _dicom_time(date: str | None, time: str | None) -> dt.datetime | None:
    if not time:
        return None
    time = str(time).strip()
    hh, mm = int(time[0:2]), int(time[2:4]) if len(time) >= 4 else 0
    ss = float(time[4:]) if len(time) > 4 else 0.0
    base = dt.datetime.strptime(str(date).strip()[:8], "%Y%m%d") if date else dt.datetime(
        2000, 1, 1)
    return base + dt.timedelta(hours=hh, minutes=mm, seconds=ss)


def _dicom_datetime(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    v = str(value).strip().split("+")[0].split("-")[0]
    return _dicom_time(v[:8], v[8:] or "000000")


def _suv_factor(ds) -> tuple[float | None, str]:
    """Body-weight SUV factor (g/Bq) for images in Bq/mL, or None and the reason."""
    units = str(getattr(ds, "Units", "")).upper()
    if units and units != "BQML":
        return None, f"Units is {units!r}, not BQML"
    weight = getattr(ds, "PatientWeight", None)
    if not weight or float(weight) <= 0:
        return None, "PatientWeight missing or zero"
    seq = getattr(ds, "RadiopharmaceuticalInformationSequence", None)
    if not seq:
        return None, "RadiopharmaceuticalInformationSequence missing"
    rp = seq[0]
    dose = getattr(rp, "RadionuclideTotalDose", None)
    half = getattr(rp, "RadionuclideHalfLife", None)
    if not dose or float(dose) <= 0 or not half or float(half) <= 0:
        return None, "RadionuclideTotalDose or RadionuclideHalfLife missing"
    corr = str(getattr(ds, "DecayCorrection", "")).upper()
    if corr == "ADMIN":
        decay = 1.0
    elif corr == "START":
        inj = _dicom_datetime(getattr(rp, "RadiopharmaceuticalStartDateTime", None))
        ref_date = getattr(ds, "SeriesDate", None) or getattr(ds, "AcquisitionDate", None)
        if inj is None:
            inj = _dicom_time(ref_date, getattr(rp, "RadiopharmaceuticalStartTime", None))
        start = _dicom_time(ref_date, getattr(ds, "SeriesTime", None)
                            or getattr(ds, "AcquisitionTime", None))
        if inj is None or start is None:
            return None, "injection or series/acquisition time missing"
        delta = (start - inj).total_seconds()
        if delta < 0 and not getattr(rp, "RadiopharmaceuticalStartDateTime", None):
            delta += 86400.0  # injected before midnight, scanned after
        if delta < 0:
            return None, "series starts before the injection"
        decay = 2.0 ** (-delta / float(half))
    else:
        return None, f"DecayCorrection is {corr or 'missing'!r}, not START or ADMIN"
    return float(weight) * 1000.0 / (float(dose) * decay), "ok"


def read_dicom_series(path, *, suv: bool | None = None, modality: str | None = "PT") -> Volume:
    """Read one DICOM series (a folder of single-frame files, or a list of files).

    Slices are sorted along the slice normal by ImagePositionPatient; per-slice RescaleSlope /
    RescaleIntercept are applied. ``suv=None`` converts Bq/mL to body-weight SUV when the tags
    allow it (``meta["suv_applied"]`` says whether, ``meta["suv_note"]`` why not); ``True``
    requires it; ``False`` never does. Hidden files and DICOMDIR are ignored.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if isinstance(path, str | os.PathLike):
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no such DICOM folder or file: {p}")
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and f.name.upper() != "DICOMDIR") if p.is_dir() else [p]
    else:
        files = [Path(f) for f in path]
    if not files:
        raise FileNotFoundError(f"no DICOM files in {path}")
    slices = []
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"no such DICOM file: {f}")
        try:
            ds = pydicom.dcmread(f, force=False)
        except InvalidDicomError as e:
            raise ValueError(f"{f} is not a DICOM file: {e}") from e
        except Exception as e:
            raise ValueError(f"{f} is a corrupt DICOM file: {e}") from e
        slices.append((f, ds))

    first = slices[0][1]
    uids = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(uids) > 1:
        raise ValueError(f"files belong to {len(uids)} series ({sorted(uids)}); pass one series")
    if modality is not None:
        mods = {str(getattr(ds, "Modality", "")) for _, ds in slices}
        if mods != {modality}:
            raise ValueError(f"expected Modality {modality!r}, found {sorted(mods)}")
    required = ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows",
                "Columns")
    for f, ds in slices:
        missing = [t for t in required if t not in ds]
        if missing:
            raise ValueError(f"{f} lacks required tag(s) {missing}")
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise ValueError(f"{f} is multi-frame; only single-frame series are supported")
        if "PixelData" not in ds:
            raise ValueError(f"{f} has no pixel data")

    iop = np.array(first.ImageOrientationPatient, float)
    spacing = np.array(first.PixelSpacing, float)
    shape = (int(first.Rows), int(first.Columns))
    for f, ds in slices[1:]:
        if not np.allclose(np.array(ds.ImageOrientationPatient, float), iop, atol=1e-4):
            raise ValueError(f"{f} has a different ImageOrientationPatient")
        if not np.allclose(np.array(ds.PixelSpacing, float), spacing, rtol=1e-4):
            raise ValueError(f"{f} has a different PixelSpacing")
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ValueError(f"{f} is {int(ds.Rows)}x{int(ds.Columns)}, expected "
                             f"{shape[0]}x{shape[1]}")
    row_dir, col_dir = iop[:3], iop[3:]
    if not (math.isclose(np.linalg.norm(row_dir), 1, abs_tol=1e-3)
            and math.isclose(np.linalg.norm(col_dir), 1, abs_tol=1e-3)
            and abs(row_dir @ col_dir) < 1e-3):
        raise ValueError("ImageOrientationPatient is not two orthonormal directions")
    normal = np.cross(row_dir, col_dir)
    pos = np.array([np.array(ds.ImagePositionPatient, float) for _, ds in slices])
    d = pos @ normal
    order = np.argsort(d, kind="stable")
    d, pos = d[order], pos[order]
    slices = [slices[i] for i in order]
    if len(slices) > 1:
        steps = np.diff(d)
        if np.any(steps < 1e-3):
            i = int(np.argmin(steps))
            raise ValueError(f"{slices[i][0]} and {slices[i + 1][0]} are at the same position")
        step = float(np.median(steps))
        if np.any(np.abs(steps - step) > max(0.01 * step, 1e-3)):
            gaps = int(round((d[-1] - d[0]) / step)) + 1 - len(slices)
            raise ValueError(f"slice positions are not evenly spaced (median {step:.3f} mm); "
                             f"about {max(gaps, 0)} slice(s) missing or inconsistent")
        k_vec = (pos[-1] - pos[0]) / (len(slices) - 1)  # keeps any gantry tilt
    else:
        thick = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(
            first, "SliceThickness", 0) or 1.0)
        k_vec = normal * thick

    data = np.empty((len(slices), *shape), np.float32)
    for k, (f, ds) in enumerate(slices):
        try:
            px = ds.pixel_array
        except Exception as e:
            raise ValueError(f"{f}: cannot decode pixel data: {e}") from e
        if px.shape != shape:
            raise ValueError(f"{f}: pixel data shape {px.shape} != {shape}")
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        icpt = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        data[k] = px.astype(np.float64) * slope + icpt
    if not np.isfinite(data).all():
        raise ValueError("pixel values are not finite after rescaling")

    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]  # column index i moves along the row direction
    lps[:3, 1] = col_dir * spacing[0]  # row index j moves along the column direction
    lps[:3, 2] = k_vec
    lps[:3, 3] = pos[0]
    units = str(getattr(first, "Units", "")).upper() or None
    meta = {"series_uid": uids.pop() or None, "units": units, "n_slices": len(slices),
            "files": [str(f) for f, _ in slices], "suv_applied": False}
    if suv is not False:
        factor, why = _suv_factor(first)
        if factor is None:
            if suv:
                raise ValueError(f"cannot convert to SUV: {why}")
            meta["suv_note"] = why
        else:
            data *= np.float32(factor)
            meta.update(suv_applied=True, suv_factor_g_per_bq=factor, units="SUVbw")
    return Volume(data, LPS_TO_RAS @ lps, meta)


# ----------------------------------------------------------------------------- study folders


@dataclass(repr=False)
class StoredStudy:
    """A study read back by :func:`read_study`: what the datasets read of a simulated
    :class:`tgd.data.Study` (``images[(version, seconds)]``, ``labels``, ``seed``, ``meta``)."""

    folder: Path
    meta: dict
    images: dict
    labels: np.ndarray

    @property
    def seed(self):
        return self.meta.get("seed", str(self.folder))

    def __repr__(self) -> str:
        return f"StoredStudy({self.folder}, images={sorted(self.images)})"


def read_study(folder, versions=None) -> StoredStudy:
    """Read a study folder that :func:`write_study` wrote: ``study.json``, the PET images
    ``{version}_{seconds}s.nii.gz`` (only those of ``versions`` if given) and
    ``labels.nii.gz``."""
    import re

    image_name = re.compile(r"^(?P<version>[A-Za-z0-9]+)_(?P<dur>\d+(?:\.\d+)?)s\.nii(?:\.gz)?$")
    folder = Path(folder)
    meta_file = folder / "study.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{folder} is not a study folder (no study.json)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_file} is not valid JSON: {err}") from err
    images: dict[tuple[str, int | float], np.ndarray] = {}
    for f in sorted(folder.iterdir()):
        m = image_name.match(f.name)
        if not m or (versions is not None and m["version"] not in versions):
            continue
        d = float(m["dur"])
        images[(m["version"], int(d) if d.is_integer() else d)] = read_nifti(f).data
    if not images:
        raise ValueError(f"no PET images ({{version}}_{{seconds}}s.nii.gz) in {folder}")
    return StoredStudy(folder, meta, images, read_nifti(folder / "labels.nii.gz").data)
