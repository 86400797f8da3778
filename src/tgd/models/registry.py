"""Which networks tgd can build: by ``--arch`` name for training from scratch, and by a
checkpoint's ``"model"`` entry (its spec) when loading.

* ``ARCHS``: the denoisers ``tgd train --arch`` builds, ``{"dncnn": DnCNN, "unet": UNet}``;
  :func:`new_model` makes a fresh one from ``(arch, width, depth, spatial_dims)``.
* A spec is ``{"arch": <class name>, **constructor arguments}``, what ``model.spec()`` returns
  (:func:`model_spec`); :func:`build_model` rebuilds the net from it. Checkpoints store it as
  JSON beside the safetensors weights, so nothing is ever unpickled.

A network of your own takes part by defining ``spec()`` (JSON-safe constructor arguments plus
``"arch"``, a name for the class) and being findable under that name, in one of two ways:

* :func:`register_model` in your code, before saving or loading (library use);
* an entry point in the ``tgd.models`` group of your installed package, so that the ``tgd``
  commands find it without any import of yours::

      [project.entry-points."tgd.models"]
      MyNet = "mypackage.nets:MyNet"

  Only classes that an installed package advertises are loaded; a checkpoint cannot name
  arbitrary code. The model protocol (``spatial_dims``, ``size_multiple``,
  ``receptive_radius``, ``example_input``) is in ``tgd.models.traits``.
"""

from __future__ import annotations

from importlib import metadata

from torch import nn

from tgd.models.dncnn import DnCNN
from tgd.models.unet import UNet

ARCHS: dict[str, type[nn.Module]] = {"dncnn": DnCNN, "unet": UNet}
# the default ``depth`` of each: conv layers of a DnCNN, resolution levels of a U-Net
DEFAULT_DEPTH = {"dncnn": 8, "unet": 3}
ENTRY_POINT_GROUP = "tgd.models"

_registered: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in ARCHS.values()}


def register_model(cls: type[nn.Module], name: str | None = None) -> type[nn.Module]:
    """Make checkpoints whose spec says ``"arch": name`` (default: the class name) load as
    ``cls``; returns ``cls`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_model takes an nn.Module subclass, got {cls!r}")
    name = cls.__name__ if name is None else name
    known = _registered.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"model name {name!r} is taken by {known.__module__}.{known.__name__}")
    _registered[name] = cls
    return cls


def _from_entry_point(name: str) -> type[nn.Module] | None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"entry point {ep.value!r} ({ENTRY_POINT_GROUP}: {name}) is not an "
                            "nn.Module subclass")
        return register_model(cls, name)
    return None


def model_class(name) -> type[nn.Module]:
    """The class a spec's ``"arch"`` names (registered, or advertised by an entry point)."""
    cls = _registered.get(name) if isinstance(name, str) else None
    if cls is None and isinstance(name, str):
        cls = _from_entry_point(name)
    if cls is None:
        raise ValueError(
            f"unknown model architecture {name!r} (known: {sorted(_registered)}); a network "
            f"of your own: tgd.models.register_model, or an entry point in the "
            f"{ENTRY_POINT_GROUP!r} group")
    return cls


def model_spec(model: nn.Module) -> dict:
    """``model.spec()``: the constructor arguments (and ``"arch"``) that rebuild ``model``;
    an error if it has none or its name does not lead back to its class."""
    spec = model.spec() if callable(getattr(model, "spec", None)) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("arch"), str):
        raise ValueError(
            f"{type(model).__name__} cannot be saved as a tgd checkpoint: give it a spec() "
            "method returning its constructor arguments and 'arch' (see tgd.models.registry)")
    cls = model_class(spec["arch"])
    if cls is not type(model):
        raise ValueError(f"{type(model).__name__}.spec() says arch {spec['arch']!r}, which "
                         f"loads as {cls.__module__}.{cls.__name__}")
    return spec


def build_model(spec: dict) -> nn.Module:
    """A freshly initialised net from a spec (:func:`model_spec`)."""
    if not isinstance(spec, dict):
        raise ValueError(f"a model spec is a dict with 'arch', got {spec!r}")
    spec = dict(spec)
    cls = model_class(spec.pop("arch", None))
    try:
        return cls(**spec)
    except TypeError as err:
        raise ValueError(f"bad model settings {spec}: {err}") from err


def new_model(arch: str, width: int, depth: int, spatial_dims: int = 2) -> nn.Module:
    """A freshly initialised denoiser: ``dncnn`` (depth conv layers) or ``unet`` (depth levels
    of widths width, 2 width, 4 width, ...); 2-D nets take 3 slices (2.5-D), 3-D nets 1
    volume channel."""
    in_channels = 3 if spatial_dims == 2 else 1
    if arch == "dncnn":
        return DnCNN(in_channels=in_channels, width=width, depth=depth, spatial_dims=spatial_dims)
    if arch == "unet":
        return UNet(in_channels=in_channels, widths=tuple(width * 2**i for i in range(depth)),
                    spatial_dims=spatial_dims)
    raise ValueError(f"unknown architecture {arch!r} (one of {tuple(ARCHS)})")


def arch_settings(spec: dict) -> tuple[str, int, int] | None:
    """``(arch, width, depth)`` of a spec as ``TrainConfig`` records them; None for a net
    that is not one of ``ARCHS`` (its spec is its record)."""
    if spec.get("arch") == "UNet":
        return "unet", int(spec["widths"][0]), len(spec["widths"])
    if spec.get("arch") == "DnCNN":
        return "dncnn", int(spec["width"]), int(spec["depth"])
    return None


def spec_dims(spec: dict) -> int:
    """Spatial dims of a spec (checkpoints before 3-D support: 2)."""
    return int(spec.get("spatial_dims", 2))
