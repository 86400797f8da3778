"""The task classes of the downstream task (TOD-Net) for simulated studies.

One class scheme for PET and CT studies of the same phantoms (``TASK_CLASSES``): 0 background
(everything else), 1 liver, 2 kidney, 3 lesion (every lesion / tumour, whatever its host: the
label ids from ``tgd.repro.sim.phantom.LESION_ID0`` upwards). LiTS segments liver + liver
tumour, KiTS kidney + kidney tumour; here one segmenter does both organs and their tumours.
"""

from __future__ import annotations

import numpy as np

from tgd.repro.sim.phantom import LABELS, LESION_ID0

TASK_CLASSES = ("background", "liver", "kidney", "lesion")


def task_classes(labels: np.ndarray) -> np.ndarray:
    """Phantom label volume -> ``TASK_CLASSES`` indices (int64, same shape)."""
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be an integer volume, got {lab.dtype}")
    out = np.zeros(lab.shape, np.int64)
    out[lab == LABELS["liver"]] = 1
    out[lab == LABELS["kidney"]] = 2
    out[lab >= LESION_ID0] = 3
    return out


def lesion_roi(classes: np.ndarray, margin: int = 2) -> np.ndarray:
    """The task ROI: lesion voxels dilated in-plane by ``margin`` voxels (a square), so the ROI
    holds each lesion and its rim (where denoising blurs lesion into background)."""
    from scipy.ndimage import binary_dilation

    les = np.asarray(classes) == TASK_CLASSES.index("lesion")
    if margin <= 0:
        return les
    st = np.zeros((1, 2 * margin + 1, 2 * margin + 1), bool)
    st[0] = True
    return binary_dilation(les, structure=st) if les.ndim == 3 else binary_dilation(
        les, structure=st[0])


