"""The model protocol: what tgd needs to know about a network besides its ``forward``.

A network may define any of these (plain attributes, class attributes or properties):

* ``spatial_dims``: 2 (slices; a 2.5-D net takes neighbouring slices as channels) or 3 (volumes);
* ``size_multiple``: every spatial input size must be a multiple of it (a U-Net with ``n``
  pooling levels: ``2 ** (n - 1)``); inference pads to it, training checks it;
* ``receptive_radius``: how many voxels of context on either side, along every spatial axis,
  an output voxel can see (an upper bound is fine); 3-D chunked denoising uses it as the
  default halo, which makes chunking exact;
* ``in_channels``: channels of the input;
* ``example_input()``: a small zero input the net accepts (one sample, on its device and
  dtype), which ``tgd.plan`` traces to find the channel flow.

``tgd.models.DnCNN`` and ``UNet`` define all of them. For any other ``nn.Module``,
:func:`model_traits` reads what the model defines, takes what the caller passes, and infers the
rest:

* ``spatial_dims``: from the first conv (a module with a ``kernel_size`` and a ``weight``:
  its weight has ``2 + spatial_dims`` dimensions); a model without one must say it;
* ``size_multiple``: 1;
* ``in_channels``: the first conv's ``in_channels``;
* ``receptive_radius``: for a net that never changes resolution (every conv and pooling of
  stride 1, no transposed conv or upsampling), the sum over its convs and poolings of
  ``ceil(dilation * (kernel - 1) / 2)``, an upper bound that is exact for a plain stack of
  convs; otherwise ``None`` (unknown), and what needs it (chunked 3-D denoising without a
  halo) raises an error asking for it;
* ``example_input()``: ``tgd.plan``'s own default (the smallest zero input the net accepts).

So a user's network works with ``tgd denoise`` and ``tgd online`` when its class sets these
attributes where inference would be wrong (and is loadable: ``tgd.models.registry``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# the default planning input: this many voxels per spatial dim (more if the size multiple
# needs it); big enough for every tgd net, small enough to trace quickly
EXAMPLE_SIZE = 32


@dataclass(frozen=True)
class ModelTraits:
    """What tgd knows about one network (:func:`model_traits`)."""

    spatial_dims: int
    size_multiple: int
    in_channels: int | None
    receptive_radius: int | None  # None: unknown

    @property
    def memory_format(self) -> torch.memory_format:
        """``channels_last`` for 2-D nets, ``channels_last_3d`` for 3-D nets."""
        return torch.channels_last_3d if self.spatial_dims == 3 else torch.channels_last

    def require_receptive_radius(self, name: str, hint: str) -> int:
        """The receptive radius, or an error that says how to give it (``hint``)."""
        if self.receptive_radius is None:
            raise ValueError(
                f"tgd cannot tell the receptive field of {name} (it changes resolution): "
                f"{hint}, or give the class a 'receptive_radius' attribute (voxels of context "
                "on either side of an output voxel; an upper bound is fine)")
        return self.receptive_radius


def _is_layer(m: nn.Module) -> bool:
    """A module without sub-modules (a parametrized conv, e.g. under ``tgd.attach``, counts:
    its only child holds the parametrizations)."""
    return all(name == "parametrizations" for name, _ in m.named_children())


def _kernel_modules(model: nn.Module) -> list[nn.Module]:
    """Convs and poolings (leaf modules with a ``kernel_size``), in registration order."""
    return [m for m in model.modules() if _is_layer(m) and hasattr(m, "kernel_size")]


def _first_conv(model: nn.Module) -> nn.Module | None:
    return next((m for m in _kernel_modules(model)
                 if isinstance(getattr(m, "weight", None), torch.Tensor)), None)


def _tuple(v, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, tuple | list) else (v,) * n


def stack_radius(model: nn.Module, spatial_dims: int) -> int | None:
    """Receptive radius of a net that never changes resolution (see the module docstring);
    None if some layer strides, upsamples or transposes."""
    radius = 0
    for m in filter(_is_layer, model.modules()):
        # upsampling, transposed convs, adaptive (global) pooling
        if isinstance(m, nn.Upsample) or getattr(m, "transposed", False) \
                or hasattr(m, "output_size"):
            return None
        if not hasattr(m, "kernel_size"):
            continue
        stride = _tuple(getattr(m, "stride", 1) or 1, spatial_dims)
        if any(s != 1 for s in stride):
            return None
        k = _tuple(m.kernel_size, spatial_dims)
        d = _tuple(getattr(m, "dilation", 1), spatial_dims)
        radius += max((di * (ki - 1) + 1) // 2 for ki, di in zip(k, d, strict=False))
    return radius


def _declared(model: nn.Module, name: str, given):
    if given is not None:
        return given
    return getattr(model, name, None)


def _positive_int(name: str, v, model: nn.Module, allow_zero: bool = False) -> int:
    lo = 0 if allow_zero else 1
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{type(model).__name__}.{name} must be an integer >= {lo}, got {v!r}")
    return v


def model_traits(model: nn.Module, *, spatial_dims: int | None = None,
                 size_multiple: int | None = None, receptive_radius: int | None = None,
                 in_channels: int | None = None) -> ModelTraits:
    """The traits of ``model``: the arguments given, else the model's own attributes, else
    what can be inferred (module docstring)."""
    first = _first_conv(model)
    dims = _declared(model, "spatial_dims", spatial_dims)
    if dims is None:
        if first is None:
            raise ValueError(f"{type(model).__name__} has no conv layer to tell its spatial "
                             "dims from: give it a 'spatial_dims' attribute (2 or 3)")
        dims = first.weight.dim() - 2
    if dims not in (2, 3) or isinstance(dims, bool):
        raise ValueError(f"{type(model).__name__}: spatial_dims must be 2 or 3, got {dims!r}")
    multiple = _declared(model, "size_multiple", size_multiple)
    multiple = 1 if multiple is None else _positive_int("size_multiple", multiple, model)
    channels = _declared(model, "in_channels", in_channels)
    if channels is None and first is not None:
        channels = first.in_channels
    radius = _declared(model, "receptive_radius", receptive_radius)
    if radius is None:
        radius = stack_radius(model, dims)
    else:
        radius = _positive_int("receptive_radius", radius, model, allow_zero=True)
    return ModelTraits(int(dims), multiple, channels, radius)


def example_input(model: nn.Module, size: int = EXAMPLE_SIZE) -> torch.Tensor:
    """A zero input for ``model``: 1 sample, ``in_channels``, ``size`` voxels per spatial dim
    (rounded up to the size multiple), on the model's device and dtype."""
    t = model_traits(model)
    if t.in_channels is None:
        raise ValueError(f"{type(model).__name__} has no 'in_channels' and no conv to read "
                         "them from")
    n = -(-max(size, t.size_multiple) // t.size_multiple) * t.size_multiple
    p = next(model.parameters())
    return torch.zeros(1, t.in_channels, *[n] * t.spatial_dims, device=p.device, dtype=p.dtype)
