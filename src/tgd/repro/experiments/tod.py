"""``tgd experiment tod``: MSE-net, MSE-WGAN and TOD-Net on low-dose CT and on PET (seed 002).

For each modality (CT: quarter dose -> normal dose, liver and kidney tumours; PET: 60 s ->
600 s, v2 reconstruction) and each training seed:

1. segmenters (``preset.segmenters``: U-Net, Res-U-Net, SegResNet) are trained once per
   modality on the normal-dose / 600-s images of the training studies (classes background,
   liver, kidney, lesion); the first one is TOD-Net's task network, the others are never seen
   in training;
2. a DnCNN is pre-trained with MSE (``pretrain_iterations``); from it, three nets train
   ``iterations`` more: MSE-net (MSE), MSE-WGAN (``mse_weight`` L_MSE + L_GAN) and TOD-Net
   (+ ``task_weight`` L_t), same batches, same critic initialisation;
3. on the test studies every net denoises every slice; metrics against the normal-dose /
   600-s image: RMSE, PSNR, SSIM over the body and inside the lesion ROI (lesions dilated by
   2 pixels); Dice (liver, kidney, lesion) of every segmenter on the denoised images (and on
   the low-dose and normal-dose images); for PET the lesion bias (mean lesion value of the
   output vs the 600-s image).

Differences TOD-Net minus each baseline are paired by (training seed, test study); the report
gives their mean and 95 % t-interval. :func:`run_tod` writes ``results.json`` in ``out``
(``tgd.repro.report.tod.write_tod_report`` its ``report.md``); :func:`run_replicate` is one
independent replicate of all this for ``tgd reproduce``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from scipy import stats

from tgd.data import LabelledNoiseAdaptiveDataset, PairedVolumes, slices_25d
from tgd.data.io import atomic_write
from tgd.evaluation.baselines import gaussian_at_noise
from tgd.evaluation.metrics import psnr, ssim
from tgd.evaluation.segmentation import dice_per_class
from tgd.models import DnCNN, Segmenter
from tgd.repro.datasets import study_scale
from tgd.repro.experiments.common import REPLICATE_STRIDE
from tgd.repro.sim.classes import TASK_CLASSES, lesion_roi, task_classes
from tgd.repro.sim.ct import simulate_ct
from tgd.repro.sim.study import simulate_study
from tgd.training import TrainConfig, prepare, train
from tgd.training.adversarial import make_adversarial
from tgd.training.distributed import DistContext, default_device
from tgd.training.segmenter import segment, train_segmenter

METHODS = ("MSE-net", "MSE-WGAN", "TOD-Net")
LOSS = {"MSE-net": "mse", "MSE-WGAN": "wgan", "TOD-Net": "tod"}


@dataclass(frozen=True)
class TODPreset:
    name: str
    shape: int = 128
    n_slices: int = 16
    ct_train: tuple[int, ...] = (100, 101, 102)
    ct_test: tuple[int, ...] = (110, 111)
    pet_train: tuple[int, ...] = (200, 201, 202)
    pet_test: tuple[int, ...] = (210, 211)
    seeds: tuple[int, ...] = (0, 1, 2)
    segmenters: tuple[str, ...] = ("unet", "resunet", "segresnet")
    seg_width: int = 8
    seg_iterations: int = 250
    width: int = 16
    depth: int = 6
    batch_size: int = 8
    patch_size: int = 48
    pretrain_iterations: int = 300
    iterations: int = 200
    mse_weight: float = 100.0
    task_weight: float = 1.0
    gan_weight: float = 1.0
    n_critic: int = 1
    ct_low_dose: str = "quarter"
    # "ct", "pet" (MSE-net / MSE-WGAN / TOD-Net), "pet-tgd" (TGD v1 -> v2, MSE vs TOD loss;
    # not in the quick default, which stays within 15 min: --set modalities=pet-tgd)
    modalities: tuple[str, ...] = ("ct", "pet")
    threads: int | None = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    "tiny": TODPreset("tiny", shape=64, n_slices=4,
                      ct_train=(100,), ct_test=(110,), pet_train=(200,), pet_test=(210,),
                      seeds=(0, 1), segmenters=("unet", "resunet"), seg_width=4,
                      seg_iterations=4, width=8, depth=3, batch_size=4, patch_size=16,
                      pretrain_iterations=3, iterations=3),
    "quick": TODPreset("quick"),
    # segmenters good enough to see lesions, denoisers trained longer (docs/tod/long: 31 min on
    # one CPU thread for 4 seeds; what `tgd reproduce --preset medium` runs per replicate)
    "long": TODPreset("long", seeds=(0, 1, 2, 3), seg_iterations=3000, pretrain_iterations=800,
                      iterations=800, modalities=("ct", "pet", "pet-tgd")),
    # the paper-like sizes, for a GPU machine (configured, not run)
    "paper": TODPreset("paper", n_slices=32, ct_train=tuple(range(100, 110)),
                       ct_test=tuple(range(110, 115)), pet_train=tuple(range(200, 210)),
                       pet_test=tuple(range(210, 215)), seeds=(0, 1, 2, 3, 4),
                       segmenters=("unet", "resunet", "segresnet", "vnet"), seg_width=16,
                       seg_iterations=3000, width=64, depth=8, batch_size=16, patch_size=64,
                       pretrain_iterations=3000, iterations=3000, threads=None,
                       modalities=("ct", "pet", "pet-tgd")),
}


def get_tod_preset(name: str, **overrides) -> TODPreset:
    if name not in PRESETS:
        raise ValueError(f"the tod experiment has presets {sorted(PRESETS)}, not {name!r}")
    names = {f.name for f in dataclasses.fields(TODPreset)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown tod preset settings: {bad}")
    return dataclasses.replace(PRESETS[name], **overrides)


# ---- data -------------------------------------------------------------------------------------


def _ct_case(seed: int, p: TODPreset):
    st = simulate_ct(seed, doses=("normal", p.ct_low_dose), n_slices=p.n_slices, shape=p.shape)
    img = {("x", "low"): st.normalised(("ct", p.ct_low_dose)),
           ("x", "ref"): st.normalised(("ct", "normal"))}
    return SimpleNamespace(seed=seed, images=img, labels=st.labels,
                           classes=task_classes(st.labels), lesions=st.lesions,
                           voxel_mm=_voxel_mm(st.meta), to_native=lambda v: v * 1000.0 - 1000.0,
                           units="HU")


def _pet_case(seed: int, p: TODPreset, version: str = "v2"):
    st = simulate_study(seed, versions=(version,), durations=(60, 600), n_slices=p.n_slices,
                        shape=p.shape)
    s = study_scale(st, version)
    img = {("x", "low"): st.images[(version, 60)] * s,
           ("x", "ref"): st.images[(version, 600)] * s}
    return SimpleNamespace(seed=seed, images=img, labels=st.labels,
                           classes=task_classes(st.labels), lesions=st.lesions,
                           voxel_mm=_voxel_mm(st.meta), to_native=lambda v: v,
                           units="body mean")


def _voxel_mm(meta: dict) -> tuple[float, float, float]:
    x, y, z = meta["voxel_size_mm"]
    return float(z), float(y), float(x)


# Study seeds of one replicate of ``tgd reproduce`` (:func:`run_replicate`): base + role offset +
# REPLICATE_STRIDE * replicate seed + index, apart from the PET experiments' own study seeds
# (tgd.repro.experiments.common.SEED_BASE, 1000-5999 + the same stride).
REPLICATE_SEED_BASE = {("ct", "train"): 6000, ("ct", "test"): 6500, ("pet", "train"): 7000,
                       ("pet", "test"): 7500}


def study_seeds(kind: str, p: TODPreset, replicate: int | None = None
                ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(training, test) study seeds of ``kind`` ("ct" or "pet"): the preset's own, or, for one
    replicate, as many fresh ones drawn from the replicate's seed (so replicates share no
    data)."""
    train_s, test_s = (p.ct_train, p.ct_test) if kind == "ct" else (p.pet_train, p.pet_test)
    if replicate is None:
        return tuple(train_s), tuple(test_s)

    def fresh(role, n):
        base = REPLICATE_SEED_BASE[(kind, role)] + REPLICATE_STRIDE * int(replicate)
        return tuple(base + i for i in range(n))

    return fresh("train", len(train_s)), fresh("test", len(test_s))


def cases(modality: str, seeds, p: TODPreset, version: str = "v2") -> list:
    if modality == "ct":
        return [_ct_case(s, p) for s in seeds]
    return [_pet_case(s, p, version) for s in seeds]


def pairs_dataset(cs, p: TODPreset, seed: int, patch=True, segmentation=False):
    src = "ref" if segmentation else "low"
    pairs = [PairedVolumes([c.images[("x", src)]], c.images[("x", "ref")], scales=1.0,
                           classes=c.classes, name=f"case {c.seed}") for c in cs]
    return LabelledNoiseAdaptiveDataset(pairs, patch_size=p.patch_size if patch else None,
                                        seed=seed)


# ---- training ---------------------------------------------------------------------------------


def _cfg(p: TODPreset, seed: int, loss: str, iterations: int) -> TrainConfig:
    return TrainConfig(width=p.width, depth=p.depth, batch_size=p.batch_size,
                       patch_size=p.patch_size, iterations=iterations, seed=seed, loss=loss,
                       mse_weight=p.mse_weight if loss != "mse" else 100.0,
                       task_weight=p.task_weight, gan_weight=p.gan_weight, n_critic=p.n_critic)


def train_segmenters(train_cs, p: TODPreset, seed: int) -> dict:
    ds = pairs_dataset(train_cs, p, seed, segmentation=True)
    out = {}
    for k, arch in enumerate(p.segmenters):
        torch.manual_seed(seed * 100 + k)
        seg = Segmenter(arch, n_classes=len(TASK_CLASSES), width=p.seg_width)
        train_segmenter(seg, ds, iterations=p.seg_iterations, batch_size=p.batch_size,
                        seed=seed, device=default_device())
        out[arch] = seg.eval()
    return out


def train_tgd_pair(v1_cs, v2_cs, p: TODPreset, seed: int, task_seg) -> tuple[dict, dict]:
    """v1-net (MSE on v1 data), then TGD fine-tuning on v2 data with MSE and with the TOD
    loss (only the kernels of feature maps with KSE < 0.3 move, batch norm frozen)."""
    ctx = DistContext(device=default_device())
    torch.manual_seed(seed)
    v1 = DnCNN(width=p.width, depth=p.depth)
    cfg = _cfg(p, seed, "mse", p.pretrain_iterations + p.iterations)
    setup = prepare("scratch", v1, cfg)
    train(setup, cfg, pairs_dataset(v1_cs, p, seed), ctx=ctx)
    v1 = setup.finish().eval()
    ds = pairs_dataset(v2_cs, p, seed + 1000)
    nets, info = {"v1-net": v1}, {}
    for name, loss in (("TGD (MSE)", "mse"), ("TGD (TOD)", "tod")):
        cfg = dataclasses.replace(_cfg(p, seed + 1000, loss, p.iterations), method="tgd")
        setup = prepare("tgd", copy.deepcopy(v1), cfg)
        setup.adversarial = make_adversarial(cfg, segmenter=copy.deepcopy(task_seg))
        before = setup.fingerprint_before
        train(setup, cfg, ds, ctx=ctx)
        info[name] = {"frozen_preserved": setup.frozen_fingerprint() == before,
                      "trained_fraction": setup.info["tgd"]["trained_fraction"]}
        nets[name] = setup.finish().eval()
    return nets, info


def train_denoisers(train_cs, p: TODPreset, seed: int, task_seg) -> tuple[dict, dict]:
    ds = pairs_dataset(train_cs, p, seed)
    torch.manual_seed(seed)
    base = DnCNN(width=p.width, depth=p.depth)
    cfg = _cfg(p, seed, "mse", p.pretrain_iterations)
    ctx = DistContext(device=default_device())  # a GPU when there is one
    setup = prepare("scratch", base, cfg)
    train(setup, cfg, ds, ctx=ctx)
    base = setup.finish()
    nets, info = {}, {}
    for name in METHODS:
        model = copy.deepcopy(base)
        cfg = _cfg(p, seed + 1000, LOSS[name], p.iterations)
        setup = prepare("scratch", model, cfg)
        setup.adversarial = make_adversarial(cfg, segmenter=copy.deepcopy(task_seg))
        t0 = time.perf_counter()
        res = train(setup, cfg, ds, ctx=ctx)
        info[name] = {"train_time_s": time.perf_counter() - t0,
                      "train_mse_last": res.metrics["train_loss_last"],
                      "last_terms": setup.adversarial.last if setup.adversarial else None}
        nets[name] = setup.finish().eval()
    return nets, info


# ---- evaluation -------------------------------------------------------------------------------


@torch.no_grad()
def denoise(net, vol: np.ndarray) -> np.ndarray:
    dev = next(net.parameters()).device
    x = slices_25d(vol).to(dev)
    out = torch.cat([net(x[s:s + 8]) for s in range(0, len(x), 8)])
    return out[:, 0].cpu().numpy()


def _lesion_bias(out, ref, case) -> float:
    vals = []
    for le in case.lesions:
        m = case.labels == le["label"]
        if m.sum() >= 2:
            vals.append((out[m].mean() - ref[m].mean()) / ref[m].mean())
    return float(np.mean(vals)) if vals else float("nan")


def image_metrics(out, case) -> dict:
    ref = case.images[("x", "ref")]
    body = case.labels > 0
    roi = lesion_roi(case.classes, 2)
    nat_o, nat_r = case.to_native(out), case.to_native(ref)
    m = {}
    for where, mask in (("image", body), ("roi", roi)):
        m[f"rmse_{where}"] = float(np.sqrt(((nat_o - nat_r)[mask] ** 2).mean()))
        m[f"psnr_{where}"] = psnr(out, ref, mask)
        m[f"ssim_{where}"] = ssim(out, ref, mask)
    m["lesion_bias"] = _lesion_bias(out, ref, case)
    return m


def dice_metrics(out, case, segs: dict) -> dict:
    m = {}
    x = torch.from_numpy(np.ascontiguousarray(out[:, None], dtype=np.float32))
    for arch, seg in segs.items():
        pred = segment(seg, x.to(next(seg.parameters()).device)).cpu().numpy()
        d = dice_per_class(pred, case.classes, range(1, len(TASK_CLASSES)))
        for k, v in d.items():
            m[f"dice_{arch}_{TASK_CLASSES[k]}"] = v
    return m


def evaluate_case(images: dict, case, segs) -> dict:
    return {name: {**image_metrics(img, case), **dice_metrics(img, case, segs)}
            for name, img in images.items()}


def paired_ci(a, b) -> dict:
    """Mean of ``a - b`` over pairs (NaN pairs dropped) with a 95 % t-interval."""
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return {"n": int(len(d)), "mean": float(d.mean()) if len(d) else float("nan"),
                "lo": float("nan"), "hi": float("nan")}
    h = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return {"n": int(len(d)), "mean": float(d.mean()), "lo": float(d.mean() - h),
            "hi": float(d.mean() + h)}


def gaussian_baseline(case, imgs: dict, match: str, max_fwhm_mm: float = 40.0
                      ) -> tuple[np.ndarray, dict]:
    """The low-dose input filtered with the Gaussian whose noise in the liver (eroded by two
    voxels; standard deviation of the difference to the normal-dose image) matches the
    ``match`` net's: the trivial baseline every net is shown beside. Where no width is that
    quiet, the width of its smallest error (``matched`` False;
    :func:`tgd.evaluation.baselines.gaussian_at_noise`)."""
    from scipy.ndimage import binary_erosion

    liver = case.classes == TASK_CLASSES.index("liver")
    rois = [("liver eroded by 2 voxels", binary_erosion(liver, iterations=2)),
            ("liver eroded by 1 voxel", binary_erosion(liver)), ("liver", liver),
            ("body", case.labels > 0)]  # small test slabs may hold little or no liver
    where, roi = next((w, r) for w, r in rois if r.sum() >= 2)
    low, ref = case.images[("x", "low")], case.images[("x", "ref")]
    target = float((imgs[match] - ref)[roi].std())
    out, fwhm, matched = gaussian_at_noise(low, roi, max(target, 1e-12), case.voxel_mm,
                                           reference=ref, max_fwhm_mm=max_fwhm_mm)
    return out, {"case": case.seed, "fwhm_mm": float(fwhm), "matched": matched,
                 "target_std": target, "roi": where}


def run_modality(modality: str, p: TODPreset, progress=None, *, replicate: int | None = None,
                 segmenters: dict | None = None) -> dict:
    """``modality``: "ct", "pet", or "pet-tgd" (v1-net fine-tuned on v2 with TGD, MSE vs TOD
    loss; pre-training on the v1 reconstructions of the training studies).

    Without ``replicate``: the preset's studies, segmenters trained once (seed 0), denoisers
    for every seed of ``p.seeds``. With ``replicate`` (one replicate of ``tgd reproduce``):
    fresh studies (:func:`study_seeds`), segmenters and denoisers all seeded by it.
    ``segmenters``: a dict shared by the calls of one run, which keeps each kind's trained
    segmenters ("pet" and "pet-tgd" train on the same studies with the same seed)."""
    kind = "ct" if modality == "ct" else "pet"
    train_seeds, test_seeds = study_seeds(kind, p, replicate)
    train_cs, test_cs = cases(kind, train_seeds, p), cases(kind, test_seeds, p)
    v1_cs = cases("pet", train_seeds, p, "v1") if modality == "pet-tgd" else None
    rows = []  # one per (seed, test case, method)
    info, gauss = {}, []
    segmenters = {} if segmenters is None else segmenters
    if kind not in segmenters:
        segmenters[kind] = train_segmenters(train_cs, p, 0 if replicate is None else replicate)
    segs = segmenters[kind]
    if progress:
        progress(f"{modality}: segmenters trained")
    first = "v1-net" if modality == "pet-tgd" else METHODS[0]
    for seed in (p.seeds if replicate is None else (replicate,)):
        if modality == "pet-tgd":
            nets, info[seed] = train_tgd_pair(v1_cs, train_cs, p, seed, segs[p.segmenters[0]])
        else:
            nets, info[seed] = train_denoisers(train_cs, p, seed, segs[p.segmenters[0]])
        for case in test_cs:
            imgs = {"low-dose input": case.images[("x", "low")],
                    "normal-dose reference": case.images[("x", "ref")]}
            imgs.update({n: denoise(net, case.images[("x", "low")]) for n, net in nets.items()})
            imgs["Gaussian filter"], g = gaussian_baseline(case, imgs, first)
            gauss.append({"seed": seed, **g})
            for name, m in evaluate_case(imgs, case, segs).items():
                rows.append({"seed": seed, "case": case.seed, "method": name, **m})
        if progress:
            progress(f"{modality}: seed {seed} done")
    keys = [k for k in rows[0] if k not in ("seed", "case", "method")]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table = {m: {k: _nanmean([r[k] for r in rows if r["method"] == m]) for k in keys}
             for m in methods}

    def col(method, k):
        return [r[k] for r in sorted((r for r in rows if r["method"] == method),
                                     key=lambda r: (r["seed"], r["case"]))]

    if modality == "pet-tgd":
        diffs = {"TGD (TOD) - TGD (MSE)": {k: paired_ci(col("TGD (TOD)", k), col("TGD (MSE)", k))
                                           for k in keys}}
    else:
        diffs = {f"TOD-Net - {b}": {k: paired_ci(col("TOD-Net", k), col(b, k)) for k in keys}
                 for b in ("MSE-net", "MSE-WGAN", "Gaussian filter")}
    return {"rows": rows, "table": table, "differences": diffs, "training": info,
            "units": test_cs[0].units, "gaussian": gauss,
            "studies": {"train": list(train_seeds), "test": list(test_seeds)}}


def _nanmean(values) -> float:
    """Mean over the finite values; NaN (no warning) when there are none, e.g. the Dice of a
    class that no test study contains."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def run_replicate(p: TODPreset, seed: int, progress=None) -> dict:
    """One independent replicate of the TOD experiment for ``tgd reproduce``: every modality of
    ``p`` on fresh studies, segmenters and denoisers seeded by ``seed``. Returns ``rows`` (one
    per modality and method: its metrics averaged over the replicate's test studies), the
    per-study rows under ``study_rows``, ``training`` and ``units`` per modality."""
    rows, study_rows, training, units, studies, gauss, segs = [], [], {}, {}, {}, {}, {}
    for mod in p.modalities:
        r = run_modality(mod, p, progress, replicate=seed, segmenters=segs)
        rows += [{"modality": mod, "method": m, **v} for m, v in r["table"].items()]
        study_rows += [{"modality": mod, **x} for x in r["rows"]]
        training[mod] = r["training"][seed]
        units[mod], studies[mod], gauss[mod] = r["units"], r["studies"], r["gaussian"]
    return {"rows": rows, "study_rows": study_rows, "training": training, "units": units,
            "studies": studies, "gaussian": gauss, "preset": p.to_dict()}


def run_tod(p: TODPreset, out: str | Path, *, overwrite: bool = False, progress: bool = False
            ) -> dict:
    out = Path(out)
    if (out / "results.json").exists() and not overwrite:
        raise FileExistsError(f"{out / 'results.json'} exists (use --overwrite)")
    if p.threads:
        torch.set_num_threads(p.threads)
    t0 = time.perf_counter()
    say = print if progress else None
    res = {"preset": p.to_dict(), "modalities": {}}
    segs: dict = {}
    for mod in p.modalities:
        res["modalities"][mod] = run_modality(mod, p, say, segmenters=segs)
    res["wall_time_s"] = time.perf_counter() - t0
    res["torch_threads"] = torch.get_num_threads()
    text = json.dumps(res, indent=1, default=float) + "\n"
    atomic_write(out / "results.json", lambda f: f.write_text(text))
    return res
