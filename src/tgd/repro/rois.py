"""Regions of interest of a simulated study, and the true values measured against.

- lesion ROI: the lesion's label (majority of its 8 fine voxels); its truth ``T`` is the
  lesion's true concentration (``lesion["suv"] / meta["suv_per_kbq_ml"]``, kBq/mL). The ROI
  includes the partial-volume rim, so every image, even the 600-s one, is biased low against
  ``T``; the paper's slides use the 600-s image's ROI mean as ``T`` instead; both are reported.
  Lesions come in two classes (``lesion["class"]``, from the radius): "large" (radius >= 10
  mm, what Table 1 measures) and "small"; :func:`lesion_rois` lists them, lesions without a
  voxel on the grid left out.
- liver ROI: the liver eroded in-plane by one voxel, minus the lesions dilated by 2 voxels.
- background ROI (pelvis studies, which have no liver): soft tissue eroded by one voxel, minus
  every unseen feature and lesion dilated by 2 voxels.
- unseen ROI: the unseen bladder lobe and catheter labels dilated in-plane by one voxel (the
  hot structure and its edge, where a network that never saw it errs).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tgd.evaluation.metrics import interior
from tgd.repro.sim.phantom import lesion_class

LESION_CLASSES = ("large", "small")

UNSEEN_LABELS = ("bladder_unseen", "catheter")


def _label(study, name: str) -> np.ndarray:
    names = study.label_names
    return study.labels == names[name] if name in names else np.zeros(study.labels.shape, bool)


def lesion_masks(study) -> np.ndarray:
    """Union of every lesion's label."""
    m = np.zeros(study.labels.shape, bool)
    for les in study.lesions:
        m |= study.labels == les["label"]
    return m


def lesion_rois(study, cls: str | None = None) -> list[dict]:
    """Every lesion with voxels on the grid, in label order (only class ``cls`` if given):
    ``{name, class, host, mask, truth_kbq_ml, voxels, radius_mm}``."""
    if cls is not None and cls not in LESION_CLASSES:
        raise ValueError(f"lesion class must be one of {LESION_CLASSES}, got {cls!r}")
    out = []
    for les in study.lesions:
        mask = study.labels == les["label"]
        n = int(mask.sum())
        c = les.get("class", lesion_class(les["radius_mm"]))
        if n == 0 or (cls is not None and c != cls):
            continue
        truth = float(les["suv"]) / float(study.meta["suv_per_kbq_ml"])
        out.append({"name": les["name"], "class": c, "host": les["host"], "mask": mask,
                    "truth_kbq_ml": truth, "voxels": n, "radius_mm": float(les["radius_mm"])})
    return out


def main_lesion(study) -> dict:
    """The largest lesion with voxels in the grid (see :func:`lesion_rois` for the keys)."""
    cands = lesion_rois(study)
    if not cands:
        raise ValueError(f"study {study.seed} has no lesion voxel on this grid")
    return max(cands, key=lambda c: c["voxels"])


def liver_roi(study) -> np.ndarray:
    m = interior(_label(study, "liver"), erode=1, exclude=lesion_masks(study))
    if not m.any():
        raise ValueError(f"study {study.seed} has no liver ROI (region "
                         f"{study.meta.get('region')}); use background_roi")
    return m


def unseen_roi(study, dilate: int = 1) -> np.ndarray:
    m = np.zeros(study.labels.shape, bool)
    for name in UNSEEN_LABELS:
        m |= _label(study, name)
    if not m.any():
        raise ValueError(f"study {study.seed} has no unseen feature (simulate with unseen=...)")
    if dilate:
        st = np.zeros((1, 3, 3), bool)
        st[0] = ndimage.generate_binary_structure(2, 1)
        m = ndimage.binary_dilation(m, st, iterations=dilate)
    return m


def background_roi(study) -> np.ndarray:
    hot = lesion_masks(study)
    for name in UNSEEN_LABELS + ("bladder",):
        hot |= _label(study, name)
    m = interior(_label(study, "soft_tissue"), erode=1, exclude=hot)
    if not m.any():
        raise ValueError(f"study {study.seed} has no soft-tissue background ROI")
    return m


def labelled_body_mask(study) -> np.ndarray:
    """The body as the phantom's labels give it (every labelled voxel), for evaluation;
    ``tgd.data.datasets.otsu_body_mask`` estimates it from an image instead."""
    return study.labels > 0
