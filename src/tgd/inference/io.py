"""Read a PET volume (NIfTI file or DICOM series folder) and write results as NIfTI that keep
the input's header and orientation (affine, qform/sform codes, voxel sizes, units)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from tgd.data import read_dicom_series, write_nifti
from tgd.data.io import load_nifti


@dataclass
class Image:
    """``data[z, y, x]`` float32, its RAS ``affine``, and the NIfTI header it came with."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None
    source: str


def _is_nifti(p: Path) -> bool:
    return p.name.endswith((".nii", ".nii.gz"))


def read_image(path) -> Image:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such image: {p}")
    if p.is_dir():
        vol = read_dicom_series(p)
        data, header = np.asarray(vol.data, np.float32), None
        affine = vol.affine
    elif _is_nifti(p):
        data, affine, img = load_nifti(p)
        data, header = data.astype(np.float32), img.header.copy()
    else:
        raise ValueError(f"{p}: expected a .nii/.nii.gz file or a DICOM series folder")
    if not np.isfinite(data).all():
        raise ValueError(f"{p} contains {int((~np.isfinite(data)).sum())} NaN/inf voxels")
    if min(data.shape) < 1:
        raise ValueError(f"{p} is empty: shape {data.shape}")
    return Image(data, affine, header, str(p))


def write_like(path, data: np.ndarray, like: Image, *, overwrite: bool = False,
               meta: dict | None = None) -> Path:
    """Write ``data[z, y, x]`` as NIfTI with ``like``'s header (or affine, for DICOM input)."""
    out = Path(path)
    if not _is_nifti(out):
        raise ValueError(f"output must end in .nii or .nii.gz: {out}")
    data = np.asarray(data, np.float32)
    if data.shape != like.data.shape:
        raise ValueError(f"output shape {data.shape} differs from the input's {like.data.shape}")
    if like.header is None:
        return write_nifti(out, data, like.affine, meta, overwrite=overwrite)
    if out.exists() and not overwrite:
        raise FileExistsError(f"refusing to overwrite {out} (use --overwrite)")
    header = like.header.copy()
    header.set_data_dtype(np.float32)
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(data, (2, 1, 0))), like.affine,
                          header=header)
    img.header.set_slope_inter(1.0, 0.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix="-" + out.name)
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
