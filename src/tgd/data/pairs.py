"""The data contract of training and fine-tuning: :class:`PairedVolumes`, one study's images as
``(Z, H, W)`` arrays: one or more inputs (the same object at the user's count levels, doses or
reconstructions) and one target (the full-count or normal-dose image), optionally an integer
class map for losses that use labels.

Normalisation: the networks see images multiplied by a scale, the same for an input and its
target. By default (``scales=None``) each input's scale is :func:`tgd.data.intensity_scale` of
that input, 1 / its mean over the estimated body: exactly what ``tgd denoise`` applies to an
image it has never seen, so training and inference read the same intensities and nothing but
the input. ``scales`` gives the factors instead (one for all inputs, or one per input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tgd.data.volumes import as_volume, intensity_scale

__all__ = ["PairedVolumes"]


@dataclass
class PairedVolumes:
    """Inputs (one per level) and the target of one study; see the module docstring.

    ``levels`` names the inputs (e.g. acquisition seconds or dose fractions; default their
    index), ``name`` the study (it appears in errors and provenance).
    """

    inputs: Sequence
    target: object
    scales: float | Sequence[float] | None = None
    classes: object | None = None
    levels: Sequence | None = None
    name: str = "study"

    def __post_init__(self) -> None:
        if isinstance(self.inputs, np.ndarray | torch.Tensor):
            self.inputs = [self.inputs]
        if len(self.inputs) == 0:
            raise ValueError(f"{self.name}: needs at least one input image")
        self.levels = tuple(range(len(self.inputs))) if self.levels is None else tuple(self.levels)
        if len(self.levels) != len(self.inputs):
            raise ValueError(f"{self.name}: {len(self.levels)} levels for "
                             f"{len(self.inputs)} inputs")

    def volumes(self) -> tuple[list[torch.Tensor], torch.Tensor, list[float]]:
        """Checked raw ``(inputs, target, scales)``: float32 tensors of one shape and one
        positive finite scale per input."""
        target = as_volume(self.target, f"{self.name}: target")
        inputs = [as_volume(x, f"{self.name}: input {lv}") for x, lv in
                  zip(self.inputs, self.levels, strict=True)]
        for x, lv in zip(inputs, self.levels, strict=True):
            if x.shape != target.shape:
                raise ValueError(f"{self.name}: input {lv} {tuple(x.shape)} and target "
                                 f"{tuple(target.shape)} differ in shape")
        if self.scales is None:
            scales = [intensity_scale(x) for x in inputs]
        elif isinstance(self.scales, int | float):
            scales = [float(self.scales)] * len(inputs)
        else:
            scales = [float(s) for s in self.scales]
            if len(scales) != len(inputs):
                raise ValueError(f"{self.name}: {len(scales)} scales for {len(inputs)} inputs")
        for s in scales:
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"{self.name}: scale must be positive and finite, got {s}")
        return inputs, target, scales

    def class_volume(self) -> torch.Tensor:
        """The class map as an int64 tensor of the target's shape (ValueError if absent, not
        integer, negative or mis-shaped)."""
        if self.classes is None:
            raise ValueError(f"{self.name}: has no class map (the task loss needs labels)")
        c = torch.as_tensor(np.asarray(self.classes))
        if c.dtype.is_floating_point or c.dtype == torch.bool:
            raise ValueError(f"{self.name}: classes must be an integer volume, got {c.dtype}")
        shape = tuple(np.shape(self.target))
        if tuple(c.shape) != shape:
            raise ValueError(f"{self.name}: class volume {tuple(c.shape)} does not match the "
                             f"images {shape}")
        if bool((c < 0).any()):
            raise ValueError(f"{self.name}: classes must be >= 0 (0 is the background)")
        return c.to(torch.int64)
