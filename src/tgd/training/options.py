"""The options of the training entry points that are not training settings (data, output,
threshold selection, EWC's Fisher, the TOD segmenter), and :class:`OptionSet`, which merges
option dataclasses into the flat ``name -> value`` options an entry point takes.

Each field is made with ``tgd.training.config.option`` (default, help text, command-line hints),
so the command line, TOML files and the library share one definition of every option. Option
names are flat and unique across the dataclasses: a TOML file or a ``**options`` call names them
without saying which dataclass they belong to.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from tgd.targeting.auto_threshold import NOISE_FRACTION
from tgd.targeting.probe import CANDIDATES
from tgd.training.config import TrainConfig, adapt_methods, method_settings, option


@dataclass
class DataOptions:
    """Training and validation data: datalist manifests of paired images (tgd.data.manifest)."""

    data: list[str] | None = option(None, "manifests (.json or .csv) of input/target image pairs",
                                    metavar="MANIFEST")
    val_data: list[str] | None = option(None, "validation manifests", metavar="MANIFEST",
                                        none="the 'validation' section of --data, if any")


@dataclass
class OutputOptions:
    """Where a run writes, how it resumes, validates and reports."""

    out: str | None = option(None, "output folder (model.safetensors + model.json)")
    overwrite: bool = option(False, "replace an existing output (of a training run: and discard "
                             "its resume checkpoints)")
    checkpoint_every: int = option(0, "write a resume checkpoint every N iterations (0: never)",
                                   show_default=False)
    resume: bool = option(False, "continue the interrupted run in --out from its last checkpoint")
    val_every: int = option(0, "validate every N iterations", show_default=False)
    patience: int = option(0, "stop after N validations without improvement and keep the best "
                           "weights (needs --val-every; not with --resume or torchrun)",
                           show_default=False)
    val_max_items: int = option(256, "validation slices used")
    progress: bool = option(True, "no progress bar")
    threads: int | None = option(None, "torch intra-op threads")


@dataclass
class ThresholdOptions:
    """How TGD's maps are scored and, with ``threshold="auto"``, how phi is chosen (the
    threshold itself is ``TrainConfig.threshold``)."""

    score: str = option("kse", "what ranks the feature maps: kse (the paper), or from the new "
                        "data: ablation (output change when a map is zeroed) or taylor (its "
                        "first-order estimate, one backward pass)",
                        choices=("kse", "ablation", "taylor"))
    auto_rule: str | None = option(
        None, "--threshold auto: probe (short TGD runs at phi "
        f"{CANDIDATES[0]:g}..{CANDIDATES[-1]:g} below the drop bound, scored on the validation "
        "data; the smallest phi reaching 90% of the best improvement) or drop (the largest phi "
        "whose dropped kernels change the output by less than --tolerance)",
        choices=("probe", "drop"), none="probe with validation data, else drop")
    probe_iterations: int = option(50, "--auto-rule probe: iterations of each probe")
    per_layer: bool = option(False, "--threshold auto (drop rule): one phi per layer")
    tolerance: float | None = option(None, "--threshold auto: allowed RMS output change as a "
                                     "fraction of the input's noise level (probe rule: of "
                                     "the cap on the candidates, default 1)",
                                     none=str(NOISE_FRACTION))
    budget: float | None = option(None, "--threshold auto (drop rule): at most this fraction "
                                  "of the parameters retrained (alone: instead of the "
                                  "tolerance; with --tolerance: both hold)")
    auto_images: int = option(8, "images of the new data used for --threshold auto / --score")


@dataclass
class FisherOptions:
    """EWC's Fisher information: stored beside the parent by ``tgd train``, or estimated."""

    fisher_data: list[str] | None = option(
        None, "EWC: manifests of pre-training pairs to estimate the Fisher from",
        metavar="MANIFEST")
    fisher_samples: int = option(64, "EWC: samples")


@dataclass
class SegmenterOptions:
    """TOD-Net's frozen task network (``--loss tod``)."""

    segmenter: str | None = option(None, "tod: the frozen task network (from `tgd "
                                   "train-segmenter`)", metavar="CKPT")


class OptionSet:
    """The options of one entry point: the named fields of some option dataclasses, with the
    entry point's own defaults where they differ from the fields' (``overrides``)."""

    def __init__(self, *sources, **overrides) -> None:
        """``sources``: option dataclasses (all their fields) or ``(dataclass, names)``."""
        self.fields: dict[str, dataclasses.Field] = {}
        for source in sources:
            cls, names = source if isinstance(source, tuple) else (source, None)
            by_name = {f.name: f for f in dataclasses.fields(cls) if f.metadata}
            for name in names if names is not None else tuple(by_name):
                if name in self.fields:
                    raise ValueError(f"option {name!r} is defined twice")
                self.fields[name] = by_name[name]
        unknown = sorted(set(overrides) - set(self.fields))
        if unknown:
            raise ValueError(f"defaults for unknown options: {unknown}")
        self.defaults = {n: _field_default(f) for n, f in self.fields.items()}
        self.defaults.update(overrides)

    def resolve(self, given: dict, file_options: dict | None = None) -> dict:
        """Defaults < ``file_options`` (a TOML file) < ``given`` (flags or keyword arguments).

        Strings in the file go through the option's parser (``patch_size = "none"``). The run
        length is iterations or epochs: one set by the user replaces a default of the other.
        """
        unknown = sorted(set(given) - set(self.fields))
        if unknown:
            raise ValueError(f"unknown option(s): {unknown}")
        opts = dict(self.defaults)
        file_options = dict(file_options or {})
        unknown = sorted(set(file_options) - set(self.fields))
        if unknown:
            raise ValueError(f"unknown option(s) in the config file: {unknown}")
        for key, value in file_options.items():
            parse = self.fields[key].metadata.get("parse")
            if parse is not None and (isinstance(value, str) or value == 0):
                try:
                    file_options[key] = parse(value)
                except (ValueError, argparse.ArgumentTypeError) as err:
                    raise ValueError(f"config file: {key}: {err}") from None
        opts.update(file_options)
        opts.update(given)
        user = set(file_options) | set(given)
        for a, b in (("iterations", "epochs"), ("epochs", "iterations")):
            if a in user and b not in user and a in self.fields:
                opts[b] = None
        return opts


def _field_default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# the training settings the entry points take, in the order of the commands' --help;
# TRAINING: the option sources every training entry point shares
OPTIMISATION = ("iterations", "epochs", "batch_size", "patch_size", "spatial_dims", "patch_depth",
                "lr", "lr_schedule", "weight_decay", "loss", "seed", "channels_last", "amp", "bn")
NETWORK = ("arch", "width", "depth")
METHOD_SETTINGS = method_settings(adapt_methods())
OBJECTIVE = ("gan_weight", "task_weight", "mse_weight", "n_critic", "critic_lr", "clip",
             "gp_weight", "critic_width")
TRAINING = ((TrainConfig, OPTIMISATION + OBJECTIVE), OutputOptions, DataOptions,
            SegmenterOptions)
