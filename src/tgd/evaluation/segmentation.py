"""Overlap of hard segmentations: Dice per class."""

from __future__ import annotations

import numpy as np


def dice_per_class(pred, truth, classes) -> dict[int, float]:
    """``{c: 2 |P_c & T_c| / (|P_c| + |T_c|)}`` for each class index in ``classes``; NaN where the
    class is absent from both (so an average over cases can skip it)."""
    p, t = np.asarray(pred), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ in shape")
    out = {}
    for c in classes:
        pc, tc = p == c, t == c
        denom = int(pc.sum()) + int(tc.sum())
        out[int(c)] = float(2 * int((pc & tc).sum()) / denom) if denom else float("nan")
    return out
