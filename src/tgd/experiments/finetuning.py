"""Fine-tuning experiment (paper Table 1 / Fig. 5): adapt the v1-net to v2 reconstructions.

Nets: v1-net and v2-net (scratch), FT-net (last ``ft_blocks`` conv blocks of the v1-net),
TGD-net at phi = ``threshold`` in both gradient-masking modes ("parameter": exact gradient,
masked update; "activation": the paper's TGD layers, gradient masked at conv outputs), and
EWC-net. The adapted nets see only the low-BMI v2 fine-tuning studies.

Evaluation (per test set: v2 low BMI, v2 high BMI, and v1 low BMI for knowledge retention):
the nets denoise R i.i.d. 60-s realizations split from the test study's 600-s data; lesion
ensemble bias (vs the phantom's true lesion concentration, and vs the 600-s image as in the
paper's slides), ensemble liver CoV, and PSNR / SSIM / NRMSE vs the 600-s image of the same
reconstruction. Row "60-s input" is the undenoised realizations.
"""

from __future__ import annotations

from tqdm import tqdm

from tgd.evaluation.quality import ensemble_quality
from tgd.experiments.common import (
    BaseNets,
    StudySet,
    Trained,
    dataset,
    denoise_ensemble,
    fisher_of,
    lesion_slice,
    run_training,
    scale_of,
    train_config,
)
from tgd.experiments.presets import Preset

TEST_SETS = (("v2", "low"), ("v2", "high"), ("v1", "low"))


ADAPTED = ("FT-net", "TGD-net (parameter)", "TGD-net (activation)", "EWC-net")


def adapt(preset: Preset, studies: StudySet, base: BaseNets, *, which=ADAPTED,
          progress: bool = False) -> dict[str, Trained]:
    """Train FT-net, TGD-net (both modes) and EWC-net (or the subset ``which``) from the
    v1-net on the low-BMI v2 fine-tuning studies."""
    bad = sorted(set(which) - set(ADAPTED))
    if bad:
        raise ValueError(f"unknown adapted nets {bad}; choose from {ADAPTED}")
    v1 = base.v1.model
    data = dataset(studies.finetune, "v2", preset)
    nets: dict[str, Trained] = {}
    for name in which:
        if name == "FT-net":
            cfg = train_config(preset, "ft", stage="finetune")
            nets[name] = run_training(name, "ft", v1, cfg, data, progress=progress)
        elif name.startswith("TGD-net"):
            mode = name.split("(")[1].rstrip(")")
            cfg = train_config(preset, "tgd", mode=mode, stage="finetune")
            nets[name] = run_training(name, "tgd", v1, cfg, data, progress=progress)
        else:
            fisher, fisher_s = fisher_of(v1, dataset(studies.pretrain, "v1", preset), preset,
                                         progress)
            cfg = train_config(preset, "ewc", stage="finetune")
            nets[name] = run_training(name, "ewc", v1, cfg, data, fisher=fisher,
                                      progress=progress)
            nets[name].info["fisher_s"] = fisher_s
    return nets


def evaluate_nets(nets: dict[str, Trained | None], studies: StudySet, *,
                  progress: bool = False) -> tuple[list[dict], dict]:
    """One row per (net, test set) with :func:`ensemble_quality`'s metrics, and per test set
    the first realization's lesion slice as denoised by each net (for the figure)."""
    rows, examples = [], {}
    jobs = [(n, v, b) for v, b in TEST_SETS for n in nets]
    for name, version, bmi in tqdm(jobs, desc="evaluate (fine-tuning)", disable=not progress):
        study = studies.test[bmi]
        ens = studies.realizations[(bmi, version)]
        t = nets[name]
        den = denoise_ensemble(None if t is None else t.model, ens, scale_of(study, version))
        q = ensemble_quality(study, version, den)
        test = f"{version} {bmi} BMI"
        rows.append({"net": name, "test": test, "version": version, "bmi": bmi, **q})
        if test not in examples:
            z = lesion_slice(study)
            examples[test] = {"slice": z, "reference": study.images[(version, 600)][z],
                              "images": {}}
        examples[test]["images"][name] = den[0, examples[test]["slice"]]
    return rows, examples


def run(preset: Preset, studies: StudySet, base: BaseNets, *, progress: bool = False) -> dict:
    """Train the adapted nets and evaluate every net; returns the experiment's record
    (``nets`` keeps the trained models for the online experiment)."""
    adapted = adapt(preset, studies, base, progress=progress)
    nets: dict[str, Trained | None] = {"60-s input": None, "v1-net": base.v1,
                                       "v2-net": base.v2, **adapted}
    rows, examples = evaluate_nets(nets, studies, progress=progress)
    training = [t.info for t in nets.values() if t is not None]
    return {"rows": rows, "training": training, "examples": examples, "nets": nets}
