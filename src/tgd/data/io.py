"""Reading and writing volumes and files: NIfTI (+ JSON sidecar), DICOM PET series, and the
helpers every file tgd writes goes through (:func:`atomic_write`, :func:`to_jsonable`,
:func:`check_free`).

Every reader returns a :class:`Volume`: ``data`` as ``(Z, Y, X)`` (slice axis first, as used
throughout tgd: ``data[k, j, i]``) and a 4x4 ``affine`` that maps voxel indices ``(i, j, k, 1)``
(column, row, slice) to RAS+ world coordinates in mm, as in NIfTI/nibabel.
``write_nifti(..., like=volume)`` writes a result with the header of the volume it came from
(affine, qform/sform codes, voxel sizes, units, description).

Writing never replaces an existing file unless ``overwrite=True``, and never leaves a partly
written file: a crash leaves the old file or the new one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "Volume",
    "atomic_write",
    "check_free",
    "read_dicom_series",
    "read_image",
    "read_nifti",
    "sidecar_path",
    "to_jsonable",
    "write_json",
    "write_nifti",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A 3-D image: ``data[k, j, i]``, RAS ``affine`` of ``(i, j, k)``, and metadata.

    ``header`` is the NIfTI header the volume was read with (None for DICOM or computed
    volumes); ``write_nifti(..., like=volume)`` keeps it. ``source`` names where it came from.
    """

    data: np.ndarray
    affine: np.ndarray
    meta: dict = field(default_factory=dict)
    header: nib.Nifti1Header | None = field(default=None, repr=False)
    source: str | None = None

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """(column, row, slice) spacing in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


# ----------------------------------------------------------------------------- files


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk; folders cannot be opened on every OS."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(path: Path) -> int:
    """The permissions ``path`` keeps (its own when it exists), else those a plain ``open``
    would give under the umask (a temporary file is created private, 0600)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write(path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` so that a crash leaves either the old file or the new one, never a part.

    ``write(tmp)`` writes the content to a temporary file in the same folder whose name ends
    with ``path``'s name (writers that choose the format by suffix, like ``nib.save``, work
    unchanged). The file is then flushed to disk, renamed over ``path``, and the folder
    flushed so the rename itself survives a power loss. On any error the temporary file is
    removed and ``path`` is left as it was. A replaced file keeps its permissions; a new one
    gets the umask's. Creates the parent folder; returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix="-" + path.name)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode(path))
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    return path


NONFINITE = ("null", "string", "error")


def to_jsonable(x, *, arrays: str = "list", nonfinite: str = "null"):
    """``x`` with JSON types only, for ``json.dumps(..., allow_nan=False)``.

    Dict keys become strings, tuples lists, numpy scalars Python numbers. numpy arrays become
    nested lists (``arrays="list"``) or None (``"drop"``, for images kept elsewhere). Non-finite
    floats become None (``nonfinite="null"``), the strings "inf", "-inf", "nan" (``"string"``,
    which a reader can turn back into floats) or a ValueError naming where they are
    (``"error"``). Other objects are returned unchanged.
    """
    if arrays not in ("list", "drop"):
        raise ValueError(f"arrays must be 'list' or 'drop', got {arrays!r}")
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")

    def conv(o, where: str):
        if isinstance(o, dict):
            return {str(k): conv(v, f"{where}[{k!r}]") for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [conv(v, f"{where}[{i}]") for i, v in enumerate(o)]
        if isinstance(o, np.ndarray):
            return conv(o.tolist(), where) if arrays == "list" else None
        if isinstance(o, np.generic):
            o = o.item()
        if isinstance(o, float) and not math.isfinite(o):
            if nonfinite == "error":
                raise ValueError(f"non-finite value {o} at {where or 'top level'} cannot be "
                                 "written as JSON")
            return str(o) if nonfinite == "string" else None
        return o

    return conv(x, "")


def write_json(path: Path, obj) -> None:
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=False)
    atomic_write(path, lambda p: p.write_text(text + "\n"))


def check_free(paths: Iterable[Path], overwrite: bool) -> None:
    if overwrite:
        return
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise FileExistsError(
            f"refusing to overwrite existing file(s): {', '.join(taken)} (pass overwrite=True)"
        )


# ----------------------------------------------------------------------------- NIfTI


def _nifti_suffix(path: Path) -> bool:
    return path.name.endswith(".nii") or path.name.endswith(".nii.gz")


def sidecar_path(path) -> Path:
    """The JSON sidecar that :func:`write_nifti` writes next to ``path`` (NAME.json)."""
    path = Path(path)
    name = path.name[:-7] if path.name.endswith(".nii.gz") else path.name[:-4]
    return path.with_name(name + ".json")


def _nifti_image(data: np.ndarray, affine: np.ndarray, like: Volume | None):
    """The NIfTI image of ``data[k, j, i]``: with ``like``'s header when it has one (its data
    type set to ``data``'s, no scaling), else a fresh header in mm and seconds."""
    arr = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    if like is not None and like.header is not None:
        header = like.header.copy()
        header.set_data_dtype(data.dtype)
        img = nib.Nifti1Image(arr, affine, header=header)
        img.header.set_slope_inter(1.0, 0.0)
        return img
    img = nib.Nifti1Image(arr, affine)
    img.header.set_xyzt_units("mm", "sec")
    return img


def write_nifti(path, data: np.ndarray, affine: np.ndarray | None = None,
                meta: dict | None = None, *, like: Volume | None = None,
                overwrite: bool = False) -> Path:
    """Write ``data[k, j, i]`` to ``path`` (.nii or .nii.gz) and, if ``meta`` is given, a JSON
    sidecar next to it. ``like``: the volume ``data`` was computed from; its shape must match,
    its affine is the default and its NIfTI header (if it was read from NIfTI) is kept.
    Raises FileExistsError rather than overwrite, ValueError on a bad path, shape, affine or
    non-finite values."""
    path = Path(path)
    if not _nifti_suffix(path):
        raise ValueError(f"NIfTI path must end in .nii or .nii.gz: {path}")
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"data must be (Z, Y, X), got shape {data.shape}")
    if like is not None:
        if data.shape != like.data.shape:
            raise ValueError(f"output shape {data.shape} differs from the input's "
                             f"{like.data.shape}")
        affine = like.affine if affine is None else affine
    if affine is None:
        raise ValueError("give the affine, or like= the volume the data came from")
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError("affine must be a finite 4x4 matrix")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("affine is singular")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ValueError(f"refusing to write non-finite values to {path}")
    targets = [path] + ([sidecar_path(path)] if meta is not None else [])
    check_free(targets, overwrite)
    img = _nifti_image(data, affine, like)
    atomic_write(path, lambda p: nib.save(img, p))
    if meta is not None:
        write_json(sidecar_path(path), meta)
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
    """Read a 3-D NIfTI file (and its JSON sidecar if present) into a :class:`Volume` that
    keeps the file's header and data type."""
    path = Path(path)
    data, affine, img = load_nifti(path)
    meta: dict = {}
    side = sidecar_path(path)
    if side.exists():
        try:
            meta = json.loads(side.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"sidecar {side} is not valid JSON: {e}") from e
        if not isinstance(meta, dict):
            raise ValueError(f"sidecar {side} must hold a JSON object")
    return Volume(data, affine, meta, header=img.header.copy(), source=str(path))


def read_image(path) -> Volume:
    """A PET volume to process: a NIfTI file (.nii/.nii.gz) or a DICOM series folder, as
    float32, checked to be non-empty and finite. NIfTI volumes keep their header, so
    ``write_nifti(out, result, like=volume)`` writes the result in the input's frame."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such image: {p}")
    if p.is_dir():
        vol = read_dicom_series(p)
    elif _nifti_suffix(p):
        vol = read_nifti(p)
    else:
        raise ValueError(f"{p}: expected a .nii/.nii.gz file or a DICOM series folder")
    data = np.asarray(vol.data, np.float32)
    if not np.isfinite(data).all():
        raise ValueError(f"{p} contains {int((~np.isfinite(data)).sum())} NaN/inf voxels")
    if min(data.shape) < 1:
        raise ValueError(f"{p} is empty: shape {data.shape}")
    return replace(vol, data=data)


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


def _has_dicom_preamble(f: Path) -> bool:
    try:
        with f.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _dicom_files(path) -> list[Path]:
    """The files of a series given as a folder (hidden files and DICOMDIR skipped; when some
    files carry the DICOM preamble, the others, e.g. a README.txt beside the series, are
    skipped too), one file, or a list of files."""
    if isinstance(path, str | os.PathLike):
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no such DICOM folder or file: {p}")
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and f.name.upper() != "DICOMDIR") if p.is_dir() else [p]
        if p.is_dir():
            marked = [f for f in files if _has_dicom_preamble(f)]
            files = marked or files  # no preamble anywhere: old files, let the reader decide
    else:
        files = [Path(f) for f in path]
    if not files:
        raise FileNotFoundError(f"no DICOM files in {path}")
    return files


def _read_dicom_files(files: list[Path]) -> list[tuple[Path, object]]:
    """``(file, dataset)`` of every file; a missing, foreign or corrupt file is an error."""
    import pydicom
    from pydicom.errors import InvalidDicomError

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
    return slices


_REQUIRED_TAGS = ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows",
                  "Columns")


def _check_series(slices, modality: str | None) -> str:
    """Check that the slices form one single-frame series of ``modality`` on one in-plane
    grid; returns the SeriesInstanceUID ("" when absent)."""
    uids = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in slices}
    if len(uids) > 1:
        raise ValueError(f"files belong to {len(uids)} series ({sorted(uids)}); pass one series")
    if modality is not None:
        mods = {str(getattr(ds, "Modality", "")) for _, ds in slices}
        if mods != {modality}:
            raise ValueError(f"expected Modality {modality!r}, found {sorted(mods)}")
    for f, ds in slices:
        missing = [t for t in _REQUIRED_TAGS if t not in ds]
        if missing:
            raise ValueError(f"{f} lacks required tag(s) {missing}")
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise ValueError(f"{f} is multi-frame; only single-frame series are supported")
        if "PixelData" not in ds:
            raise ValueError(f"{f} has no pixel data")
    first = slices[0][1]
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
    return uids.pop()


def _stack_geometry(slices) -> tuple[list, np.ndarray]:
    """The slices sorted along the slice normal, and the LPS affine of ``(i, j, k)``.

    Slices must be evenly spaced (a missing or duplicate slice is an error); the slice step
    is the mean step between the first and last position, which keeps any gantry tilt.
    """
    first = slices[0][1]
    iop = np.array(first.ImageOrientationPatient, float)
    spacing = np.array(first.PixelSpacing, float)
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
        k_vec = (pos[-1] - pos[0]) / (len(slices) - 1)
    else:
        thick = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(
            first, "SliceThickness", 0) or 1.0)
        k_vec = normal * thick
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]  # column index i moves along the row direction
    lps[:3, 1] = col_dir * spacing[0]  # row index j moves along the column direction
    lps[:3, 2] = k_vec
    lps[:3, 3] = pos[0]
    return slices, lps


def _pixel_stack(slices) -> np.ndarray:
    """``data[k, j, i]`` float32 with each slice's RescaleSlope / RescaleIntercept applied."""
    first = slices[0][1]
    shape = (int(first.Rows), int(first.Columns))
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
    return data


def read_dicom_series(path, *, suv: bool | None = None, modality: str | None = "PT") -> Volume:
    """Read one DICOM series (a folder of single-frame files, or a list of files).

    Slices are sorted along the slice normal by ImagePositionPatient; per-slice RescaleSlope /
    RescaleIntercept are applied. ``suv=None`` converts Bq/mL to body-weight SUV when the tags
    allow it (``meta["suv_applied"]`` says whether, ``meta["suv_note"]`` why not); ``True``
    requires it; ``False`` never does. Hidden files and DICOMDIR are ignored.
    """
    slices = _read_dicom_files(_dicom_files(path))
    uid = _check_series(slices, modality)
    first = slices[0][1]  # the first file given: its series-level tags (units, SUV)
    slices, lps = _stack_geometry(slices)
    data = _pixel_stack(slices)
    units = str(getattr(first, "Units", "")).upper() or None
    meta = {"series_uid": uid or None, "units": units, "n_slices": len(slices),
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
    source = str(path) if isinstance(path, str | os.PathLike) else None
    return Volume(data, LPS_TO_RAS @ lps, meta, source=source)
