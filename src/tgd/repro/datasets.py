"""Simulated (or saved) studies as the library's training data: :func:`study_pairs` turns studies
(``images[(version, seconds)]``, ``labels``, ``meta``) into :class:`tgd.data.PairedVolumes`
(every input duration -> the 600-s target of one reconstruction), with the study's scale.

Normalisation of the reproduction's training data (``normalize``): ``"target_mean"`` (1 / the
body mean of the 600-s image inside the labelled body, the v1/v2-nets' convention), ``"suv"``
(kBq/mL -> SUV), ``"input"`` (the library's default: each input's own body mean, what
``tgd denoise`` applies) or ``None`` (1).
"""

from __future__ import annotations

from collections.abc import Sequence

from tgd.data import PairedVolumes, intensity_scale
from tgd.repro.sim.classes import task_classes
from tgd.repro.sim.study import INPUT_DURATIONS, TARGET_DURATION

NORMALIZATIONS = ("target_mean", "suv", "input", None)


def study_scale(study, version: str, normalize: str | None = "target_mean") -> float | None:
    """Per-study factor applied to input and target (``None`` for ``"input"``: each input's
    own scale)."""
    if normalize is None:
        return 1.0
    if normalize == "input":
        return None
    if normalize == "suv":
        return float(study.meta["suv_per_kbq_ml"])
    if normalize == "target_mean":
        key = (version, TARGET_DURATION)
        if key not in study.images:
            raise KeyError(f"study {study.seed} has no {key} image to normalise by")
        return intensity_scale(study.images[key], study.labels > 0)
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def study_pairs(studies: Sequence, version: str,
                input_durations: Sequence[float] = INPUT_DURATIONS,
                target_duration: float = TARGET_DURATION,
                normalize: str | None = "target_mean", classes: bool = False
                ) -> list[PairedVolumes]:
    """One :class:`PairedVolumes` per study: the ``input_durations`` images of ``version`` ->
    its ``target_duration`` image; ``classes``: with the task classes of its labels."""
    if len(studies) == 0:
        raise ValueError("need at least one study")
    if len(input_durations) == 0:
        raise ValueError("need at least one input duration")
    out = []
    for st in studies:
        for d in (*input_durations, target_duration):
            if (version, d) not in st.images:
                raise KeyError(f"study seed={st.seed} has no image {(version, d)}; "
                               f"has {sorted(st.images)}")
        out.append(PairedVolumes(
            [st.images[(version, d)] for d in input_durations],
            st.images[(version, target_duration)], scales=study_scale(st, version, normalize),
            classes=task_classes(st.labels) if classes else None,
            levels=tuple(input_durations), name=f"study {st.seed}"))
    return out
