"""Shared pieces of the training commands: options, TOML configs, data, the run driver.

Every option can also be set in a TOML file given with ``--config`` (keys are the option names,
``-`` or ``_``; tables are flattened); flags given on the command line override the file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

import tgd
from tgd.models import model_traits
from tgd.training import TrainConfig, load_toml, save_model
from tgd.training.config import LOSSES
from tgd.training.data import SIM_DEFAULTS, load_studies, noise_adaptive_set
from tgd.training.distributed import (
    DistContext,
    broadcast_module,
    broadcast_text,
    check_same_on_all_ranks,
    convert_batchnorm,
    init_from_env,
)
from tgd.training.loop import RESUME_DIR, has_resume_state, latest_resume_meta, train

S = argparse.SUPPRESS

TRAIN_DEFAULTS = {
    "iterations": None, "epochs": None, "batch_size": 16, "patch_size": 64, "lr": 1e-3,
    "weight_decay": 1e-3, "seed": 0, "checkpoint_every": 0, "val_every": 0,
    "val_max_items": 256, "channels_last": False, "progress": True, "resume": False,
    "overwrite": False, "threads": None, "bn": "auto", "data": None, "seeds": None,
    "val_data": None, "loss": "mse",
    "val_seeds": None, "version": "v1", "sim_shape": SIM_DEFAULTS["shape"],
    "sim_slices": SIM_DEFAULTS["n_slices"], "sim_bmi": SIM_DEFAULTS["bmi"], "durations": None,
    "spatial_dims": None, "patch_depth": None, "amp": None,
}


def add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", default=S,
                   help="TOML file with any of these options (flags override it)")


def add_train_options(p: argparse.ArgumentParser, defaults: dict) -> None:
    """Options shared by train, finetune and online (defaults shown from ``defaults``)."""
    d = defaults
    g = p.add_argument_group("optimisation")
    g.add_argument("--iterations", type=int, default=S, help="training iterations (steps)")
    g.add_argument("--epochs", type=int, default=S,
                   help=f"or passes over the training set (default {d.get('epochs')})")
    g.add_argument("--batch-size", type=int, default=S, help=f"global batch (default "
                   f"{d['batch_size']}; split over torchrun processes)")
    g.add_argument("--patch-size", type=_int_or_none, default=S,
                   help=f"random crop size, 'none' for full slices (default {d['patch_size']})")
    g.add_argument("--spatial-dims", type=int, choices=(2, 3), default=S,
                   help="2: 2.5-D slices (3 in, centre out); 3: 3-D volume patches (default "
                   + ("2" if d["spatial_dims"] == 2 else "the checkpoint's") + ")")
    g.add_argument("--patch-depth", type=_int_or_none, default=S,
                   help="3-D: slices per patch (default: --patch-size clipped to the slices)")
    g.add_argument("--lr", type=float, default=S, help=f"Adam learning rate (default {d['lr']})")
    g.add_argument("--weight-decay", type=float, default=S,
                   help=f"Adam L2 weight decay, the paper's weight regulariser (default "
                   f"{d['weight_decay']})")
    g.add_argument("--loss", choices=LOSSES, default=S,
                   help=f"objective (default {d['loss']}): mse; anscombe or poisson for "
                   "count-like noise where hot structures would dominate an MSE; wgan "
                   "(MSE-WGAN) or tod (TOD-Net, with --segmenter; train and finetune only: "
                   "docs/tod.md)")
    g.add_argument("--seed", type=int, default=S, help="seed of init, batches and crops")
    g.add_argument("--channels-last", action="store_true", default=S,
                   help="train in channels_last memory format")
    g.add_argument("--amp", type=_amp, default=S,
                   help="mixed precision: 'bf16' runs the forward pass in bfloat16 autocast "
                   "(float32 weights and optimizer); 'none' (default) is float32")
    g.add_argument("--threads", type=int, default=S, help="torch intra-op threads")
    g.add_argument("--batch-norm", dest="bn", choices=("auto", "frozen", "train"), default=S,
                   help="batch norm while fine-tuning: frozen (eval mode) or train (batch "
                   "statistics); auto (default): frozen for tgd/online, train otherwise")
    r = p.add_argument_group("output")
    r.add_argument("--out", default=S, help="output folder (model.safetensors + model.json)")
    r.add_argument("--overwrite", action="store_true", default=S,
                   help="replace an existing output (and discard its resume checkpoints)")
    r.add_argument("--checkpoint-every", type=int, default=S,
                   help="write a resume checkpoint every N iterations (0: never)")
    r.add_argument("--resume", action="store_true", default=S,
                   help="continue the interrupted run in --out from its last checkpoint")
    r.add_argument("--val-every", type=int, default=S, help="validate every N iterations")
    r.add_argument("--val-max-items", type=int, default=S,
                   help=f"validation slices used (default {d['val_max_items']})")
    r.add_argument("--no-progress", dest="progress", action="store_false", default=S,
                   help="no progress bar")
    add_config_option(p)


def add_data_options(p: argparse.ArgumentParser, defaults: dict, *, training: bool = True):
    g = p.add_argument_group("data (study folders from `tgd simulate`, or simulated here)")
    if training:
        g.add_argument("--data", nargs="+", default=S, metavar="DIR",
                       help="study folders, or folders holding study_* folders")
        g.add_argument("--seeds", nargs="+", type=int, default=S,
                       help="simulate these studies in memory instead of --data")
    g.add_argument("--val-data", nargs="+", default=S, metavar="DIR", help="validation studies")
    g.add_argument("--val-seeds", nargs="+", type=int, default=S,
                   help="simulated validation studies")
    g.add_argument("--version", default=S,
                   help=f"reconstruction version to use (default {defaults['version']})")
    g.add_argument("--durations", nargs="+", type=float, default=S,
                   help="input durations in s (default 30 45 60 90 120 180; target 600 s)")
    g.add_argument("--sim-shape", type=int, default=S, help="simulated matrix size")
    g.add_argument("--sim-slices", type=int, default=S, help="simulated slices per study")
    g.add_argument("--sim-bmi", choices=("low", "high"), default=S, help="simulated BMI class")


THRESHOLD_DEFAULTS = {"score": "kse", "per_layer": False, "tolerance": None, "budget": None,
                      "auto_images": 8}


def threshold_value(text) -> float | str:
    """``--threshold``: a number in [0, 1] or ``auto``."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'auto', got {text!r}") \
            from err


def add_threshold_options(g, default: str = "0.3") -> None:
    """``--threshold`` (number or auto) and the options of automatic selection and scores."""
    g.add_argument("--threshold", type=threshold_value, default=S,
                   help=f"KSE threshold phi in [0, 1], or 'auto': the largest phi whose dropped "
                   f"kernels change the output on the new data by less than --tolerance "
                   f"(default {default}; docs/threshold_selection.md)")
    g.add_argument("--score", choices=("kse", "ablation", "taylor"), default=S,
                   help="what ranks the feature maps: kse (default, the paper), or from the new "
                   "data: ablation (output change when a map is zeroed) or taylor (its "
                   "first-order estimate, one backward pass)")
    g.add_argument("--per-layer", action="store_true", default=S,
                   help="--threshold auto: one phi per layer")
    g.add_argument("--tolerance", type=float, default=S,
                   help="--threshold auto: allowed RMS output change as a fraction of the "
                   "input's noise level (default 0.1)")
    g.add_argument("--budget", type=float, default=S,
                   help="--threshold auto: at most this fraction of the parameters retrained "
                   "(alone: instead of the tolerance; with --tolerance: both hold)")
    g.add_argument("--auto-images", type=int, default=S,
                   help="images of the new data used for --threshold auto / --score (8)")


def threshold_options(opts: dict) -> tuple[float | str, dict]:
    """The threshold (a float or "auto") and the ``tgd.plan`` options from the command's
    options; errors for combinations that cannot apply."""
    thr = opts.get("threshold")
    if isinstance(thr, str):
        thr = threshold_value(thr)  # from a TOML file
    auto = thr == "auto"
    if not auto and not (isinstance(thr, int | float) and 0.0 <= thr <= 1.0):
        raise ValueError(f"threshold must lie in [0, 1] or be 'auto', got {thr!r}")
    given = [k for k in ("per_layer", "tolerance", "budget") if opts.get(k)]
    if given and not auto:
        raise ValueError(f"--{', --'.join(k.replace('_', '-') for k in given)} need "
                         "--threshold auto")
    n = opts.get("auto_images", 8)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"--auto-images must be a positive integer, got {n!r}")
    options = {"score": opts.get("score", "kse")}
    if auto:
        options.update(per_layer=bool(opts.get("per_layer")), tolerance=opts.get("tolerance"),
                       budget=opts.get("budget"))
    return thr, options


def needs_images(threshold, options: dict) -> bool:
    return threshold == "auto" or options.get("score", "kse") != "kse"


def plan_for_command(model, threshold, options: dict, images_fn, noise_fn, n_images: int):
    """The TGD plan of a training command: ``images_fn()`` (the new data, only called when
    the threshold is auto or the score data-driven) and ``noise_fn(images)`` (the input's
    noise level for the tolerance). Prints the selection; an auto threshold that retrains
    nothing is an error that says why."""
    from tgd.targeting.importance import as_images
    from tgd.training.methods import plan_model

    if not needs_images(threshold, options):
        return plan_model(model, threshold, **options)
    images = as_images(images_fn(), model, n_images)
    extra = {"noise_level": noise_fn(images)} if threshold == "auto" else {}
    plan = plan_model(model, threshold, images=images, **options, **extra)
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
    print(f"  {'phi':>8}{'maps':>7}{'% params':>10}{'RMS change':>12}")
    for pt in sel["curve"]:
        phi = pt["threshold"]
        phi = f"{phi:.3f}" if isinstance(phi, float) else "layers"
        print(f"  {phi:>8}{pt['maps']:>7}{100 * pt['fraction_retrained']:>10.1f}"
              f"{pt['change']:>12.4g}")
    print(f"  {sel['reason']}")


def _int_or_none(text: str) -> int | None:
    return None if text.lower() in ("none", "full", "0") else int(text)


def _amp(text: str | None) -> str | None:
    if text is None or str(text).lower() in ("none", "fp32", "float32"):
        return None
    if str(text).lower() != "bf16":
        raise argparse.ArgumentTypeError(f"amp must be 'bf16' or 'none', got {text!r}")
    return "bf16"


def resolve(args: argparse.Namespace, defaults: dict) -> dict:
    """Built-in defaults < TOML file < command-line flags."""
    opts = dict(defaults)
    given = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    if "config" in given:
        file_opts = load_toml(given.pop("config"))
        unknown = sorted(set(file_opts) - set(defaults))
        if unknown:
            raise ValueError(f"unknown option(s) in the config file: {unknown}")
        for key in ("patch_size", "patch_depth"):
            if key in file_opts and file_opts[key] in ("none", "full", 0):
                file_opts[key] = None
        opts.update(file_opts)
        user = set(file_opts) | set(given)
    else:
        user = set(given)
    opts.update(given)
    # The run length is iterations or epochs: one set by the user replaces a default of the other.
    for a, b in (("iterations", "epochs"), ("epochs", "iterations")):
        if a in user and b not in user and a in defaults:
            opts[b] = None
    return opts


def train_config(opts: dict, method: str) -> TrainConfig:
    if opts.get("iterations") is None and opts.get("epochs") is None:
        raise ValueError("give --iterations or --epochs")
    keys = {f for f in TrainConfig.__dataclass_fields__ if f not in ("method", "extra")}
    settings = {k: opts[k] for k in keys if k in opts}
    if "amp" in settings:  # a TOML file may say "none"
        try:
            settings["amp"] = _amp(settings["amp"])
        except argparse.ArgumentTypeError as err:
            raise ValueError(str(err)) from None
    cfg = TrainConfig(method=method, **settings)
    return cfg.validate()


def checkpoint_dims(opts: dict, ckpt, model) -> int:
    """The spatial dims of a checkpoint's net; an error if the flag or config file says other."""
    dims = model_traits(model).spatial_dims
    asked = opts.get("spatial_dims")
    if asked is not None and int(asked) != dims:
        raise ValueError(f"spatial_dims={asked} (flag or config file) contradicts the checkpoint "
                         f"{ckpt.path}: its network is {dims}-D")
    return dims


def sim_kwargs(opts: dict) -> dict:
    return {"n_slices": opts["sim_slices"], "shape": opts["sim_shape"], "bmi": opts["sim_bmi"]}


def build_datasets(opts: dict, cfg: TrainConfig):
    """(train set, validation set or None, provenance) from the data options: 2.5-D slices or
    3-D patches as ``cfg.spatial_dims`` says (validation: whole slices or volumes)."""
    durs = opts.get("durations")
    sim = sim_kwargs(opts)
    if durs is not None:
        sim["durations"] = (*durs, 600)
    studies, prov = load_studies(paths=opts.get("data"), seeds=opts.get("seeds"),
                                 version=opts["version"], sim=sim)
    dims = {"spatial_dims": cfg.spatial_dims}
    train_set = noise_adaptive_set(studies, opts["version"], cfg.patch_size, cfg.seed, durs,
                                   patch_depth=cfg.patch_depth, min_items=cfg.batch_size,
                                   labelled=cfg.loss == "tod", **dims)
    prov["items"] = len(train_set)
    prov["patch_size"] = cfg.patch_size
    if cfg.spatial_dims == 3:
        prov["patch_depth"] = train_set.patch_depth
    val_set = None
    if opts.get("val_data") or opts.get("val_seeds"):
        vstudies, vprov = load_studies(paths=opts.get("val_data"), seeds=opts.get("val_seeds"),
                                       version=opts["version"], sim=sim)
        val_set = noise_adaptive_set(vstudies, opts["version"], None, cfg.seed, durs, **dims)
        prov["validation"] = vprov
    return train_set, val_set, prov


def prepare_out(opts: dict) -> Path:
    """Check the output folder: never overwrite silently; ``--resume`` needs resume state."""
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
        for f in list(d.glob("step-*.json")) + list(d.glob("step-*.safetensors")):
            f.unlink()
        try:
            d.rmdir()
        except OSError:
            pass


def start(opts: dict) -> DistContext:
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


def run_and_save(setup, cfg: TrainConfig, train_set, val_set, opts: dict, ctx: DistContext,
                 meta: dict, out: Path, after=None) -> dict:
    """Train, then (rank 0) write ``out/model.*`` with metadata and print a summary."""
    if opts["overwrite"] and not opts["resume"] and ctx.main:
        clear_resume(out)
    t0 = time.perf_counter()
    result = train(
        setup, cfg, train_set, val_set=val_set, val_every=opts["val_every"],
        val_max_items=opts["val_max_items"], work_dir=out,
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
            from tgd.training import evaluate

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


def resume_plan(out: Path, opts: dict):
    """The plan stored in the resume checkpoint (so a resumed TGD run uses the same masks)."""
    if not opts.get("resume"):
        return None
    meta = latest_resume_meta(out)
    if meta and meta.get("plan"):
        return tgd.TGDPlan.from_dict(meta["plan"])
    return None


def dump(obj) -> str:
    return json.dumps(obj, indent=1)

