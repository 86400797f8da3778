"""PET data: a physics-based whole-body FDG PET simulator (v1/v2 OSEM, count levels,
list-mode-like thinning and splitting), 2.5-D and 3-D datasets, and NIfTI/DICOM I/O."""

from tgd.data.acquisition import ScannerModel, poisson_counts, split_counts, thin_counts
from tgd.data.datasets import (
    EnsembleDataset,
    Noise2NoiseDataset,
    NoiseAdaptiveDataset,
    intensity_scale,
    otsu_body_mask,
    slices_25d,
    study_scale,
)
from tgd.data.datasets3d import Noise2NoiseDataset3D, NoiseAdaptiveDataset3D
from tgd.data.factory import DATASET_KINDS, make_dataset
from tgd.data.io import (
    SavedStudy,
    Volume,
    read_dicom_series,
    read_image,
    read_nifti,
    read_study,
    simulate_to_disk,
    write_nifti,
    write_study,
)
from tgd.data.phantom import LABELS, Phantom, make_phantom
from tgd.data.projector import Geometry, Projector, get_projector
from tgd.data.recon import RECON_VERSIONS, ReconConfig, osem
from tgd.data.study import (
    DURATIONS,
    INPUT_DURATIONS,
    TARGET_DURATION,
    Study,
    simulate_study,
)

__all__ = [
    "DATASET_KINDS",
    "DURATIONS",
    "INPUT_DURATIONS",
    "LABELS",
    "RECON_VERSIONS",
    "TARGET_DURATION",
    "EnsembleDataset",
    "Geometry",
    "Noise2NoiseDataset",
    "Noise2NoiseDataset3D",
    "NoiseAdaptiveDataset",
    "NoiseAdaptiveDataset3D",
    "Phantom",
    "Projector",
    "ReconConfig",
    "SavedStudy",
    "ScannerModel",
    "Study",
    "Volume",
    "get_projector",
    "intensity_scale",
    "make_dataset",
    "make_phantom",
    "osem",
    "otsu_body_mask",
    "poisson_counts",
    "read_dicom_series",
    "read_image",
    "read_nifti",
    "read_study",
    "simulate_study",
    "simulate_to_disk",
    "slices_25d",
    "split_counts",
    "study_scale",
    "thin_counts",
    "write_nifti",
    "write_study",
]
