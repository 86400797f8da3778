"""The library entry points behind ``tgd train``, ``tgd finetune`` and ``tgd online``: resolve
the options, build the datasets, resume, share the TGD plan over DDP ranks, train, save.

    from tgd.training import adapt, train_from_scratch
    train_from_scratch("pairs.json", out="v1net", iterations=500)
    adapt("v1net", "new_scanner.json", method="tgd", out="tgd1", iterations=200)
    adapt("v1net", my_dataset, out="tgd2")      # any Dataset of (input, target) items

Options are flat keyword arguments with the names of the command-line options (``_`` for
``-``); ``config=`` reads more from a TOML file, which the keyword arguments override. Each
entry point's options are an :class:`OptionSet` (``TRAIN``, ``ADAPT``): the command line is
generated from the same set, so the defaults are the same everywhere. ``run_train`` and
``run_adapt`` take options already resolved (the commands call them after parsing), and
``run_adapt`` takes the training data from a callback when they are not manifests (``tgd online``:
pairs of half-count realizations; a ``torch.utils.data.Dataset`` given to ``adapt``).

Output: ``out/model.safetensors`` + ``out/model.json`` with the config, data provenance,
metrics, plan and frozen-weight fingerprints; never over an existing run unless ``overwrite``;
``resume`` continues from ``out/resume``. Under ``torchrun`` only rank 0 writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

import tgd
from tgd.data.manifest import load_pairs
from tgd.models import model_traits, new_model
from tgd.models.registry import DEFAULT_DEPTH, arch_settings
from tgd.training.config import (
    ADVERSARIAL_LOSSES,
    IMAGE_LOSSES,
    TrainConfig,
    adapt_methods,
    check_threshold,
    load_toml,
    option,
)
from tgd.training.data import paired_set
from tgd.training.distributed import (
    DistContext,
    broadcast_module,
    broadcast_text,
    check_same_on_all_ranks,
    convert_batchnorm,
    init_from_env,
)
from tgd.training.loop import RESUME_DIR, has_resume_state, latest_resume_meta, train
from tgd.training.methods import prepare
from tgd.training.model_io import load_fisher, load_model, save_fisher, save_model
from tgd.training.options import (
    METHOD_SETTINGS,
    NETWORK,
    TRAINING,
    DataOptions,
    FisherOptions,
    OptionSet,
    OutputOptions,
    ThresholdOptions,
)

ADAPT_METHODS = adapt_methods()


@dataclass
class AdaptOptions:
    """The net to adapt and how."""

    checkpoint: str | None = option(None, "model to adapt (folder or .json)", aliases=("-c",))
    method: str = option("tgd", "fine-tuning method", choices=ADAPT_METHODS)


TRAIN = OptionSet((TrainConfig, NETWORK), (FisherOptions, ("fisher_samples",)), *TRAINING,
                  depth=None)
ADAPT = OptionSet(AdaptOptions, (TrainConfig, METHOD_SETTINGS), ThresholdOptions, FisherOptions,
                  *TRAINING, spatial_dims=None)


Datasets = Callable[[TrainConfig], tuple]


def resolve_options(option_set: OptionSet, given: dict,
                    config: str | Path | None = None) -> dict:
    """``option_set``'s defaults < the TOML file ``config`` < ``given``."""
    return option_set.resolve(given, load_toml(config) if config is not None else None)


def train_from_scratch(data=None, *, config: str | Path | None = None, **options) -> dict:
    """``tgd train``: a DnCNN or U-Net trained from scratch on the pairs of ``data`` (manifest
    paths, or a ``torch.utils.data.Dataset`` of ``(input, target)`` items); options as
    ``TRAIN``. Returns the summary."""
    options, datasets = _with_data(options, data)
    return run_train(resolve_options(TRAIN, options, config), datasets=datasets)


def adapt(checkpoint, data=None, *, method: str = "tgd", config: str | Path | None = None,
          validation=None, **options) -> dict:
    """``tgd finetune``: adapt ``checkpoint`` to ``data`` (manifest paths, or a
    ``torch.utils.data.Dataset`` of ``(input, target)`` items, with an optional ``validation``
    dataset) with ``method`` (tgd, ft, ewc, l2sp, lora); options as ``ADAPT``. Returns the
    summary."""
    given, datasets = _with_data({"checkpoint": str(checkpoint), "method": method, **options},
                                 data, validation)
    return run_adapt(resolve_options(ADAPT, given, config), datasets=datasets)


def _with_data(options: dict, data, validation=None):
    """``(options, datasets callback or None)``: manifests (a path or a list of them) become the
    ``data`` option; a Dataset is passed through the callback as it is."""
    if isinstance(data, list | tuple) and not data:
        raise ValueError("data is an empty list (give manifest paths or a Dataset)")
    if data is None:
        if validation is not None:
            raise ValueError("validation= goes with a Dataset given as data")
        return options, None
    if isinstance(data, str | Path) or (isinstance(data, list | tuple)
                                        and all(isinstance(d, str | Path) for d in data)):
        if validation is not None:
            raise ValueError("with manifests, give validation pairs as --val-data / val_data")
        items = [data] if isinstance(data, str | Path) else list(data)
        return {**options, "data": [str(d) for d in items]}, None
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(f"data must be manifest path(s) or a Dataset, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("the training dataset is empty")
    if options.get("data") or options.get("val_data"):
        raise ValueError("give the data either as a Dataset or as manifests, not both")
    prov = {"source": "dataset", "type": type(data).__name__, "items": len(data)}
    return options, (lambda cfg: (data, validation, prov))


def run_train(opts: dict, *, datasets: Datasets | None = None) -> dict:
    """``train_from_scratch`` on resolved options (``datasets``: as for :func:`run_adapt`)."""
    if opts["depth"] is None:
        opts["depth"] = DEFAULT_DEPTH[opts["arch"]]
    cfg = TrainConfig.from_options(opts, "scratch")
    out = prepare_out(opts)
    ctx = start(opts)
    train_set, val_set, prov = (datasets or (lambda c: build_datasets(opts, c)))(cfg)
    torch.manual_seed(cfg.seed)
    model = distribute(new_model(cfg.arch, cfg.width, cfg.depth, cfg.spatial_dims), ctx)
    setup = prepare("scratch", model, cfg)

    def store_fisher(trained, meta):
        n = int(opts["fisher_samples"])
        if n <= 0:
            return
        from tgd.training.ewc import estimate_fisher

        fisher = estimate_fisher(trained, train_set, n, seed=cfg.seed, progress=opts["progress"])
        anchor = {k: p.detach().clone() for k, p in trained.named_parameters()}
        save_fisher(out / "model", fisher, anchor,
                    {"samples": n, "data": prov, "estimator": "empirical diagonal Fisher of the "
                     "per-sample MSE, eval mode"}, overwrite=True)
        meta["ewc_fisher"] = {"file": "model.fisher.json", "samples": n}

    meta = {"data": prov, "parent": None, "trainable": trainable_of(setup)}
    if ctx.main:
        print(meta["trainable"]["text"])
    save_critic = attach_objective(setup, cfg, opts, meta)
    return run_and_save(setup, cfg, train_set, val_set, opts, ctx, meta, out,
                        after=chain(store_fisher, save_critic))


def run_adapt(opts: dict, *, datasets: Datasets | None = None,
              noise_level: Callable | None = None, after=None) -> dict:
    """``adapt`` on resolved options. ``datasets(cfg)`` returns (train set, validation set or
    None, provenance) instead of the studies of the data options; ``noise_level(images)`` is
    the input's noise level for ``threshold="auto"`` (default: estimated from the images);
    ``after(model, meta)`` runs on rank 0 before the model is saved."""
    if not opts.get("checkpoint"):
        raise ValueError("give --checkpoint (the model to adapt)")
    method = opts["method"]
    model, parent = load_model(opts["checkpoint"])
    opts["spatial_dims"] = checkpoint_dims(opts, parent, model)
    tgd_like = method in ("tgd", "online")
    cfg = TrainConfig.from_options(opts, method)
    threshold, plan_opts = threshold_options({**opts, "threshold": cfg.threshold}) \
        if tgd_like else (None, {})
    if method == "online":
        check_online_loss(cfg)
    out = prepare_out(opts)
    ctx = start(opts)
    if (settings := arch_settings(parent.meta["model"])) is not None:
        cfg.arch, cfg.width, cfg.depth = settings
    distribute(model, ctx)
    train_set, val_set, prov = (datasets or (lambda c: build_datasets(opts, c)))(cfg)
    meta = {"data": prov, "parent": parent_info(parent), "plan_history": plan_history(parent)}
    plan = fisher = None
    if tgd_like:
        if noise_level is None:
            from tgd.targeting.noise_level import estimate_noise_level

            noise_level = estimate_noise_level
        rule = auto_rule(opts, val_set) if threshold == "auto" else None
        probe = None
        if rule == "probe":
            probe = probe_options(opts, plan_opts)
            # before any probe runs: the inputs it reads and the options it takes
            from tgd.training.probe import check_probe_inputs

            check_probe_inputs(model, cfg, train_set, val_set,
                               iterations=probe["iterations"], max_items=probe["max_items"])
        plan = resume_plan(out, opts) or share_plan(
            model, lambda: plan_for_run(model, threshold, plan_opts, lambda: train_set,
                                        noise_level, opts["auto_images"], probe=probe and {
                                            **probe, "cfg": cfg, "val_set": val_set}), ctx)
        cfg.threshold = plan.threshold
        meta["tgd_round"] = len(meta["plan_history"]) + 1
        meta["trainable"] = tgd.trainable_summary(model, plan, cfg.mode)
    elif method == "ewc":
        fisher, finfo = fisher_for(model, parent, opts, cfg)
        meta["ewc_fisher"] = finfo
    setup = prepare(method, model, cfg, plan=plan, fisher=fisher)
    meta.setdefault("trainable", trainable_of(setup))
    if ctx.main:
        print(meta["trainable"]["text"])
    save_critic = attach_objective(setup, cfg, opts, meta)
    return run_and_save(setup, cfg, train_set, val_set, opts, ctx, meta, out,
                        after=chain(after, save_critic))


def trainable_of(setup) -> dict:
    """What a method's setup trains, PEFT's ``print_trainable_parameters`` line among it (TGD
    counts its retrained entries: :func:`tgd.trainable_summary`)."""
    trained = sum(p.numel() for p in setup.params if p.requires_grad)
    total = sum(p.numel() for p in setup.model.parameters())
    return {"trainable": trained, "total": total, "fraction": trained / max(total, 1),
            "text": f"{setup.method} trains {trained:,} of {total:,} parameters "
                    f"({100 * trained / max(total, 1):.2f} %)"}


def check_online_loss(cfg: TrainConfig) -> None:
    """Online learning has Noise2Noise targets: noisy, so a critic must not learn them as the
    "real" images. It takes an image loss, or the task loss (``tod``, with the study's class
    map) with the adversarial weight at 0."""
    if cfg.loss == "wgan" or (cfg.loss == "tod" and cfg.gan_weight != 0):
        raise ValueError(
            f"tgd online takes an image loss (--loss {' | '.join(IMAGE_LOSSES)}) or the task "
            "loss without a critic (--loss tod --gan-weight 0, with --labels): its Noise2Noise "
            "targets are noisy, and a critic would learn noise as what real images look like")


def threshold_options(opts: dict) -> tuple[float | str, dict]:
    """The threshold (:func:`tgd.training.config.check_threshold`) and the ``tgd.plan`` options
    from the options; errors for combinations that cannot apply."""
    thr = check_threshold(opts.get("threshold", TrainConfig.threshold))
    auto = thr == "auto"
    given = [k for k in ("per_layer", "tolerance", "budget") if opts.get(k)]
    if given and not auto:
        raise ValueError(f"--{', --'.join(k.replace('_', '-') for k in given)} need "
                         "--threshold auto")
    n = opts.get("auto_images", ThresholdOptions.auto_images)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"--auto-images must be a positive integer, got {n!r}")
    plan_options = {"score": opts.get("score", ThresholdOptions.score)}
    if auto:
        plan_options.update(per_layer=bool(opts.get("per_layer")), tolerance=opts.get("tolerance"),
                            budget=opts.get("budget"))
    return thr, plan_options


def auto_rule(opts: dict, val_set) -> str:
    """How ``--threshold auto`` chooses phi: ``--auto-rule``, else probe when there are
    validation data and drop without; printed, with the reason."""
    rule = opts.get("auto_rule")
    if rule not in (None, "probe", "drop"):
        raise ValueError(f"--auto-rule must be probe or drop, got {rule!r}")
    if rule == "probe" and val_set is None:
        raise ValueError("--auto-rule probe needs validation data (--val-data, a 'validation' "
                         "section in --data, or --holdout for tgd online)")
    why = "as asked (--auto-rule)" if rule else (
        "validation data given" if val_set is not None else
        "no validation data; give some for the probe rule")
    rule = rule or ("probe" if val_set is not None else "drop")
    print(f"--threshold auto: rule {rule} ({why})")
    return rule


def probe_options(opts: dict, plan_options: dict) -> dict:
    """The probe rule's settings from the options; errors for the drop rule's own options."""
    given = [k for k in ("per_layer", "budget") if plan_options.get(k)]
    if given:
        raise ValueError(f"--{', --'.join(k.replace('_', '-') for k in given)} apply to "
                         "--auto-rule drop, not to the probe rule")
    from tgd.training.probe import CAP_TOLERANCE

    it = opts.get("probe_iterations", ThresholdOptions.probe_iterations)  # checked by
    # check_probe_inputs, before any probe runs
    tol = plan_options.get("tolerance")
    return {"iterations": it, "max_items": opts.get("val_max_items"),
            "cap_tolerance": CAP_TOLERANCE if tol is None else tol,
            "score": plan_options.get("score", ThresholdOptions.score)}


def needs_images(threshold, plan_options: dict) -> bool:
    return threshold == "auto" or plan_options.get("score", ThresholdOptions.score) != "kse"


def plan_for_run(model, threshold, plan_options: dict, images_fn, noise_fn, n_images: int, *,
                 probe: dict | None = None):
    """The TGD plan of a run: ``images_fn()`` (the new data, only called when the threshold is
    auto or the score data-driven) and ``noise_fn(images)`` (the input's noise level for the
    tolerance). ``probe`` (:func:`probe_options` with ``cfg`` and ``val_set``): choose phi by
    probe adaptations (:func:`tgd.training.probe.select_by_probe`). Prints the selection; an
    auto threshold that retrains nothing is an error that says why."""
    from tgd.targeting.importance import as_images
    from tgd.training.methods import plan_model

    if probe is not None:
        from tgd.training.probe import select_by_probe

        plan = select_by_probe(model, probe["cfg"], images_fn(), probe["val_set"],
                               iterations=probe["iterations"], noise_level=noise_fn,
                               max_items=probe["max_items"], score=probe["score"],
                               cap_tolerance=probe["cap_tolerance"], cap_images=n_images)
        print_selection(plan)
        if plan.selection["maps"] == 0:
            raise ValueError(f"--threshold auto: {plan.selection['reason']}")
        return plan
    if not needs_images(threshold, plan_options):
        return plan_model(model, threshold, **plan_options)
    images = as_images(images_fn(), model, n_images)
    extra = {"noise_level": noise_fn(images)} if threshold == "auto" else {}
    plan = plan_model(model, threshold, images=images, **plan_options, **extra)
    print_selection(plan)
    if plan.selection and plan.selection["maps"] == 0:
        raise ValueError(f"--threshold auto: {plan.selection['reason']}")
    return plan


def print_selection(plan) -> None:
    """Print the threshold selection's curve and reason (if the plan has one)."""
    sel = plan.selection
    if not sel:
        return
    print(f"threshold selection ({sel['mode']}, score {sel['score']}, rule {sel['rule']}):")
    if sel["rule"] == "probe":
        print(f"  {'phi':>8}{'maps':>7}{'% params':>10}{'val loss':>12}{'gain':>11}"
              f"{'SE':>10}  status")
        for pt in sel["curve"]:
            nums = "".join(f"{pt[k]:>{w}.4g}" if k in pt else " " * w for k, w in
                           (("loss", 12), ("improvement", 11), ("standard_error", 10)))
            print(f"  {pt['threshold']:>8.3f}{pt['maps']:>7}"
                  f"{100 * pt['fraction_retrained']:>10.1f}{nums}  {pt['status']}")
        c = sel["cost"]
        print(f"  cost: {c['probes']} probes x {c['iterations_per_probe']} iterations = "
              f"{c['iterations']} (bound {c['bound_iterations']}), {c['seconds']:.1f} s")
        print(f"  {sel['reason']}")
        return
    print(f"  {'phi':>8}{'maps':>7}{'% params':>10}{'RMS change':>12}")
    for pt in sel["curve"]:
        phi = pt["threshold"]
        phi = f"{phi:.3f}" if isinstance(phi, float) else "layers"
        print(f"  {phi:>8}{pt['maps']:>7}{100 * pt['fraction_retrained']:>10.1f}"
              f"{pt['change']:>12.4g}")
    print(f"  {sel['reason']}")


def checkpoint_dims(opts: dict, ckpt, model) -> int:
    """The spatial dims of a checkpoint's net (``model``); an error if the options say other."""
    dims = model_traits(model).spatial_dims
    asked = opts.get("spatial_dims")
    if asked is not None and int(asked) != dims:
        raise ValueError(f"spatial_dims={asked} (flag or config file) contradicts the checkpoint "
                         f"{ckpt.path}: its network is {dims}-D")
    return dims


def build_datasets(opts: dict, cfg: TrainConfig):
    """(train set, validation set or None, provenance) from the manifests of the data options:
    2.5-D slices or 3-D patches as ``cfg.spatial_dims`` says (validation: whole slices or
    volumes; ``--val-data``, else the manifests' 'validation' sections)."""
    if not opts.get("data"):
        raise ValueError("give --data (manifests of input/target pairs; see tgd.data.manifest)")
    labelled = cfg.loss == "tod"
    pairs, prov = load_pairs(opts["data"], labels=labelled)
    if pairs is None:
        raise ValueError(f"--data {' '.join(opts['data'])}: no training items")
    dims = {"spatial_dims": cfg.spatial_dims}
    train_set = paired_set(pairs, cfg.patch_size, cfg.seed, patch_depth=cfg.patch_depth,
                           min_items=cfg.batch_size, labelled=labelled, **dims)
    prov["items"] = len(train_set)
    prov["patch_size"] = cfg.patch_size
    if cfg.spatial_dims == 3:
        prov["patch_depth"] = train_set.patch_depth
    val_set = None
    vpairs, vprov = load_pairs(opts.get("val_data") or opts["data"], "validation")
    if opts.get("val_data") and vpairs is None:
        vpairs, vprov = load_pairs(opts["val_data"])
    if vpairs is not None:
        val_set = paired_set(vpairs, None, cfg.seed, **dims)
        prov["validation"] = vprov
    return train_set, val_set, prov


def parent_info(ckpt) -> dict:
    m = ckpt.meta
    return {"path": str(ckpt.path), "tensors_sha256": m["tensors"]["sha256"],
            "method": m.get("method"), "data": m.get("data")}


def plan_history(ckpt) -> list:
    hist = list(ckpt.meta.get("plan_history") or [])
    if ckpt.meta.get("plan"):
        hist.append(ckpt.meta["plan"])
    return hist


def fisher_for(model, parent, opts, cfg):
    """The Fisher stored beside the parent, or estimated from the given pre-training data."""
    from tgd.training.ewc import estimate_fisher

    if opts.get("fisher_data"):
        pairs, prov = load_pairs(opts["fisher_data"])
        if pairs is None:
            raise ValueError(f"--fisher-data {' '.join(opts['fisher_data'])}: no training items")
        ds = paired_set(pairs, cfg.patch_size, cfg.seed, spatial_dims=cfg.spatial_dims,
                        patch_depth=cfg.patch_depth)
        return estimate_fisher(model, ds, opts["fisher_samples"], cfg.seed), {"data": prov}
    stored = load_fisher(parent.path)
    if stored is None:
        return None, None
    fisher, anchor, meta = stored
    params = dict(model.named_parameters())
    if set(anchor) != set(params) or any(not torch.equal(anchor[k], params[k]) for k in anchor):
        raise ValueError(f"the stored Fisher ({meta.get('tensors', {}).get('file')}) was computed "
                         "for other weights than this checkpoint's")
    return fisher, {"stored": True, "data": meta.get("data")}


def attach_objective(setup, cfg: TrainConfig, opts: dict, meta: dict):
    """Give ``setup`` its critic (and segmenter) for ``cfg.loss``; returns an ``after`` hook
    for ``run_and_save`` that writes ``OUT/model.critic.*`` (None for an image loss)."""
    if cfg.loss not in ADVERSARIAL_LOSSES:
        return None
    from tgd.training.adversarial import make_adversarial
    from tgd.training.checkpoint import save_checkpoint

    if cfg.spatial_dims != 2:
        raise ValueError("--loss wgan|tod supports 2.5-D networks (spatial-dims 2) only")
    seg, info = None, None
    if cfg.loss == "tod":
        if not opts.get("segmenter"):
            raise ValueError("--loss tod needs --segmenter (a checkpoint from "
                             "`tgd train-segmenter`)")
        from tgd.training.segmenter import load_segmenter

        seg, ck = load_segmenter(opts["segmenter"])
        info = {"path": str(ck.path), "tensors_sha256": ck.meta["tensors"]["sha256"],
                "model": ck.meta["model"], "classes": ck.meta.get("classes")}
    adv = make_adversarial(cfg, spatial_dims=2, segmenter=seg, segmenter_info=info)
    setup.adversarial = adv
    meta["objective"] = adv.describe()

    def save_critic(_model, final_meta, out: Path = Path(opts["out"])):
        if cfg.gan_weight > 0:  # with no adversarial term the critic was never trained
            save_checkpoint(out / "model.critic", adv.critic.state_dict(),
                            {"kind": "critic", "model": adv.critic.spec(),
                             "objective": adv.describe()}, overwrite=True)
            final_meta["objective"]["critic_file"] = "model.critic.json"
        final_meta["objective"]["last_terms"] = adv.last

    return save_critic


def chain(*hooks):
    """One ``after(model, meta)`` hook running ``hooks`` (None ones skipped) in order."""
    hooks = [h for h in hooks if h is not None]
    if not hooks:
        return None

    def run(model, meta):
        for h in hooks:
            h(model, meta)

    return run


def prepare_out(opts: dict) -> Path:
    """Check the output folder: never overwrite silently; ``resume`` needs resume state."""
    if not opts.get("out"):
        raise ValueError("give --out (the output folder)")
    out = Path(opts["out"])
    final = out / "model.json"
    if opts["resume"]:
        if not has_resume_state(out):
            raise FileNotFoundError(f"--resume: no resume checkpoints in {out / RESUME_DIR}")
        if final.exists() and not opts["overwrite"]:
            raise FileExistsError(f"{final} exists: that run finished (use --overwrite)")
        return out
    if final.exists() and not opts["overwrite"]:
        raise FileExistsError(f"{final} exists; refusing to overwrite it (use --overwrite)")
    if has_resume_state(out) and not opts["overwrite"]:
        raise FileExistsError(
            f"{out} holds resume checkpoints of an unfinished run: pass --resume to continue "
            "it, or --overwrite to start over"
        )
    return out


def clear_resume(out: Path) -> None:
    d = out / RESUME_DIR
    if d.is_dir():
        # atomic_write's ".tmp-*-step-*" files are left by a run killed mid-write
        for f in [*d.glob("step-*.json"), *d.glob("step-*.safetensors"), *d.glob(".tmp-*")]:
            f.unlink()
        try:
            d.rmdir()
        except OSError:
            pass


def start(opts: dict) -> DistContext:
    """Set the thread count and join the process group under ``torchrun``."""
    if opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    return init_from_env()


def share_plan(model, setup_plan_fn, ctx: DistContext):
    """TGD plan computed on rank 0 and broadcast; every rank checks it fits its weights."""
    text = setup_plan_fn().to_json() if ctx.main else None
    plan = tgd.TGDPlan.from_json(broadcast_text(text, ctx))
    check_same_on_all_ranks(tgd.frozen_fingerprint(model, plan), "the frozen-weight hash", ctx)
    return plan


def distribute(model, ctx: DistContext):
    if ctx.active:
        convert_batchnorm(model)
        broadcast_module(model, ctx)
    return model


def resume_plan(out: Path, opts: dict):
    """The plan stored in the resume checkpoint (so a resumed TGD run uses the same masks)."""
    if not opts.get("resume"):
        return None
    meta = latest_resume_meta(out)
    if meta and meta.get("plan"):
        return tgd.TGDPlan.from_dict(meta["plan"])
    return None


def run_and_save(setup, cfg: TrainConfig, train_set, val_set, opts: dict, ctx: DistContext,
                 meta: dict, out: Path, after=None) -> dict:
    """Train, then (rank 0) write ``out/model.*`` with metadata and print a summary."""
    if opts["overwrite"] and not opts["resume"] and ctx.main:
        clear_resume(out)
    t0 = time.perf_counter()
    result = train(
        setup, cfg, train_set, val_set=val_set, val_every=opts["val_every"],
        val_max_items=opts["val_max_items"], patience=opts.get("patience", 0), work_dir=out,
        checkpoint_every=opts["checkpoint_every"], resume=opts["resume"], ctx=ctx,
        progress=opts["progress"],
    )
    wall = time.perf_counter() - t0
    fp_after = setup.frozen_fingerprint()
    state = setup.effective_state_dict()
    model = setup.finish()
    summary = {}
    if ctx.main:
        if val_set is not None and not result.metrics["val"]:
            from tgd.training.loop import evaluate

            result.metrics["val_loss_final"] = evaluate(model, val_set,
                                                        max_items=opts["val_max_items"])
        meta = dict(meta)
        meta.update({
            "method": setup.method, "config": cfg.to_dict(), "seed": cfg.seed,
            "metrics": {**result.metrics, "wall_time_s": wall},
        })
        meta.update(setup.info)
        if setup.fingerprint_before is not None:
            meta["frozen_fingerprint"] = {
                "before": setup.fingerprint_before, "after": fp_after,
                "preserved": setup.fingerprint_before == fp_after,
            }
        if setup.plan is not None:
            meta["plan"] = setup.plan.to_dict()
        if after is not None:
            after(model, meta)
        path = save_model(out / "model", model, meta, state=state, overwrite=True)
        clear_resume(out)
        summary = {
            "checkpoint": str(path), "method": setup.method,
            "iterations": result.iterations, "train_time_s": result.metrics["train_time_s"],
            "time_per_iteration_s": result.metrics["time_per_iteration_s"],
            "train_loss_last": result.metrics["train_loss_last"],
        }
        if "val_loss_final" in result.metrics:
            summary["val_loss_final"] = result.metrics["val_loss_final"]
        if "frozen_fingerprint" in meta:
            summary["frozen_preserved"] = meta["frozen_fingerprint"]["preserved"]
        print_summary(summary)
    if ctx.active:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def print_summary(summary: dict) -> None:
    print("summary:")
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        print(f"  {k}: {v}")


__all__ = ["ADAPT", "ADAPT_METHODS", "TRAIN", "AdaptOptions", "DataOptions", "OutputOptions",
           "adapt", "run_adapt", "run_train", "train_from_scratch"]
