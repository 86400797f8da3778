"""Online-learning experiment (paper Fig. 6): studies with features no training study had
(pelvis with a bilobed very hot bladder and a urinary catheter).

Nets: v2-net and TGD-net (parameter and activation modes, from the fine-tuning experiment);
TGD-N2N = v2-net adapted with TGD to the test study's own Noise2Noise pairs (its 120-s data
split into 2 x 60 s); TGD²-N2N = TGD-net adapted the same way (KSE recomputed on the TGD-net).
Each online adaptation runs in the mode of its source.

Evaluation: the nets denoise R 60-s realizations of the study; error against the 600-s image
inside the unseen-feature ROI (signed mean error, NRMSE, mean absolute error: the
hallucination error) and ensemble CoV in a soft-tissue background ROI (pelvis studies have no
liver). Every net, and the online training, sees the study normalised like the training data:
divided by the body mean (labels) of its 600-s image, exactly as in training; the label-free
estimate (``tgd.data.intensity_scale``) is within a few per cent of it on these studies.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from tgd.evaluation import rois
from tgd.evaluation.quality import ensemble_quality
from tgd.experiments.common import (
    StudySet,
    Trained,
    denoise_ensemble,
    run_training,
    scale_of,
    train_config,
)
from tgd.experiments.presets import Preset
from tgd.training.online import n2n_dataset


def run(preset: Preset, studies: StudySet, sources: dict[str, Trained], *,
        progress: bool = False) -> dict:
    """``sources``: {"v2-net": ..., "TGD-net (parameter)": ..., "TGD-net (activation)": ...}."""
    rows, training, examples = [], [], []
    for i, study in enumerate(studies.unseen):
        img1, img2 = study.noise2noise("v2", 120)
        scale = scale_of(study, "v2")
        data = n2n_dataset(img1, img2, patch_size=preset.patch_size, seed=preset.seed,
                           scale=scale)
        nets: dict[str, Trained | None] = {"60-s input": None}
        for name in ("v2-net", "TGD-net (parameter)", "TGD-net (activation)"):
            if name in sources:
                nets[name] = sources[name]
        for src_name, src in list(nets.items()):
            if src is None:
                continue
            mode = src.info.get("mode") or "parameter"
            modes = ("parameter", "activation") if src_name == "v2-net" else (mode,)
            for m in modes:
                new = ("TGD-N2N" if src_name == "v2-net" else "TGD²-N2N") + f" ({m})"
                t = run_training(new, "online", src.model,
                                 train_config(preset, "online", mode=m, stage="online"), data,
                                 progress=progress)
                t.info.update({"source": src_name, "study": study.seed})
                nets[new] = t
                training.append(t.info)
        ens = studies.realizations[(f"unseen{i}", "v2")]
        z = int(np.argmax(rois.unseen_roi(study).sum(axis=(1, 2))))
        ex = {"study": study.seed, "slice": z, "reference": study.images[("v2", 600)][z],
              "images": {}}
        for name, t in tqdm(nets.items(), desc="evaluate (online)", disable=not progress):
            den = denoise_ensemble(None if t is None else t.model, ens, scale)
            q = ensemble_quality(study, "v2", den, noise_roi="background", unseen=True)
            rows.append({"net": name, "study": study.seed, **q})
            ex["images"][name] = den[0, z]
        examples.append(ex)
    return {"rows": rows, "training": training, "examples": examples}
