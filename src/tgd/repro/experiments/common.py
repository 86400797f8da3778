"""What the experiments share: the simulated studies, training one net, denoising ensembles.

Seeds are disjoint per role (pre-training 1000+, fine-tuning 2000+, test 3000+, unseen-feature
test 4000+, v2 validation 5000+) and per replicate (``10000 * preset.seed`` added), so no test
study is ever trained on and no two replicates share a study.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tgd.data import NoiseAdaptiveDataset
from tgd.inference import prepare_for_inference
from tgd.inference.denoise import denoise_volume
from tgd.models import new_model
from tgd.repro.datasets import study_pairs
from tgd.repro.experiments.presets import Preset
from tgd.repro.hypotheses import is_diverged
from tgd.repro.sim.study import Study, simulate_study
from tgd.training import TrainConfig, estimate_fisher, prepare, train
from tgd.training.distributed import DistContext, default_device

SEED_BASE = {"pretrain": 1000, "finetune": 2000, "test": 3000, "unseen": 4000,
             "validation": 5000}
REPLICATE_STRIDE = 10000


@dataclass
class StudySet:
    """Every simulated study of one run, with the R x 60-s realizations of the test studies."""

    pretrain: list[Study]
    finetune: list[Study]
    test: dict[str, Study]                  # "low", "high" (first test study of each class)
    unseen: list[Study]
    validation: list[Study] = field(default_factory=list)  # held-out low-BMI v2 study
    realizations: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    simulate_s: float = 0.0

    def describe(self) -> dict:
        def d(st: Study) -> dict:
            m = st.meta
            return {"seed": st.seed, "bmi_class": m["bmi_class"], "bmi": round(m["bmi"], 1),
                    "region": m["region"], "unseen": m["unseen"], "shape": list(st.labels.shape)}

        return {"pretrain": [d(s) for s in self.pretrain],
                "finetune": [d(s) for s in self.finetune],
                "test": {k: d(s) for k, s in self.test.items()},
                "unseen": [d(s) for s in self.unseen],
                "validation": [d(s) for s in self.validation], "simulate_s": self.simulate_s}


def simulate(preset: Preset, *, progress: bool = False) -> StudySet:
    """Simulate every study the experiments need (the slow part on a CPU: OSEM)."""
    p = preset
    t0 = time.perf_counter()
    jobs: list[tuple[str, int, dict]] = []

    def seed(role: str, i: int) -> int:
        return SEED_BASE[role] + REPLICATE_STRIDE * p.seed + i

    for i in range(p.n_v1_low + p.n_v1_high):
        jobs.append(("pretrain", seed("pretrain", i),
                     {"bmi": "low" if i < p.n_v1_low else "high", "versions": ("v1", "v2")}))
    for i in range(p.n_ft):
        jobs.append(("finetune", seed("finetune", i), {"bmi": "low", "versions": ("v2",)}))
    jobs.append(("validation", seed("validation", 0), {"bmi": "low", "versions": ("v2",)}))
    for j, bmi in enumerate(("low", "high")):
        jobs.append(("test", seed("test", j), {"bmi": bmi, "versions": ("v1", "v2"),
                                              "durations": (60, 600)}))
    for i in range(p.n_unseen):
        jobs.append(("unseen", seed("unseen", i),
                     {"bmi": "low", "versions": ("v2",), "durations": (60, 120, 600),
                      "unseen": "both", "region": "pelvis", "n_slices": p.pelvis_slices}))
    out: dict[str, list] = {"pretrain": [], "finetune": [], "test": [], "unseen": [],
                            "validation": []}
    for role, sd, kw in tqdm(jobs, desc="simulate studies", disable=not progress):
        kw = {"n_slices": p.n_slices, "shape": p.shape, **kw}
        out[role].append(simulate_study(sd, **kw))
    s = StudySet(out["pretrain"], out["finetune"],
                 {st.meta["bmi_class"]: st for st in out["test"]}, out["unseen"],
                 out["validation"])
    reals = [(k, v) for k in s.test for v in ("v1", "v2")]
    for k, v in tqdm(reals, desc="test realizations", disable=not progress):
        s.realizations[(k, v)] = s.test[k].realizations(v, 60, p.realizations)
    for i, st in enumerate(s.unseen):
        s.realizations[(f"unseen{i}", "v2")] = st.realizations("v2", 60, p.realizations)
    s.simulate_s = time.perf_counter() - t0
    return s


def preset_config(preset: Preset, method: str, *, mode: str = "parameter",
                  stage: str = "scratch") -> TrainConfig:
    """The training config of ``method`` at ``stage`` (scratch, finetune, online): the preset's
    settings through ``TrainConfig.from_options``, as the command line's are."""
    p = preset
    its, eps = {"scratch": (p.scratch_iterations, p.scratch_epochs),
                "finetune": (p.finetune_iterations, p.finetune_epochs),
                "online": (p.online_iterations, p.online_epochs)}[stage]
    return TrainConfig.from_options(
        {"width": p.width, "depth": p.depth, "lr": p.lr,
         "lr_schedule": p.scratch_lr_schedule if stage == "scratch" else "constant",
         "weight_decay": p.weight_decay,
         "batch_size": p.batch_size, "patch_size": p.patch_size, "iterations": its,
         "epochs": eps, "seed": p.seed, "threshold": p.threshold, "mode": mode,
         "ewc_lambda": p.ewc_lambda, "l2sp_lambda": p.l2sp_lambda, "lora_rank": p.lora_rank},
        method)


NORMALIZE = "input"
"""How the experiments normalise every image, in training and at test time: by its own body
mean (``tgd.data.intensity_scale``), read from the input alone as ``tgd denoise`` does; no
600-s image and no label is read at inference (docs/reproduction.md)."""


def dataset(studies: list[Study], version: str, preset: Preset,
            durations=None) -> NoiseAdaptiveDataset:
    """Noise-adaptive pairs of ``studies`` (every input duration, or ``durations``, -> the
    600-s image), each normalised from its input."""
    kw = {} if durations is None else {"input_durations": tuple(durations)}
    return NoiseAdaptiveDataset(study_pairs(studies, version, normalize=NORMALIZE, **kw),
                                patch_size=preset.patch_size, seed=preset.seed)


@dataclass
class Validation:
    """What time-to-quality curves are measured on: up to ``max_items`` evenly spaced items
    of ``data`` (full slices of a held-out v2 study), every ``every`` iterations."""

    data: object
    every: int
    max_items: int


def validation(studies: StudySet, preset: Preset) -> Validation | None:
    if not studies.validation:
        return None
    data = NoiseAdaptiveDataset(study_pairs(studies.validation, "v2", normalize=NORMALIZE),
                                patch_size=None, seed=preset.seed)
    return Validation(data, preset.val_every, preset.val_items)


@dataclass
class Trained:
    """A trained net and how it was trained."""

    name: str
    model: nn.Module
    info: dict


def run_training(name: str, method: str, model: nn.Module, cfg: TrainConfig, data, *,
                 fisher=None, plan=None, val: Validation | None = None, patience: int = 0,
                 progress: bool = False) -> Trained:
    """Train a copy of ``model`` (``method``: scratch, ft, tgd, ewc, l2sp, lora, online);
    ``info`` has the training time, iterations, final loss, trained fraction, the
    frozen-weights check and, with ``val``, the validation curve ``[[iteration, training
    seconds, MSE], ...]`` starting at iteration 0 (``patience``: see ``tgd.training.train``)."""
    model = copy.deepcopy(model)
    t0 = time.perf_counter()
    device = default_device()
    setup = prepare(method, model, cfg, fisher=fisher, plan=plan)
    kw: dict = {}
    if val is not None:
        kw = {"val_set": val.data, "val_every": val.every, "val_max_items": val.max_items,
              "patience": patience}
    # on a GPU when there is one (the paper preset is meant for one); the trained net stays
    # there, and evaluation and planning follow the net's device
    res = train(setup, cfg, data, progress=progress, ctx=DistContext(device=device), **kw)
    after = setup.frozen_fingerprint()
    trained_fraction = (setup.info.get("tgd") or setup.info.get("ft") or setup.info.get("lora")
                        or {}).get("trained_fraction", 1.0)
    info = {
        "name": name, "method": method, "mode": cfg.mode if method in ("tgd", "online") else None,
        "batch_norm": setup.info.get("batch_norm"),
        "iterations": res.iterations, "epochs": round(res.metrics["epochs"], 2),
        "train_time_s": res.metrics["train_time_s"], "wall_s": time.perf_counter() - t0,
        "train_loss_last": res.metrics["train_loss_last"],
        "trained_fraction": float(trained_fraction),
        "frozen_preserved": None if after is None else after == setup.fingerprint_before,
    }
    if val is not None:
        info["val_curve"] = res.metrics["val"]
        if "best_iteration" in res.metrics:
            info["best_iteration"] = res.metrics["best_iteration"]
    info["diverged"] = diverged(info, method)
    if setup.plan is not None:
        info["threshold"] = setup.plan.threshold
    return Trained(name, setup.finish().eval(), info)


DIVERGED_FACTOR = 10.0
"""An adaptation has diverged when its final validation loss is not finite or above this
factor times its parent's (the curve's first point, before any step)."""


def diverged(info: dict, method: str) -> bool:
    """Whether a run diverged (:data:`DIVERGED_FACTOR`; without a validation curve: a
    non-finite last training loss). Training from scratch has no parent to compare with."""
    curve = info.get("val_curve") or []
    last = info.get("train_loss_last")
    if last is not None and not np.isfinite(last):
        return True
    if method == "scratch" or len(curve) < 2:
        return False
    return is_diverged(curve[-1][2], curve[0][2], DIVERGED_FACTOR)


def fisher_of(model: nn.Module, data, preset: Preset, progress: bool = False) -> tuple[dict,
                                                                                       float]:
    """EWC's Fisher of ``model`` on its pre-training data, and the seconds it took."""
    t0 = time.perf_counter()
    f = estimate_fisher(model, data, n_samples=preset.fisher_samples, seed=preset.seed,
                        progress=progress)
    return f, time.perf_counter() - t0


def initial_model(preset: Preset) -> nn.Module:
    """The 2.5-D DnCNN both base nets start from, initialised from ``preset.seed``."""
    torch.manual_seed(preset.seed)
    return new_model("dncnn", preset.width, preset.depth)


def denoise_ensemble(model: nn.Module | None, ensemble: np.ndarray) -> np.ndarray:
    """Denoise every realization of ``(R, Z, H, W)``, each normalised from itself alone (as
    ``tgd denoise`` does: no reference image, no labels); ``model=None`` returns the input
    (the un-denoised 60-s images, as a reference row)."""
    if model is None:
        return np.asarray(ensemble, np.float32)
    net = prepare_for_inference(model)
    return np.stack([denoise_volume(net, e, prepared=True) for e in ensemble])


def voxel_mm(study: Study) -> tuple[float, float, float]:
    """(slice, row, column) spacing in mm."""
    x, y, z = study.meta["voxel_size_mm"]
    return float(z), float(y), float(x)


@dataclass
class BaseNets:
    """v1-net and v2-net: trained from scratch on the pre-training studies (mixed BMI),
    reconstructed v1 and v2 respectively."""

    v1: Trained
    v2: Trained


def pretrain(preset: Preset, studies: StudySet, *, progress: bool = False) -> BaseNets:
    """Both nets from the same initialisation; the v2-net's validation curve on the held-out
    v2 study is the reference of the time-to-quality comparison."""
    cfg = preset_config(preset, "scratch")
    init = initial_model(preset)
    nets = {}
    for v in ("v1", "v2"):
        nets[v] = run_training(f"{v}-net", "scratch", init, cfg,
                               dataset(studies.pretrain, v, preset),
                               val=validation(studies, preset) if v == "v2" else None,
                               progress=progress)
    return BaseNets(nets["v1"], nets["v2"])


def example_view(study: Study, mask: np.ndarray | None, z: int, box: int) -> dict:
    """What the report's image grid needs besides the images: the structure's centre on slice
    ``z`` (None without a mask there), the zoom box, pixel size and the SUV factor."""
    from scipy import ndimage

    m = None if mask is None else mask[z]
    centre = (None if m is None or not m.any()
              else tuple(float(c) for c in ndimage.center_of_mass(m)))
    return {"center": centre, "box": box, "pixel_mm": float(study.meta["voxel_size_mm"][0]),
            "suv_per_kbq_ml": float(study.meta["suv_per_kbq_ml"])}


def lesion_slice(study: Study) -> int:
    """The slice with the most voxels of the main lesion (the middle slice if none)."""
    from tgd.repro import rois

    try:
        m = rois.main_lesion(study)["mask"]
    except ValueError:
        return study.labels.shape[0] // 2
    return int(np.argmax(m.sum(axis=(1, 2))))
