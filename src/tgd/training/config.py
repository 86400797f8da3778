"""Training settings, and TOML config files whose keys are the command-line option names."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tgd.models.registry import ARCHS
from tgd.targeting.attach import MODES

METHODS = ("scratch", "ft", "tgd", "ewc", "l2sp", "lora", "online")
# the training objective: an image loss (tgd.losses.IMAGE_LOSSES) alone, or MSE-WGAN / TOD-Net
IMAGE_LOSSES = ("mse", "anscombe", "poisson")
ADVERSARIAL_LOSSES = ("wgan", "tod")
LOSSES = (*IMAGE_LOSSES, *ADVERSARIAL_LOSSES)
BN_MODES = ("auto", "frozen", "train")
AMP_MODES = (None, "bf16")


@dataclass
class TrainConfig:
    """Everything that decides the trained weights (and so must match on resume)."""

    method: str = "scratch"
    # network (scratch only; fine-tuning methods take it from the checkpoint). "unet": ``depth``
    # resolution levels of widths width, 2 width, 4 width, ... (tgd.models.UNet)
    arch: str = "dncnn"
    width: int = 64
    depth: int = 8
    # 2: 2.5-D slices (3 in, centre out); 3: 3-D volume patches (1 channel in and out)
    spatial_dims: int = 2
    # optimisation (Adam, lr 1e-3 as in the paper). weight_decay is the paper's weight
    # regulariser R (eq. 4), Adam's L2 penalty: without it a trained net has no redundant
    # kernels for KSE to find (docs/reproduction.md has the measurement behind 1e-3)
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_size: int = 16
    patch_size: int | None = 64
    # 3-D only: slices per patch (None: patch_size clipped to the slice count)
    patch_depth: int | None = None
    iterations: int | None = None
    epochs: int | None = None
    seed: int = 0
    # tgd / online ("parameter": see docs/training.md for why it is the default here)
    threshold: float = 0.3
    mode: str = "parameter"
    # batch norm while fine-tuning: "frozen" = eval mode (running statistics used, never
    # updated); "train" = batch statistics; "auto" = frozen for tgd/online, train otherwise
    bn: str = "auto"
    # ft: number of trailing conv blocks trained
    ft_blocks: int = 3
    # ewc: penalty (lambda / 2) * sum F (theta - theta*)^2
    ewc_lambda: float = 1000.0
    # l2sp: penalty (lambda / 2) * sum (theta - theta_pretrained)^2 (Li et al. 2018)
    l2sp_lambda: float = 0.01
    # lora: rank of the low-rank update of every conv but the last (PEFT), alpha = rank
    lora_rank: int = 4
    # speed
    channels_last: bool = False
    # objective: "mse" (default, the paper's), "anscombe" or "poisson" (image losses for
    # count-like noise, where hot structures would dominate an MSE; tgd.losses), "wgan"
    # (MSE-WGAN: gan_weight L_GAN + mse_weight L_MSE; tgd.training.adversarial), "tod" (TOD-Net:
    # + task_weight L_t of a frozen segmenter). Critic: Adam(critic_lr, betas (0.5, 0.9)),
    # n_critic steps per generator step, weights clipped to +-clip, or the WGAN-GP penalty
    # instead when gp_weight > 0.
    loss: str = "mse"
    gan_weight: float = 1.0
    task_weight: float = 1.0
    mse_weight: float = 100.0
    n_critic: int = 1
    critic_lr: float = 1e-4
    clip: float = 0.01
    gp_weight: float = 0.0
    critic_width: int = 16
    # mixed precision: None (float32) or "bf16" (autocast of the forward pass; float32 weights,
    # gradients and optimizer state)
    amp: str | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {tuple(ARCHS)}, got {self.arch!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, got {self.bn!r}")
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
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")
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
        if self.loss in ADVERSARIAL_LOSSES:
            if self.gan_weight <= 0:
                raise ValueError(f"loss={self.loss!r} needs gan_weight > 0")
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
