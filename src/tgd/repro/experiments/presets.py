"""Sizes of the reproduction: ``tiny`` (tests), ``quick`` (the README's main job: small nets
and images, 12 replicates as the power analysis of docs/reproduction.md asks; its measured time
on a 2-core CPU is in that document), ``medium`` (width 64 as in the paper, hours on a 2-core
CPU) and ``paper`` (the paper's sizes, for a GPU machine). ``medium`` and ``paper`` also run
TOD-Net (seed 002, ``tgd.repro.experiments.tod``) in every replicate; ``quick`` leaves it out
(``--set tod=quick`` adds it).

Every preset runs ``replicates`` independent replicates per base seed: replicate ``r`` of base
seed ``s`` uses the seed ``1000 * s + r`` for its phantoms, noise, network initialisation,
crops and batch order (``replicate_seeds``), so two base seeds share nothing. The base seeds are
``base_seeds`` (the quick and medium presets pool two, 0 and 1: 12 and 10 replicates, the
number the power analysis of docs/reproduction.md asks for) or, without it, ``seed`` alone.

The paper (section 4): 20 v1 training studies (mixed BMI), 7 low-BMI v2 studies for
fine-tuning, 6 count levels (30-180 s) -> 600 s, DnCNN width 64 depth 8, 500 epochs (150 for
online learning), Adam lr 1e-3, test on 10 x 60-s realizations of one 600-s study.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    # data
    shape: int                      # image matrix (FOV 512 mm)
    n_slices: int                   # abdomen slices per study (4 mm)
    pelvis_slices: int              # slices of the unseen-feature (pelvis) studies
    n_v1_low: int                   # pre-training studies (v1-net and v2-net), low BMI
    n_v1_high: int                  # ... and high BMI
    n_ft: int                       # low-BMI v2 studies for FT / TGD / EWC
    n_unseen: int                   # pelvis test studies with bladder + catheter
    # (one low-BMI and one high-BMI abdomen test study, as the paper's Table 1 / Fig. 5)
    realizations: int               # R x 60 s from the 600-s data
    # networks and training
    width: int
    depth: int
    batch_size: int
    patch_size: int | None
    scratch_iterations: int | None = None
    scratch_epochs: int | None = None
    finetune_iterations: int | None = None
    finetune_epochs: int | None = None
    online_iterations: int | None = None
    online_epochs: int | None = None
    lr: float = 1e-3
    # pre-training (scratch) only: cosine halves the validation-curve noise of the base nets and
    # lowers their final loss; adaptations gain nothing from it (docs/reproduction.md, "Base nets
    # that stop well")
    scratch_lr_schedule: str = "cosine"
    weight_decay: float = 1e-3      # the paper's weight regulariser R (docs/reproduction.md)
    threshold: float = 0.3
    # fine-tuning data cover the in-domain test's count level and withhold what the retention
    # tests probe: low-BMI v2 studies at 60-180 s (liver noise 14-24 %), none of the high-BMI
    # 60-s test's noise (32 %) nor v1 (docs/reproduction.md, "Forgetting that can show")
    finetune_durations: tuple[float, ...] = (60, 90, 120, 180)
    # the forgetting positive control: FT of every block at control_lr_factor x lr
    control_lr_factor: float = 10.0
    thresholds: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.6)
    # TGD-net (auto): phi chosen by probe adaptations of probe_iterations each on the
    # fine-tuning data, scored on the held-out v2 validation study (tgd.training.probe)
    probe_iterations: int = 50
    ewc_lambda: float = 1000.0
    fisher_samples: int = 64
    l2sp_lambda: float = 0.01
    lora_rank: int = 4
    # time-to-quality: validation MSE on a held-out v2 study every val_every iterations
    val_every: int = 50
    val_items: int = 16
    # online learning: losses compared, and the label-free stopping rule (N2N loss on every
    # online_holdout-th slice, held out of training; stop after online_patience validations
    # without improvement and keep the best weights)
    online_losses: tuple[str, ...] = ("mse", "anscombe")
    online_val_every: int = 10
    online_patience: int = 5
    online_holdout: int = 4
    random_draws: int = 5           # random-map drops compared with KSE's at phi = threshold
    replicates: int = 3
    workers: int | None = None      # replicates run at once (None: min(replicates, CPUs))
    threads: int | None = None      # torch intra-op threads per replicate (None: torch's)
    seed: int = 0                   # base seed (see replicate_seeds) when base_seeds is empty
    base_seeds: tuple[int, ...] = ()  # several base seeds pooled (replicates each)
    # TOD-Net (seed 002) in each replicate: the name of a tgd.repro.experiments.tod preset, or "" to
    # leave it out (tgd reproduce --set tod=quick)
    tod: str = ""
    notes: str = ""

    def replicate_seeds(self) -> list[int]:
        return [1000 * s + r for s in self.seeds() for r in range(self.replicates)]

    def seeds(self) -> tuple[int, ...]:
        """The base seeds: ``base_seeds``, or ``(seed,)``."""
        return tuple(self.base_seeds) or (self.seed,)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_overrides(self, **kw) -> Preset:
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(kw) - names)
        if bad:
            raise ValueError(f"unknown preset settings: {bad}")
        changed = {k: v for k, v in kw.items() if k != "notes" and getattr(self, k) != v}
        notes = kw.pop("notes", self.notes)
        if changed:  # the report's header shows them next to the preset's name
            notes += "; changed: " + ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
        return dataclasses.replace(self, **kw, notes=notes)


PRESETS = {
    "tiny": Preset(
        name="tiny", shape=48, n_slices=4, pelvis_slices=16, n_v1_low=1, n_v1_high=1, n_ft=1,
        n_unseen=1, realizations=3, width=8, depth=4, batch_size=4, patch_size=24,
        scratch_iterations=6, finetune_iterations=4, online_iterations=3, fisher_samples=4,
        val_every=2, val_items=4, online_val_every=1, online_patience=2, random_draws=2,
        probe_iterations=2, replicates=2, workers=1, threads=1,
        notes="smoke test only: numbers are meaningless",
    ),
    "quick": Preset(
        name="quick", shape=96, n_slices=8, pelvis_slices=24, n_v1_low=2, n_v1_high=2, n_ft=2,
        n_unseen=1, realizations=10, width=32, depth=8, batch_size=16, patch_size=32,
        scratch_iterations=1000, finetune_iterations=300, online_iterations=200,
        fisher_samples=64, replicates=6, base_seeds=(0, 1), threads=1,
        notes="small simulated data for a 2-core CPU; replicates run in parallel processes of "
              "one torch thread each (2 base seeds x 6 replicates: six rounds of two on 2 "
              "cores)",
    ),
    "medium": Preset(
        name="medium", shape=96, n_slices=12, pelvis_slices=24, n_v1_low=3, n_v1_high=3,
        n_ft=3, n_unseen=1, realizations=10, width=64, depth=8, batch_size=16, patch_size=32,
        scratch_iterations=1500, finetune_iterations=400, online_iterations=300,
        fisher_samples=64, replicates=5, base_seeds=(0, 1), threads=1, tod="long",
        notes="the paper's network width on a 2-core CPU (two hours or more with TOD-Net; run "
              "by hand)",
    ),
    "paper": Preset(
        name="paper", shape=128, n_slices=32, pelvis_slices=32, n_v1_low=10, n_v1_high=10,
        n_ft=7, n_unseen=1, realizations=10, width=64, depth=8, batch_size=16,
        patch_size=64, scratch_epochs=500, finetune_epochs=500, online_epochs=150,
        fisher_samples=256, val_every=500, replicates=5, workers=1, tod="paper",
        notes="the paper's sizes (20 v1 studies, 7 low-BMI v2 studies, 6 count levels, 500 "
              "epochs, 150 for online learning); meant for a GPU machine",
    ),
}


def get_preset(name: str, **overrides) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides) if overrides else PRESETS[name]
