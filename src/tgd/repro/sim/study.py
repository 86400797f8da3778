"""A simulated patient study: phantom, 600-s list-mode-like counts, and its reconstructions."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
import torch

from tgd.repro.sim.acquisition import (
    ExpectedData,
    ScannerModel,
    expected_data,
    poisson_counts,
    split_counts,
    thin_counts,
)
from tgd.repro.sim.phantom import Phantom, make_phantom
from tgd.repro.sim.projector import Geometry
from tgd.repro.sim.recon import RECON_VERSIONS, ReconConfig, osem

__all__ = ["DURATIONS", "INPUT_DURATIONS", "TARGET_DURATION", "Study", "simulate_study"]

INPUT_DURATIONS = (30, 45, 60, 90, 120, 180)
TARGET_DURATION = 600
DURATIONS = (*INPUT_DURATIONS, TARGET_DURATION)
FOV_MM = 512.0

# Independent random streams, so that e.g. asking for realizations never changes the images.
_PHANTOM, _POISSON, _THIN, _N2N, _REAL = range(5)


def stream_rng(seed: int, *stream: int) -> np.random.Generator:
    """The generator of one named random stream of a study (``seed`` and stream numbers)."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


class Study:
    """One simulated study. Images are float32 numpy arrays ``(Z, H, W)`` in kBq/mL.

    ``images[(version, duration)]``: reconstructions of the counts of ``duration`` seconds per
    bed, binomially thinned from the 600-s acquisition. ``labels`` (int16) with ``label_names``
    (name -> id), ``activity`` (true voxel-mean activity, kBq/mL), ``mu`` (1/cm), ``meta``.
    Multiply kBq/mL by ``meta["suv_per_kbq_ml"]`` for SUV.
    """

    def __init__(self, seed: int, phantom: Phantom, expected: ExpectedData, geom: Geometry,
                 scanner: ScannerModel, versions: dict[str, ReconConfig], meta: dict) -> None:
        self.seed = seed
        self.phantom = phantom
        self.expected = expected
        self.geom = geom
        self.scanner = scanner
        self.versions = versions
        self.meta = meta
        self.images: dict[tuple[str, int], np.ndarray] = {}
        self._counts: dict[float, np.ndarray] = {}
        self._noiseless: dict[tuple[str, float], np.ndarray] = {}
        self._mask = torch.from_numpy(geom.fov_mask())

    @property
    def labels(self) -> np.ndarray:
        return self.phantom.labels

    @property
    def label_names(self) -> dict[str, int]:
        return self.phantom.label_names

    @property
    def activity(self) -> np.ndarray:
        return self.phantom.activity

    @property
    def mu(self) -> np.ndarray:
        return self.phantom.mu

    @property
    def lesions(self) -> list[dict]:
        return self.phantom.lesions

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of a labelled structure ("liver", "lesion_1", ...)."""
        if name not in self.label_names:
            raise KeyError(f"no label {name!r}; available: {sorted(self.label_names)}")
        return self.labels == self.label_names[name]

    def counts(self, duration: float) -> np.ndarray:
        """Prompt counts ``(n_rows, Z)`` of a ``duration``-s acquisition (thinned from 600 s)."""
        d = _check_duration(duration)
        if d not in self._counts:
            full = self._counts[TARGET_DURATION]
            if d == TARGET_DURATION:
                return full
            self._counts[d] = thin_counts(full, d / TARGET_DURATION,
                                          stream_rng(self.seed, _THIN, int(round(d * 1000))))
        return self._counts[d]

    def reconstruct(self, version: str, counts: list[np.ndarray],
                    durations: list[float]) -> list[np.ndarray]:
        """Reconstruct several count sinograms (each ``(n_rows, Z)``) in one batched OSEM."""
        if version not in self.versions:
            raise KeyError(f"unknown reconstruction version {version!r}; have "
                           f"{sorted(self.versions)}")
        if len(counts) != len(durations) or not counts:
            raise ValueError("need one duration per count sinogram")
        e = self.expected
        y = torch.from_numpy(np.concatenate(counts, axis=1).astype(np.float32))
        mult = torch.cat([e.multiplicative * d for d in durations], dim=1)
        add = torch.cat([e.background * d for d in durations], dim=1)
        img = osem(y, mult, add, self.geom, self.versions[version], mask=self._mask).numpy()
        nz = e.trues.shape[1]
        return [img[i * nz: (i + 1) * nz].copy() for i in range(len(counts))]

    def reconstruct_durations(self, version: str, durations: Iterable[float]) -> None:
        ds = [_check_duration(d) for d in durations]
        imgs = self.reconstruct(version, [self.counts(d) for d in ds], ds)
        for d, im in zip(ds, imgs, strict=True):
            self.images[(version, _key(d))] = im

    def noiseless(self, version: str, duration: float = TARGET_DURATION) -> np.ndarray:
        """The noiseless reconstruction of the protocol: the expected prompt counts of a
        ``duration``-s acquisition (no Poisson noise) reconstructed with ``version``'s OSEM,
        the same algorithm, iterations, subsets and filter as the noisy images. It is what the
        reconstruction makes of the object, so an image metric against it measures the
        denoiser's error alone (the 600-s image also carries 600 s of noise). OSEM is not
        linear, so it is not the mean of noisy reconstructions. Cached."""
        d = _check_duration(duration)
        key = (version, d)
        if key not in self._noiseless:
            expected = (self.expected.prompts * d).numpy().astype(np.float64)
            (self._noiseless[key],) = self.reconstruct(version, [expected], [d])
        return self._noiseless[key]

    def noise2noise(self, version: str, duration: float = 120) -> tuple[np.ndarray, np.ndarray]:
        """Two independent half-count reconstructions from the ``duration``-s data (the paper
        splits 120 s into 2 x 60 s for Noise2Noise online learning)."""
        d = _check_duration(duration)
        a, b = split_counts(self.counts(d), [0.5, 0.5], stream_rng(self.seed, _N2N, int(d * 1000)))
        i1, i2 = self.reconstruct(version, [a, b], [d / 2, d / 2])
        return i1, i2

    def realizations(self, version: str, duration: float = 60, n: int = 10) -> np.ndarray:
        """``n`` i.i.d. ``duration``-s realizations split from the 600-s data, reconstructed:
        ``(n, Z, H, W)`` (the paper's 10 x 60 s for ensemble bias and CoV)."""
        d = _check_duration(duration)
        if not isinstance(n, int) or n < 1 or n * d > TARGET_DURATION + 1e-9:
            raise ValueError(f"need an int n >= 1 with n * duration <= {TARGET_DURATION} s, "
                             f"got n={n!r}, duration={d}")
        parts = split_counts(self.counts(TARGET_DURATION), [d / TARGET_DURATION] * n,
                             stream_rng(self.seed, _REAL, int(d * 1000), n))
        return np.stack(self.reconstruct(version, parts, [d] * n))

    def suv(self, image: np.ndarray) -> np.ndarray:
        """Convert a kBq/mL image of this study to SUV (body-weight)."""
        return image * np.float32(self.meta["suv_per_kbq_ml"])

    def __repr__(self) -> str:
        m = self.meta
        return (f"Study(seed={self.seed}, bmi={m['bmi_class']} ({m['bmi']:.1f}), "
                f"region={m['region']}, unseen={m['unseen']}, shape={self.labels.shape}, "
                f"images={sorted(self.images)})")


def _check_duration(d) -> float:
    if isinstance(d, bool) or not isinstance(d, int | float | np.integer | np.floating):
        raise TypeError(f"duration must be a number of seconds, got {d!r}")
    d = float(d)
    if not (math.isfinite(d) and 0 < d <= TARGET_DURATION):
        raise ValueError(f"duration must be in (0, {TARGET_DURATION}] s, got {d}")
    return d


def _key(d: float) -> int | float:
    return int(d) if float(d).is_integer() else d


def simulate_study(
    seed: int,
    *,
    bmi: str = "low",
    n_slices: int = 32,
    shape: int = 128,
    durations: Iterable[float] = DURATIONS,
    versions: Iterable[str] = ("v1", "v2"),
    unseen: str | None = None,
    region: str | None = None,
    slice_mm: float = 4.0,
    n_angles: int | None = None,
    scanner: ScannerModel | None = None,
    recon_configs: dict[str, ReconConfig] | None = None,
) -> Study:
    """Simulate one patient: phantom, 600-s acquisition, thinned durations, reconstructions.

    The FOV is 512 mm, so pixels are ``512 / shape`` mm (4 mm at 128); the sinogram has
    ``shape`` bins of the pixel size and ``n_angles`` views (default ``shape``) over 180 deg.
    The counts depend on the patient, dose and duration, not on ``shape``, ``n_angles`` or
    ``slice_mm`` beyond the axial length covered (``ScannerModel.bin_scale``).
    ``region`` defaults to "abdomen", or "pelvis" when ``unseen`` is set. Bit-identical for a
    given seed and arguments.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(shape, int | np.integer) or shape < 16:
        raise ValueError(f"shape must be an int >= 16, got {shape!r}")
    configs = dict(RECON_VERSIONS if recon_configs is None else recon_configs)
    versions = tuple(versions)
    for v in versions:
        if v not in configs:
            raise ValueError(f"unknown reconstruction version {v!r}; choose from {sorted(configs)}")
    ds = sorted({_check_duration(d) for d in durations})
    if region is None:
        region = "pelvis" if unseen is not None else "abdomen"
    scanner = ScannerModel() if scanner is None else scanner
    pixel_mm = FOV_MM / shape
    geom = Geometry(int(shape), pixel_mm, int(n_angles or shape), int(shape), pixel_mm)

    phantom = make_phantom(stream_rng(int(seed), _PHANTOM), bmi=bmi, n_slices=n_slices, shape=shape,
                           pixel_mm=pixel_mm, slice_mm=slice_mm, region=region, unseen=unseen)
    exp = expected_data(phantom, geom, scanner)
    prompts600 = poisson_counts(exp.prompts.numpy(), TARGET_DURATION,
                                stream_rng(int(seed), _POISSON))

    pm = phantom.meta
    meta = {
        "seed": int(seed),
        **{k: pm[k] for k in ("bmi_class", "bmi", "height_m", "weight_kg", "injected_dose_mbq",
                              "uptake_time_s", "region", "z_center_mm", "unseen",
                              "fat_thickness_mm", "catheter_path_mm")},
        "suv_of_organs": pm["suv"],
        "units": "kBq/mL",
        "suv_per_kbq_ml": 1.0 / pm["kbq_ml_per_suv"],
        "voxel_size_mm": [pixel_mm, pixel_mm, float(slice_mm)],
        "geometry": dataclasses.asdict(geom),
        "scanner": dataclasses.asdict(scanner),
        "recon": {k: dataclasses.asdict(c) for k, c in configs.items()},
        "lesions": phantom.lesions,
        "counts_600s": {
            "prompts": int(prompts600.sum()),
            "expected_trues": float(exp.trues.sum() * TARGET_DURATION),
            "prompts_per_slice": float(prompts600.sum() / n_slices),
            "scatter_fraction": float(exp.scatter.sum() / exp.prompts.sum()),
            "randoms_fraction": float(exp.randoms.sum() / exp.prompts.sum()),
        },
        "mean_diameter_cm": float(exp.diameter_cm.mean()),
    }
    study = Study(int(seed), phantom, exp, geom, scanner, configs, meta)
    study._counts[float(TARGET_DURATION)] = prompts600
    for v in versions:
        study.reconstruct_durations(v, ds)
    study.meta["prompts"] = {str(_key(d)): int(study.counts(d).sum()) for d in ds}
    return study
