"""Training settings, the option machinery behind every entry point, and TOML config files.

One source of configuration: each setting is a dataclass field made with :func:`option`, whose
default, help text and command-line hints (flag name, parser, choices) live in the field. The
command line (``tgd.commands.common.add_options``), the TOML keys (the field names, ``-`` or
``_``) and the library entry points (``tgd.training.driver``) are all generated from the fields,
so no default is written twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
from dataclasses import MISSING, dataclass, field
from pathlib import Path

from tgd.models.registry import ARCHS, DEFAULT_DEPTH
from tgd.targeting.attach import MODES


@dataclass(frozen=True)
class MethodInfo:
    """A training method's entry in :data:`METHODS`: whether ``tgd finetune`` offers it
    (``adapts``), its own :class:`TrainConfig` fields (``settings``: they become flags and TOML
    keys of the commands that offer it) and a one-line description. Its model setup is
    registered in ``tgd.training.methods`` (:func:`tgd.training.methods.register_method`)."""

    adapts: bool
    settings: tuple[str, ...] = ()
    help: str = ""


# Every training method, in one place (what it trains: tgd.training.methods).
METHODS: dict[str, MethodInfo] = {
    "scratch": MethodInfo(False, (), "train every weight from the initialisation"),
    "ft": MethodInfo(True, ("ft_blocks",), "train the last conv blocks only"),
    "tgd": MethodInfo(True, ("threshold", "mode"), "retrain the kernels of low-KSE maps"),
    "ewc": MethodInfo(True, ("ewc_lambda",), "all weights, Elastic Weight Consolidation"),
    "l2sp": MethodInfo(True, ("l2sp_lambda",), "all weights, L2 distance to the pre-trained"),
    "lora": MethodInfo(True, ("lora_rank",), "a low-rank update of every conv but the last"),
    "online": MethodInfo(False, ("threshold", "mode"), "TGD on one study's Noise2Noise pairs"),
}


def adapt_methods() -> tuple[str, ...]:
    """The methods ``tgd finetune`` offers."""
    return tuple(name for name, m in METHODS.items() if m.adapts)


def method_settings(names=None) -> tuple[str, ...]:
    """The settings of ``names`` (default: every method), each once, in registry order."""
    out: list[str] = []
    for name in METHODS if names is None else names:
        out += [s for s in METHODS[name].settings if s not in out]
    return tuple(out)

# the training objective: an image loss (tgd.losses.IMAGE_LOSSES) alone, or MSE-WGAN / TOD-Net
IMAGE_LOSSES = ("mse", "anscombe", "poisson")
ADVERSARIAL_LOSSES = ("wgan", "tod")
LOSSES = (*IMAGE_LOSSES, *ADVERSARIAL_LOSSES)
BN_MODES = ("auto", "frozen", "train")
LR_SCHEDULES = ("constant", "cosine")
AMP_MODES = (None, "bf16")


def option(default=MISSING, help: str = "", *, factory=None, **cli) -> dataclasses.Field:
    """A dataclass field that is also an option: ``help`` (the default is appended to it by the
    command line), and ``cli`` hints read by ``tgd.commands.common.add_options``:
    ``flag`` (the name after ``--`` when it is not the field's), ``aliases``, ``parse`` (text ->
    value, also applied to strings of a TOML file), ``choices``, ``metavar``, ``required``,
    ``none`` (what a ``None`` default means, shown as the default), ``show_default`` (False:
    none shown)."""
    metadata = {"help": help, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def int_or_none(text) -> int | None:
    """``none``, ``full`` or ``0``: None (whole slices); else an integer."""
    return None if str(text).lower() in ("none", "full", "0") else int(text)


def amp_value(text) -> str | None:
    """``bf16``, or None for ``none`` / ``fp32`` / ``float32``."""
    if text is None or str(text).lower() in ("none", "fp32", "float32"):
        return None
    if str(text).lower() != "bf16":
        raise argparse.ArgumentTypeError(f"amp must be 'bf16' or 'none', got {text!r}")
    return "bf16"


Threshold = float | str
"""TGD's threshold: phi in [0, 1], or ``"auto"`` (chosen from the new data)."""


def check_threshold(value) -> Threshold:
    """``value`` as a :data:`Threshold` (a number in [0, 1], or ``"auto"`` in any case), else a
    ValueError: the one check of the threshold, whether it comes from a flag, a TOML file or a
    keyword argument."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"threshold must be a number in [0, 1] or 'auto', got "
                             f"{value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1] or 'auto', got {value!r}")
    return float(value)


def threshold_value(text) -> Threshold:
    """``--threshold``'s parser: :func:`check_threshold` with argparse's error type."""
    try:
        return check_threshold(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


@dataclass
class TrainConfig:
    """Everything that decides the trained weights (and so must match on resume)."""

    method: str = option("scratch", "training method", choices=tuple(METHODS))
    # network (scratch only; fine-tuning methods take it from the checkpoint). "unet": ``depth``
    # resolution levels of widths width, 2 width, 4 width, ... (tgd.models.UNet)
    arch: str = option("dncnn", "dncnn (the paper's) or unet (residual U-Net, skips by "
                       "concatenation)", choices=tuple(ARCHS), show_default=False)
    width: int = option(64, "feature maps (unet: of the first level, doubling per level)")
    depth: int = option(DEFAULT_DEPTH["dncnn"], "conv layers (dncnn) or resolution levels (unet)",
                        none=", ".join(f"{d} for {a}" for a, d in DEFAULT_DEPTH.items()))
    # 2: 2.5-D slices (3 in, centre out); 3: 3-D volume patches (1 channel in and out)
    spatial_dims: int = option(2, "2: 2.5-D slices (3 in, centre out); 3: 3-D volume patches",
                               choices=(2, 3), none="the checkpoint's")
    # optimisation (Adam, lr 1e-3 as in the paper). weight_decay is the paper's weight
    # regulariser R (eq. 4), Adam's L2 penalty: without it a trained net has no redundant
    # kernels for KSE to find (docs/reproduction.md has the measurement behind 1e-3)
    lr: float = option(1e-3, "Adam learning rate")
    # cosine: lr * (1 + cos(pi * i / total)) / 2 at iteration i, a pure function of the
    # iteration, so a resumed run is bit-identical (docs/reproduction.md has the measurement
    # behind using it for the reproduction's nets)
    lr_schedule: str = option("constant", "learning rate over the run: constant, or cosine "
                              "(from --lr down to 0 at the last iteration)",
                              choices=LR_SCHEDULES)
    weight_decay: float = option(1e-3, "Adam L2 weight decay, the paper's weight regulariser")
    batch_size: int = option(16, "global batch (split over torchrun processes)")
    patch_size: int | None = option(64, "random crop size, 'none' for full slices",
                                    parse=int_or_none)
    # 3-D only: slices per patch (None: patch_size clipped to the slice count)
    patch_depth: int | None = option(None, "3-D: slices per patch", parse=int_or_none,
                                     none="--patch-size clipped to the slices")
    iterations: int | None = option(None, "training iterations (steps)")
    epochs: int | None = option(None, "or passes over the training set")
    seed: int = option(0, "seed of init, batches and crops", show_default=False)
    # tgd / online ("parameter": see docs/training.md for why it is the default here)
    threshold: float | str = option(  # a Threshold
        0.3, "KSE threshold phi in [0, 1], or 'auto': the largest phi whose dropped kernels "
        "change the output on the new data by less than --tolerance (docs/threshold_selection.md)",
        parse=threshold_value)
    mode: str = option(
        "parameter", "TGD gradient masking: parameter (exact gradients, masked) or activation "
        "(the paper's TGD layers; also cuts the gradient flowing to earlier layers, which raised "
        "the loss in our runs: docs/training.md)", choices=MODES)
    # batch norm while fine-tuning: "frozen" = eval mode (running statistics used, never
    # updated); "train" = batch statistics; "auto" = frozen for tgd/online, train otherwise
    bn: str = option("auto", "batch norm while fine-tuning: frozen (eval mode) or train (batch "
                     "statistics); auto: frozen for tgd/online, train otherwise",
                     flag="batch-norm", choices=BN_MODES)
    # ft: number of trailing conv blocks trained
    ft_blocks: int = option(3, "FT: trailing conv blocks")
    # ewc: penalty (lambda / 2) * sum F (theta - theta*)^2
    ewc_lambda: float = option(1000.0, "EWC strength")
    # l2sp: penalty (lambda / 2) * sum (theta - theta_pretrained)^2 (Li et al. 2018)
    l2sp_lambda: float = option(0.01, "L2-SP strength")
    # lora: rank of the low-rank update of every conv but the last (PEFT), alpha = rank
    lora_rank: int = option(4, "LoRA rank")
    # speed
    channels_last: bool = option(False, "train in channels_last memory format")
    # objective: "mse" (default, the paper's), "anscombe" or "poisson" (image losses for
    # count-like noise, where hot structures would dominate an MSE; tgd.losses), "wgan"
    # (MSE-WGAN: gan_weight L_GAN + mse_weight L_MSE; tgd.training.adversarial), "tod" (TOD-Net:
    # + task_weight L_t of a frozen segmenter; with gan_weight 0 no critic). Critic:
    # Adam(critic_lr, betas (0.5, 0.9)), n_critic steps per generator step, weights clipped to
    # +-clip, or the WGAN-GP penalty instead when gp_weight > 0.
    loss: str = option("mse", "objective: mse; anscombe or poisson for count-like noise where "
                       "hot structures would dominate an MSE; wgan (MSE-WGAN) or tod (TOD-Net, "
                       "with --segmenter; online: with the study's --labels and no critic; "
                       "docs/tod.md)", choices=LOSSES)
    gan_weight: float = option(1.0, "weight of L_GAN (tod: 0 trains without a critic)")
    task_weight: float = option(1.0, "weight of L_t")
    mse_weight: float = option(100.0, "lambda, weight of L_MSE")
    n_critic: int = option(1, "critic steps per generator step")
    critic_lr: float = option(1e-4, "critic Adam lr")
    clip: float = option(0.01, "critic weight clip (unused with --gp-weight)")
    gp_weight: float = option(0.0, "WGAN-GP gradient-penalty weight instead of clipping (0: clip)")
    critic_width: int = option(16, "critic feature maps")
    # mixed precision: None (float32) or "bf16" (autocast of the forward pass; float32 weights,
    # gradients and optimizer state)
    amp: str | None = option(None, "mixed precision: 'bf16' runs the forward pass in bfloat16 "
                             "autocast (float32 weights and optimizer); 'none' is float32",
                             parse=amp_value, none="none")
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict, method: str) -> TrainConfig:
        """The validated config of ``method`` from an entry point's options (a dict that may
        hold other options too; missing settings keep their defaults)."""
        if options.get("iterations") is None and options.get("epochs") is None:
            raise ValueError("give --iterations or --epochs")
        keys = {f.name for f in dataclasses.fields(cls)} - {"method", "extra"}
        settings = {k: options[k] for k in keys if k in options}
        if "amp" in settings:  # a TOML file or a caller may say "none"
            try:
                settings["amp"] = amp_value(settings["amp"])
            except argparse.ArgumentTypeError as err:
                raise ValueError(str(err)) from None
        return cls(method=method, **settings).validate()

    def validate(self) -> TrainConfig:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {tuple(METHODS)}, got {self.method!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {tuple(ARCHS)}, got {self.arch!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, got {self.bn!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got "
                             f"{self.lr_schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.bn == "frozen" and self.method == "scratch":
            raise ValueError("bn='frozen' needs a pre-trained net; training from scratch "
                             "must learn the batch-norm statistics")
        if isinstance(self.spatial_dims, bool) or self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        if self.patch_depth is not None:
            if self.spatial_dims != 3:
                raise ValueError("patch_depth applies to 3-D networks only (spatial_dims=3)")
            if not isinstance(self.patch_depth, int) or isinstance(self.patch_depth, bool) \
                    or self.patch_depth < 1:
                raise ValueError(f"patch_depth must be a positive integer or None, got "
                                 f"{self.patch_depth!r}")
        for name in ("width", "depth", "batch_size", "ft_blocks", "lora_rank"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2, got {self.depth}")
        if self.patch_size is not None and (not isinstance(self.patch_size, int)
                                            or self.patch_size < 1):
            raise ValueError(f"patch_size must be a positive integer or None, got "
                             f"{self.patch_size!r}")
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("give exactly one of iterations and epochs")
        for name in ("iterations", "epochs"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr", "weight_decay", "ewc_lambda", "l2sp_lambda"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        self.threshold = check_threshold(self.threshold)
        self._validate_objective()
        return self

    def _validate_objective(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("gan_weight", "task_weight", "mse_weight", "clip", "gp_weight", "critic_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                    or v < 0:
                raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
        for name in ("n_critic", "critic_width"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.loss == "wgan" and self.gan_weight <= 0:
            raise ValueError("loss='wgan' needs gan_weight > 0 (gan_weight 0 is loss='mse')")
        # tod with gan_weight 0: task loss + MSE, no critic (tgd online's Noise2Noise targets)
        if self.loss in ADVERSARIAL_LOSSES and self.gan_weight > 0:
            if self.critic_lr <= 0 or (self.gp_weight == 0 and self.clip <= 0):
                raise ValueError("the critic needs critic_lr > 0 and a clip > 0 (or gp_weight > 0)")
        if self.loss == "tod" and self.task_weight <= 0:
            raise ValueError("loss='tod' needs task_weight > 0 (task_weight 0 is loss='wgan')")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training settings: {unknown}")
        return cls(**d)

    def resume_key(self) -> dict:
        """Settings that must be equal to continue a run (the length may change)."""
        d = self.to_dict()
        for k in ("iterations", "epochs", "extra"):
            d.pop(k)
        return d


def load_toml(path: str | Path) -> dict:
    """A flat TOML file (``key = value`` with option names, ``-`` or ``_``) as a dict.

    Tables are flattened (``[tgd] threshold = 0.3`` is the same as ``threshold = 0.3``).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no config file {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {p} is not valid TOML: {err}") from err
    flat: dict = {}

    def put(d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                put(v)
            else:
                key = k.replace("-", "_")
                if key in flat:
                    raise ValueError(f"config file {p}: '{k}' is set twice")
                flat[key] = v

    put(data)
    return flat
