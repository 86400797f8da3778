"""The simulators: a physics-based whole-body FDG PET simulator (phantoms, acquisition with
count levels and list-mode-like thinning and splitting, projector, v1/v2 OSEM) and a low-dose
CT simulator of the same phantoms."""

from tgd.repro.sim.acquisition import ScannerModel, poisson_counts, split_counts, thin_counts
from tgd.repro.sim.phantom import LABELS, Phantom, make_phantom
from tgd.repro.sim.projector import Geometry, Projector, get_projector
from tgd.repro.sim.recon import RECON_VERSIONS, ReconConfig, osem
from tgd.repro.sim.study import (
    DURATIONS,
    INPUT_DURATIONS,
    TARGET_DURATION,
    Study,
    simulate_study,
)

__all__ = [
    "DURATIONS",
    "INPUT_DURATIONS",
    "LABELS",
    "RECON_VERSIONS",
    "TARGET_DURATION",
    "Geometry",
    "Phantom",
    "Projector",
    "ReconConfig",
    "ScannerModel",
    "Study",
    "get_projector",
    "make_phantom",
    "osem",
    "poisson_counts",
    "simulate_study",
    "split_counts",
    "thin_counts",
]
