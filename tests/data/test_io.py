"""Image I/O of the library (tgd.data.io): NIfTI with JSON sidecars, DICOM series (order,
affine, SUV), read_image / write_nifti(like=), atomic writes and the JSON converter. The
simulated study format: tests/repro/test_studies.py."""

import json
import math

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tgd.data import read_dicom_series, read_nifti, write_nifti
from tgd.data.io import atomic_write, read_image, sidecar_path, to_jsonable

PET_SOP = "1.2.840.10008.5.1.4.1.1.128"


# ----------------------------------------------------------------------------- NIfTI


def test_nifti_round_trip_with_sidecar(tmp_path):
    data = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    aff = np.diag([-2.0, -3.0, 4.0, 1.0])
    aff[:3, 3] = [10, 20, -30]
    p = write_nifti(tmp_path / "a.nii.gz", data, aff, {"duration_s": 60})
    v = read_nifti(p)
    assert np.array_equal(v.data, data) and np.allclose(v.affine, aff)
    assert v.meta == {"duration_s": 60} and v.voxel_size == (2.0, 3.0, 4.0)
    # Written array axes are (i, j, k) = (x, y, z): the first NIfTI axis is our last.
    assert nib.load(p).shape == (5, 4, 3)


def test_nifti_never_overwrites_silently(tmp_path):
    p = tmp_path / "a.nii"
    write_nifti(p, np.zeros((2, 2, 2)), np.eye(4))
    before = p.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_nifti(p, np.ones((2, 2, 2)), np.eye(4))
    assert p.read_bytes() == before
    write_nifti(p, np.ones((2, 2, 2)), np.eye(4), overwrite=True)
    assert read_nifti(p).data.min() == 1
    assert not list(tmp_path.glob(".tmp-*"))


def test_nifti_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_nifti(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    with pytest.raises(ValueError, match="not a readable NIfTI"):
        read_nifti(bad)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4)), tmp_path / "4d.nii")
    with pytest.raises(ValueError, match="3-D"):
        read_nifti(tmp_path / "4d.nii")
    nan = np.zeros((2, 2, 2), np.float32)
    nan[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(ValueError, match="NaN"):
        read_nifti(tmp_path / "nan.nii")
    with pytest.raises(ValueError, match="non-finite"):
        write_nifti(tmp_path / "w.nii", nan, np.eye(4))
    with pytest.raises(ValueError, match=".nii"):
        write_nifti(tmp_path / "w.img", np.zeros((2, 2, 2)), np.eye(4))
    with pytest.raises(ValueError, match="singular"):
        write_nifti(tmp_path / "w.nii", np.zeros((2, 2, 2)), np.zeros((4, 4)))
    p = write_nifti(tmp_path / "s.nii", np.zeros((2, 2, 2)), np.eye(4), {"a": 1})
    (tmp_path / "s.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_nifti(p)


# ----------------------------------------------------------------------------- DICOM

SHAPE = (4, 6)
SPACING = (2.0, 3.0)  # (between rows, between columns)
DZ = 3.27


def _truth(n):
    k, j, i = np.meshgrid(np.arange(n), np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    # Exactly representable with each slice's RescaleSlope (0.5 + 0.25 k) and intercept 7.
    return (k * 100 + j * 10 + i).astype(np.float64) * (0.5 + 0.25 * k) + 7


def _slice(k, arr, *, uid, iop, origin, normal, slope=None, **extra):
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = PET_SOP
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = PET_SOP, fm.MediaStorageSOPInstanceUID
    ds.Modality = extra.pop("Modality", "PT")
    ds.SeriesInstanceUID = uid
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * DZ * normal]
    ds.PixelSpacing = list(SPACING)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    slope = 0.5 + 0.25 * k if slope is None else slope
    ds.RescaleSlope, ds.RescaleIntercept = slope, 7.0
    ds.PixelData = np.round((arr - 7.0) / slope).astype(np.uint16).tobytes()
    ds.Units, ds.DecayCorrection = "BQML", "START"
    ds.PatientWeight = 70.0
    ds.SeriesDate, ds.SeriesTime = "20240101", "090000"
    rp = Dataset()
    rp.RadionuclideTotalDose, rp.RadionuclideHalfLife = 370e6, 6586.2
    rp.RadiopharmaceuticalStartTime = extra.pop("inj_time", "080000")
    ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
    for key, v in extra.items():
        if v is None:
            delattr(ds, key)
        else:
            setattr(ds, key, v)
    return ds


def _series(folder, n=5, iop=(1, 0, 0, 0, 1, 0), origin=(-10.0, -20.0, 30.0), per_slice=None,
            **extra):
    folder.mkdir(parents=True, exist_ok=True)
    iop = np.asarray(iop, float)
    normal = np.cross(iop[:3], iop[3:])
    uid = generate_uid()
    truth = _truth(n)
    order = np.random.default_rng(0).permutation(n)  # files not in slice order
    for f, k in enumerate(order):
        kw = dict(extra)
        kw.update((per_slice or {}).get(int(k), {}))
        ds = _slice(int(k), truth[k], uid=kw.pop("uid", uid), iop=iop, origin=origin,
                    normal=normal, **kw)
        ds.save_as(folder / f"IM{f:03d}.dcm", enforce_file_format=True)
    return truth, iop, np.asarray(origin), normal


def test_dicom_series_values_order_and_affine(tmp_path):
    truth, iop, origin, normal = _series(tmp_path / "s")
    v = read_dicom_series(tmp_path / "s", suv=False)
    np.testing.assert_allclose(v.data, truth, rtol=0, atol=1e-3)  # per-slice slope applied
    lps = np.array([-1, -1, 1])
    for ijk in ([0, 0, 0], [5, 3, 4], [2, 1, 3]):
        i, j, k = ijk
        world_lps = origin + i * SPACING[1] * iop[:3] + j * SPACING[0] * iop[3:] + k * DZ * normal
        np.testing.assert_allclose((v.affine @ [i, j, k, 1])[:3], world_lps * lps, atol=1e-6)
    assert v.voxel_size == pytest.approx((3.0, 2.0, DZ))
    assert v.meta["units"] == "BQML" and not v.meta["suv_applied"]


def test_dicom_oblique_and_reversed_stack(tmp_path):
    a = math.radians(30)
    iop = (math.cos(a), math.sin(a), 0, 0, 0, -1)  # coronal-ish, tilted
    truth, iop, origin, normal = _series(tmp_path / "o", iop=iop)
    v = read_dicom_series(tmp_path / "o", suv=False)
    np.testing.assert_allclose(v.data, truth, atol=1e-3)
    np.testing.assert_allclose(v.affine[:3, 2], normal * DZ * [-1, -1, 1], atol=1e-6)


def test_dicom_suv_scaling(tmp_path):
    truth, *_ = _series(tmp_path / "s")
    v = read_dicom_series(tmp_path / "s")
    factor = 70_000.0 / (370e6 * 2.0 ** (-3600.0 / 6586.2))
    assert v.meta["suv_applied"] and v.meta["units"] == "SUVbw"
    assert v.meta["suv_factor_g_per_bq"] == pytest.approx(factor, rel=1e-9)
    np.testing.assert_allclose(v.data, truth * factor, rtol=1e-5)
    # ADMIN: already decay-corrected to injection, no decay factor.
    _series(tmp_path / "adm", DecayCorrection="ADMIN")
    adm = read_dicom_series(tmp_path / "adm")
    assert adm.meta["suv_factor_g_per_bq"] == pytest.approx(70_000.0 / 370e6)
    # Injected before midnight, scanned one hour later, after midnight: same factor.
    _series(tmp_path / "mid", SeriesTime="003000", inj_time="233000")
    mid = read_dicom_series(tmp_path / "mid")
    assert mid.meta["suv_factor_g_per_bq"] == pytest.approx(factor, rel=1e-9)


def test_dicom_suv_needs_its_tags(tmp_path):
    _series(tmp_path / "s", PatientWeight=None)
    v = read_dicom_series(tmp_path / "s")
    assert not v.meta["suv_applied"] and "PatientWeight" in v.meta["suv_note"]
    with pytest.raises(ValueError, match="PatientWeight"):
        read_dicom_series(tmp_path / "s", suv=True)
    _series(tmp_path / "n", DecayCorrection="NONE")
    assert "DecayCorrection" in read_dicom_series(tmp_path / "n").meta["suv_note"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(per_slice={2: {"uid": "1.2.3.4"}}), "2 series"),
        (dict(per_slice={1: {"ImageOrientationPatient": [0, 1, 0, 1, 0, 0]}}), "Orientation"),
        (dict(per_slice={3: {"PixelSpacing": [2.0, 3.5]}}), "PixelSpacing"),
        (dict(per_slice={0: {"ImagePositionPatient": None}}), "ImagePositionPatient"),
        (dict(Modality="CT"), "Modality"),
    ],
)
def test_dicom_inconsistent_series(tmp_path, kwargs, match):
    _series(tmp_path / "s", **kwargs)
    with pytest.raises(ValueError, match=match):
        read_dicom_series(tmp_path / "s")


def test_dicom_missing_and_duplicate_slices(tmp_path):
    _series(tmp_path / "s", n=6)
    files = sorted((tmp_path / "s").iterdir())
    pos = {f: pydicom.dcmread(f).ImagePositionPatient[2] for f in files}
    middle = sorted(files, key=lambda f: pos[f])[3]
    middle.unlink()
    with pytest.raises(ValueError, match="missing"):
        read_dicom_series(tmp_path / "s")
    _series(tmp_path / "d", n=3)
    f = sorted((tmp_path / "d").iterdir())[0]
    (tmp_path / "d" / "copy.dcm").write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="same position"):
        read_dicom_series(tmp_path / "d")


def test_dicom_shape_mismatch(tmp_path):
    _series(tmp_path / "s", n=3)
    f = sorted((tmp_path / "s").iterdir())[0]
    ds = pydicom.dcmread(f)
    ds.Rows, ds.Columns = 3, 8
    ds.save_as(f, enforce_file_format=True)
    with pytest.raises(ValueError, match=r"is \dx\d, expected \dx\d"):
        read_dicom_series(tmp_path / "s")


def test_dicom_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_dicom_series(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no DICOM files"):
        read_dicom_series(tmp_path / "empty")
    _series(tmp_path / "s", n=3)
    # a README beside the series is skipped (the series' files carry the DICOM preamble)
    (tmp_path / "s" / "README.txt").write_text("exported by scanner X")
    assert read_dicom_series(tmp_path / "s", suv=False).data.shape == (3, 4, 6)
    assert read_image(tmp_path / "s").data.shape == (3, 4, 6)
    # named explicitly, a file that is not DICOM is still an error naming it
    files = sorted((tmp_path / "s").iterdir())
    with pytest.raises(ValueError, match="README.txt is not a DICOM file"):
        read_dicom_series(files)
    (tmp_path / "s" / "README.txt").unlink()
    (tmp_path / "s" / ".DS_Store").write_bytes(b"\0" * 10)  # hidden files are ignored
    assert read_dicom_series(tmp_path / "s", suv=False).data.shape == (3, 4, 6)
    f = sorted(p for p in (tmp_path / "s").iterdir() if p.suffix == ".dcm")[0]
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) - 20])  # truncated pixel data
    with pytest.raises(ValueError, match=f.name):
        read_dicom_series(tmp_path / "s")


# ----------------------------------------------------------------------------- one I/O home


def test_read_image_and_write_like_keep_the_input_header(tmp_path):
    data = np.random.default_rng(1).random((3, 4, 5)).astype(np.float64)
    aff = np.diag([-2.0, 3.0, 4.0, 1.0])
    img = nib.Nifti1Image(np.transpose(data, (2, 1, 0)), aff)
    img.header.set_qform(aff, code=1)
    img.header.set_sform(aff, code=2)
    img.header["descrip"] = b"scanner X"
    nib.save(img, tmp_path / "in.nii.gz")
    vol = read_image(tmp_path / "in.nii.gz")
    assert vol.data.dtype == np.float32 and vol.source == str(tmp_path / "in.nii.gz")
    np.testing.assert_array_equal(vol.data, data.astype(np.float32))
    out = write_nifti(tmp_path / "out.nii.gz", 2 * vol.data, like=vol, meta={"by": "test"})
    res = nib.load(out)
    np.testing.assert_array_equal(res.affine, aff)
    assert int(res.header["qform_code"]) == 1 and int(res.header["sform_code"]) == 2
    assert res.header["descrip"].tobytes().startswith(b"scanner X")
    assert res.get_data_dtype() == np.float32
    np.testing.assert_array_equal(read_nifti(out).data, 2 * vol.data)
    assert json.loads(sidecar_path(out).read_text()) == {"by": "test"}
    with pytest.raises(ValueError, match="differs from the input"):
        write_nifti(tmp_path / "o2.nii.gz", vol.data[:2], like=vol)
    with pytest.raises(ValueError, match="affine"):
        write_nifti(tmp_path / "o3.nii.gz", vol.data)
    with pytest.raises(ValueError, match="DICOM series folder"):
        read_image(sidecar_path(out))
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.nii.gz")


def test_read_image_of_a_dicom_folder_writes_like_its_affine(tmp_path):
    truth, *_ = _series(tmp_path / "s")
    vol = read_image(tmp_path / "s")
    assert vol.header is None and vol.data.dtype == np.float32 and vol.meta["suv_applied"]
    out = write_nifti(tmp_path / "o.nii", vol.data, like=vol)
    np.testing.assert_allclose(nib.load(out).affine, vol.affine)
    np.testing.assert_array_equal(read_nifti(out).data, vol.data)


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    assert atomic_write(p, lambda t: t.write_text("old")) == p
    assert p.read_text() == "old"

    def broken(t):
        t.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(p, broken)
    assert p.read_text() == "old"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.txt"]


def test_atomic_write_gives_umask_permissions_and_keeps_existing_ones(tmp_path):
    import os
    import stat

    mask = os.umask(0o027)
    try:
        new = atomic_write(tmp_path / "new.txt", lambda t: t.write_text("x"))
    finally:
        os.umask(mask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640  # not the temporary file's 0600
    new.chmod(0o604)
    atomic_write(new, lambda t: t.write_text("y"))
    assert stat.S_IMODE(new.stat().st_mode) == 0o604 and new.read_text() == "y"


def test_to_jsonable_rules():
    x = {1: (np.float32(0.5), np.int64(3)), "a": np.array([1.0, np.inf]), "n": float("nan"),
         "b": np.bool_(True)}
    assert to_jsonable(x) == {"1": [0.5, 3], "a": [1.0, None], "n": None, "b": True}
    assert to_jsonable(x, arrays="drop", nonfinite="string") == {
        "1": [0.5, 3], "a": None, "n": "nan", "b": True}
    assert to_jsonable([-np.float64(np.inf)], nonfinite="string") == ["-inf"]
    with pytest.raises(ValueError, match=r"\['a'\]\[1\]"):
        to_jsonable(x, nonfinite="error")
    with pytest.raises(ValueError, match="arrays"):
        to_jsonable(x, arrays="keep")
    json.dumps(to_jsonable(x), allow_nan=False)  # would raise on anything left over
