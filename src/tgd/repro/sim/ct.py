"""Low-dose CT from the same randomised phantoms: HU at ~70 keV, transmission data, FBP.

Physics (monoenergetic at an effective energy of 70 keV; beam hardening, scatter, the bowtie
filter and fan-beam geometry are not modelled):

1. **Object.** Every phantom label gets a CT number (``HU_70KEV``: a contrast-enhanced,
   portal-venous-phase abdomen). Liver tumours (the phantom's liver lesion) are hypodense, about
   45 HU below the liver as in LiTS; each kidney in the window gets a tumour (radius 7-12 mm),
   about 70 HU below the enhancing kidney, as in KiTS. Lesions elsewhere (nodes, lung, bone)
   are soft-tissue density. Per study, organ values are jittered by +-10 HU and each tumour's
   contrast by +-30 %. ``mu = mu_water (1 + HU / 1000)`` with ``mu_water = 0.193 /cm``.
2. **Line integrals** of the fine (2x) mu-map, averaged over each slice's thickness, with the
   exact strip projector on the fine grid (``tgd.repro.sim.projector``, parallel beam over 180 deg):
   the data and the reconstruction use different operators, so there is no inverse crime.
3. **Counts.** ``N ~ Poisson(I0 exp(-p))`` per ray, ``I0`` photons per ray (bin x view) without
   the object: ``DOSE_LEVELS`` gives normal, quarter and tenth dose. Optional electronic noise:
   Gaussian of ``electronic_sd`` counts added to ``N``. Counts below ``0.5`` are set to ``0.5``
   (photon starvation) before ``p_hat = log(I0 / N)``.
4. **FBP.** Each view's ``p_hat`` is convolved with the band-limited ramp kernel (Ram-Lak, the
   spatial-domain form of Kak & Slaney, zero-padded to a power of two >= 2 bins) times an
   apodisation window (``hann`` by default; ``ramlak``, ``shepp-logan``, ``cosine``) and
   back-projected with the pixel-driven projector's transpose, scaled by ``pi / n_views``
   (``fbp``). Pixels outside the field of view are set to air.

A CT study holds HU images per dose level (``images[("ct", "normal" | "quarter" | "tenth")]``),
the noise-free FBP (``noise_free``), the true voxel-mean HU (``truth``), labels (the phantom's
plus the kidney tumours) and metadata; ``write_ct_study`` writes them as NIfTI in HU with the
label masks.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from tgd.repro.sim.phantom import LABELS, LESION_ID0, Phantom, majority_labels, make_phantom
from tgd.repro.sim.projector import Geometry, get_projector

__all__ = ["CTStudy", "DOSE_LEVELS", "HU_70KEV", "MU_WATER_70KEV_PER_MM", "fbp", "hu_to_mu",
           "mu_to_hu", "ramp_filter", "simulate_ct", "transmission_counts", "write_ct_study"]

MU_WATER_70KEV_PER_MM = 0.0193
# Contrast-enhanced (portal venous) CT numbers at ~70 keV.
HU_70KEV = {
    "background": -1000.0, "soft_tissue": 50.0, "fat": -100.0, "lung": -850.0, "liver": 110.0,
    "spleen": 120.0, "myocardium": 110.0, "blood": 160.0, "kidney": 180.0, "bone": 1000.0,
    "marrow": 250.0, "bladder": 10.0, "bladder_unseen": 10.0, "catheter": 10.0,
    "lesion": 45.0,
}
LIVER_TUMOUR_CONTRAST_HU = -45.0
KIDNEY_TUMOUR_CONTRAST_HU = -70.0
# Photons per ray (one bin of one view) without the object.
DOSE_LEVELS = {"normal": 1.0e5, "quarter": 2.5e4, "tenth": 1.0e4}
WINDOWS = ("ramlak", "hann", "shepp-logan", "cosine")
_PHANTOM, _TUMOUR, _POISSON = 0, 11, 12


def hu_to_mu(hu):
    return MU_WATER_70KEV_PER_MM * (1.0 + np.asarray(hu, np.float64) / 1000.0)


def mu_to_hu(mu):
    return 1000.0 * (np.asarray(mu, np.float64) / MU_WATER_70KEV_PER_MM - 1.0)


def ramp_filter(n_bins: int, bin_mm: float, window: str = "hann") -> torch.Tensor:
    """Frequency response (rfft bins of the padded length) of the apodised ramp, including the
    sample spacing, so ``irfft(rfft(p) * H)`` is ``bin_mm * (h * p)``."""
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    size = 1 << int(math.ceil(math.log2(2 * n_bins)))
    n = np.concatenate([np.arange(0, size // 2 + 1), np.arange(-size // 2 + 1, 0)])
    h = np.zeros(size)
    h[0] = 1.0 / (4 * bin_mm**2)
    odd = n % 2 == 1
    h[odd] = -1.0 / (np.pi * n[odd] * bin_mm) ** 2
    resp = np.real(np.fft.rfft(h)) * bin_mm
    f = np.fft.rfftfreq(size)  # cycles per sample, 0 .. 0.5
    w = {"ramlak": np.ones_like(f), "hann": 0.5 * (1 + np.cos(2 * np.pi * f)),
         "shepp-logan": np.sinc(f), "cosine": np.cos(np.pi * f)}[window]
    return torch.from_numpy(resp * w)


def fbp(sino: torch.Tensor, geom: Geometry, window: str = "hann",
        mask: np.ndarray | None = None) -> torch.Tensor:
    """Filtered back-projection of line integrals ``(n_rows, Z)`` -> mu ``(Z, N, N)`` (1/mm)."""
    if sino.dim() != 2 or sino.shape[0] != geom.n_rows:
        raise ValueError(f"sinogram must be ({geom.n_rows}, Z), got {tuple(sino.shape)}")
    if not torch.isfinite(sino).all():
        raise ValueError("sinogram contains NaN or infinite values")
    nz = sino.shape[1]
    h = ramp_filter(geom.n_bins, geom.bin_mm, window)
    size = 2 * (h.numel() - 1)
    views = sino.to(torch.float64).reshape(geom.n_angles, geom.n_bins, nz)
    spec = torch.fft.rfft(views, n=size, dim=1) * h[None, :, None]
    q = torch.fft.irfft(spec, n=size, dim=1)[:, :geom.n_bins].reshape(geom.n_rows, nz)
    proj = get_projector(geom, "pixel", 2, 1)
    img = proj.back(q.to(torch.float32)).to(torch.float64)
    img *= math.pi / geom.n_angles * geom.bin_mm / geom.pixel_mm**2
    img = img.T.reshape(nz, geom.shape, geom.shape)
    fov = torch.from_numpy(geom.fov_mask() if mask is None else mask)
    return torch.where(fov, img, torch.zeros((), dtype=img.dtype)).to(torch.float32)


def transmission_counts(line_integrals: np.ndarray, i0: float, rng: np.random.Generator,
                        electronic_sd: float = 0.0) -> np.ndarray:
    """Detected counts per ray: Poisson(I0 exp(-p)) (+ Gaussian electronic noise), >= 0.5."""
    if not (math.isfinite(i0) and i0 > 0):
        raise ValueError(f"I0 must be a positive number of photons, got {i0}")
    if electronic_sd < 0:
        raise ValueError(f"electronic_sd must be >= 0, got {electronic_sd}")
    p = np.asarray(line_integrals, np.float64)
    if not np.isfinite(p).all() or (p < -1e-6).any():
        raise ValueError("line integrals must be finite and non-negative")
    n = rng.poisson(i0 * np.exp(-np.maximum(p, 0.0))).astype(np.float64)
    if electronic_sd > 0:
        n += rng.normal(0.0, electronic_sd, n.shape)
    return np.maximum(n, 0.5)


def _hu_table(rng: np.random.Generator) -> dict[str, float]:
    tab = dict(HU_70KEV)
    for k in ("soft_tissue", "liver", "spleen", "kidney", "blood", "myocardium", "marrow"):
        tab[k] += float(rng.uniform(-10, 10))
    return tab


def _add_kidney_tumours(ph: Phantom, rng: np.random.Generator) -> list[dict]:
    """Paint one spherical tumour inside each kidney of the window (fine labels, in place)."""
    lab = ph.labels_fine
    ov = ph.oversample
    fp, fs = ph.pixel_mm / ov, ph.slice_mm / ov
    nzf, nf, _ = lab.shape
    c = (np.arange(nf) - (nf - 1) / 2) * fp
    z0 = ph.z_mm[0] - ph.slice_mm / 2
    zf = z0 + (np.arange(nzf) - ph.margin + 0.5) * fs
    z_lo, z_hi = z0, z0 + len(ph.z_mm) * ph.slice_mm
    kid = np.argwhere(lab == LABELS["kidney"])
    out: list[dict] = []
    if kid.size == 0:
        return out
    for side in (-1, 1):
        sel = kid[np.sign(c[kid[:, 2]]) == side]
        if len(sel) == 0:
            continue
        for _ in range(200):
            r = float(rng.uniform(7.0, 12.0))
            k, j, i = sel[rng.integers(len(sel))]
            cz, cy, cx = zf[k], c[j], c[i]
            if cz - r < z_lo or cz + r > z_hi:
                continue
            ks = np.nonzero(np.abs(zf - cz) <= r)[0]
            js = np.nonzero(np.abs(c - cy) <= r)[0]
            is_ = np.nonzero(np.abs(c - cx) <= r)[0]
            zz, yy, xx = np.meshgrid(zf[ks], c[js], c[is_], indexing="ij")
            inside = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            block = lab[ks[0]:ks[-1] + 1, js[0]:js[-1] + 1, is_[0]:is_[-1] + 1]
            if not np.all(block[inside] == LABELS["kidney"]):
                continue
            lid = LESION_ID0 + len(ph.lesions) + len(out)
            block[inside] = lid
            out.append({"name": f"lesion_{len(ph.lesions) + len(out) + 1}", "label": int(lid),
                        "host": "kidney", "centre_mm": [float(cx), float(cy), float(cz)],
                        "radius_mm": r, "fine_voxels": int(inside.sum())})
            break
    return out


@dataclasses.dataclass
class CTStudy:
    """One simulated CT study; images ``(Z, N, N)`` float32 in HU."""

    seed: int
    images: dict
    noise_free: np.ndarray
    truth: np.ndarray
    labels: np.ndarray
    label_names: dict
    lesions: list
    geom: Geometry
    meta: dict
    z_mm: np.ndarray

    def normalised(self, key) -> np.ndarray:
        """``(HU + 1000) / 1000``, i.e. mu relative to water (air 0, water 1): what the networks
        see."""
        return hu_normalise(self.images[key])


def hu_normalise(hu):
    return (np.asarray(hu, np.float32) + 1000.0) / 1000.0


def hu_denormalise(v):
    return np.asarray(v, np.float32) * 1000.0 - 1000.0


def simulate_ct(seed: int, *, doses=("normal", "quarter", "tenth"), n_slices: int = 32,
                shape: int = 128, bmi: str = "low", z_center_mm: float = 470.0,
                n_angles: int | None = None, window: str = "hann",
                electronic_sd: float = 0.0, i0: dict | None = None) -> CTStudy:
    """Simulate one CT study (see the module docstring); bit-identical for a given seed.

    ``doses`` names levels of ``i0`` (default ``DOSE_LEVELS``, photons per ray); the phantom is
    the PET simulator's for the same ``seed`` (FOV 512 mm, ``512 / shape`` mm pixels), on a
    window centred at ``z_center_mm`` (default 470 mm: liver and both kidneys).
    ``n_angles`` defaults to ``2 * shape`` views over 180 deg.
    """
    i0 = dict(DOSE_LEVELS if i0 is None else i0)
    doses = tuple(doses)
    unknown = [d for d in doses if d not in i0]
    if unknown or not doses:
        raise ValueError(f"unknown dose levels {unknown}; known: {sorted(i0)}")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    from tgd.repro.sim.study import FOV_MM, stream_rng

    pixel_mm = FOV_MM / shape
    geom = Geometry(int(shape), pixel_mm, int(n_angles or 2 * shape), int(shape), pixel_mm)
    ph = make_phantom(stream_rng(int(seed), _PHANTOM), bmi=bmi, n_slices=n_slices, shape=shape,
                      pixel_mm=pixel_mm, slice_mm=4.0, z_center_mm=z_center_mm)
    trng = stream_rng(int(seed), _TUMOUR)
    kidney_tumours = _add_kidney_tumours(ph, trng)
    lesions = [dict(le) for le in ph.lesions] + kidney_tumours
    table = _hu_table(trng)
    lut = np.full(LESION_ID0 + len(lesions), np.nan)
    for name, lid in LABELS.items():
        lut[lid] = table[name]
    for le in lesions:
        if le["host"] == "liver":
            hu = table["liver"] + LIVER_TUMOUR_CONTRAST_HU * float(trng.uniform(0.7, 1.3))
        elif le["host"] == "kidney":
            hu = table["kidney"] + KIDNEY_TUMOUR_CONTRAST_HU * float(trng.uniform(0.7, 1.3))
        else:
            hu = table["lesion"]
        le["hu"] = float(hu)
        lut[le["label"]] = hu
    fine = ph.labels_fine
    ov, m = ph.oversample, ph.margin
    inner = fine[m:m + n_slices * ov]
    mu_fine = hu_to_mu(lut[inner])
    nf = shape * ov
    # average over each slice's thickness, then the fine in-plane grid is projected
    mu_slab = mu_fine.reshape(n_slices, ov, nf, nf).mean(1)
    truth = mu_to_hu(mu_fine.reshape(n_slices, ov, shape, ov, shape, ov).mean((1, 3, 5)))
    fine_geom = geom.fine(ov)
    strip = get_projector(fine_geom, "strip", 1, 1, False)
    p = strip.forward(torch.from_numpy(mu_slab.astype(np.float32))).numpy().astype(np.float64)
    p = np.maximum(p, 0.0)
    noise_free = mu_to_hu(fbp(torch.from_numpy(p), geom, window).numpy())
    fov = geom.fov_mask()
    noise_free[:, ~fov] = -1000.0
    images = {}
    for d in doses:
        rng = stream_rng(int(seed), _POISSON, int(round(i0[d])), int(electronic_sd * 1000))
        counts = transmission_counts(p, i0[d], rng, electronic_sd)
        img = mu_to_hu(fbp(torch.from_numpy(np.log(i0[d] / counts)), geom, window).numpy())
        img[:, ~fov] = -1000.0
        images[("ct", d)] = img.astype(np.float32)
    labels = majority_labels(inner, ov)
    names = dict(LABELS)
    for le in lesions:
        names[le["name"]] = le["label"]
        le["voxels"] = int((labels == le["label"]).sum())
    meta = {"seed": int(seed), "modality": "CT", "units": "HU", "effective_energy_kev": 70,
            "mu_water_per_mm": MU_WATER_70KEV_PER_MM, "hu_table": table,
            "i0_photons_per_ray": {d: i0[d] for d in doses}, "electronic_sd": electronic_sd,
            "fbp_window": window, "geometry": dataclasses.asdict(geom),
            "voxel_size_mm": [pixel_mm, pixel_mm, ph.slice_mm], "bmi": ph.meta["bmi"],
            "bmi_class": bmi, "z_center_mm": z_center_mm, "lesions": lesions}
    return CTStudy(int(seed), images, noise_free.astype(np.float32), truth.astype(np.float32),
                   labels, names, lesions, geom, meta, ph.z_mm)


def write_ct_study(study: CTStudy, out_dir, overwrite: bool = False) -> list[Path]:
    """``ct_{dose}.nii.gz`` (HU), ``ct_noise_free.nii.gz``, ``ct_truth.nii.gz``,
    ``labels.nii.gz`` and one ``mask_{name}.nii.gz`` per organ/tumour class of the task
    (liver, kidney, lesion), each with a JSON sidecar."""
    from tgd.data.io import LPS_TO_RAS, write_nifti
    from tgd.repro.sim.classes import TASK_CLASSES, task_classes

    out = Path(out_dir)
    dx, dy, dz = study.meta["voxel_size_mm"]
    nz, ny, nx = study.labels.shape
    lps = np.eye(4)
    lps[:3, :3] = np.diag([dx, dy, dz])
    lps[:3, 3] = [-(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy, float(study.z_mm[0])]
    aff = LPS_TO_RAS @ lps
    common = {"seed": study.seed, "modality": "CT", "voxel_size_mm": study.meta["voxel_size_mm"]}
    items = [(out / f"ct_{d}.nii.gz", img, {**common, "units": "HU", "dose": d,
                                             "i0_photons_per_ray": study.meta[
                                                 "i0_photons_per_ray"][d]})
             for (_, d), img in study.images.items()]
    items += [(out / "ct_noise_free.nii.gz", study.noise_free, {**common, "units": "HU"}),
              (out / "ct_truth.nii.gz", study.truth, {**common, "units": "HU",
                                                       "kind": "voxel-mean truth"}),
              (out / "labels.nii.gz", study.labels.astype(np.int16),
               {**common, "kind": "labels", "labels": study.label_names,
                "lesions": study.lesions, "hu_table": study.meta["hu_table"]})]
    cls = task_classes(study.labels)
    for k, name in enumerate(TASK_CLASSES[1:], start=1):
        items.append((out / f"mask_{name}.nii.gz", (cls == k).astype(np.uint8),
                      {**common, "kind": "mask", "class": name}))
    taken = [str(p) for p, _, _ in items if p.exists()]
    if taken and not overwrite:
        raise FileExistsError(f"refusing to overwrite {taken[0]} (and {len(taken) - 1} more)")
    return [write_nifti(p, a, aff, meta, overwrite=overwrite) for p, a, meta in items]
