"""Data: image I/O (NIfTI, DICOM series), the paired-image contract of training
(:class:`PairedVolumes`) and datalist manifests that list a user's files, 2.5-D and 3-D
datasets, and intensity normalisation."""

from tgd.data.datasets import (
    EnsembleDataset,
    Noise2NoiseDataset,
    NoiseAdaptiveDataset,
    slices_25d,
)
from tgd.data.datasets3d import Noise2NoiseDataset3D, NoiseAdaptiveDataset3D
from tgd.data.factory import DATASET_KINDS, make_dataset
from tgd.data.io import (
    Volume,
    read_dicom_series,
    read_image,
    read_nifti,
    write_nifti,
)
from tgd.data.labelled import LabelledNoise2NoiseDataset, LabelledNoiseAdaptiveDataset
from tgd.data.pairs import PairedVolumes
from tgd.data.volumes import as_volume, intensity_scale, otsu_body_mask

__all__ = [
    "DATASET_KINDS",
    "EnsembleDataset",
    "LabelledNoise2NoiseDataset",
    "LabelledNoiseAdaptiveDataset",
    "Noise2NoiseDataset",
    "Noise2NoiseDataset3D",
    "NoiseAdaptiveDataset",
    "NoiseAdaptiveDataset3D",
    "PairedVolumes",
    "Volume",
    "as_volume",
    "intensity_scale",
    "make_dataset",
    "otsu_body_mask",
    "read_dicom_series",
    "read_image",
    "read_nifti",
    "slices_25d",
    "write_nifti",
]
