"""``tgd denoise IN OUT``: denoise a PET volume with a trained checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tgd.commands.common import (
    add_config_option,
    add_options,
    check_checkpoint,
    check_writable,
    field_names,
    parse,
    units_meta,
)
from tgd.data.io import read_image, sidecar_path, write_nifti
from tgd.inference import denoise_volume, prepare_for_inference
from tgd.training import load_model
from tgd.training.config import amp_value, int_or_none, option
from tgd.training.distributed import default_device
from tgd.training.driver import print_summary
from tgd.training.options import OptionSet, OutputOptions


@dataclass
class DenoiseOptions:
    """What ``tgd denoise`` reads and writes, and how it runs the net."""

    input: str | None = option(None, "NIfTI file (.nii/.nii.gz) or DICOM series folder")
    output: str | None = option(None, "output NIfTI (.nii/.nii.gz)")
    checkpoint: str | None = option(None, "trained model (folder or .json)", aliases=("-c",))
    batch_size: int = option(8, "2.5-D nets: slices per forward")
    chunk: int | None = option(32, "3-D nets: output slices per forward ('none': the whole "
                               "volume at once)", parse=int_or_none)
    halo: int | None = option(None, "3-D nets: context slices added on each side of a chunk",
                              none="the net's receptive-field radius, which makes chunking "
                              "exact")
    scale: float | None = option(None, "intensity factor applied before the net and undone "
                                 "after", none="1 / mean over the estimated body")
    fold_bn: bool = option(True, "keep batch norm layers separate")
    channels_last: bool = option(True, "plain NCHW memory format")
    device: str | None = option(None, "cpu, cuda or cuda:N",
                                none="cuda when a GPU is visible, else cpu")
    compile: bool = option(False, "run the net through torch.compile (falls back to eager if "
                           "it cannot compile; pays back on large volumes or GPUs, see "
                           "docs/benchmarks.md)")
    amp: str | None = option(None, "'bf16': bfloat16 autocast (faster on recent CPUs and GPUs, "
                             "output within about 1e-2 relative of float32); 'none' is float32",
                             parse=amp_value, none="none")


@dataclass
class DenoiseOutput:
    """Whether the output may replace an existing file."""

    overwrite: bool = option(False, "replace an existing OUT and its JSON sidecar (never the "
                             "input)")


DENOISE = OptionSet(DenoiseOptions, DenoiseOutput, (OutputOptions, ("threads", "progress")))


def add_parser(sub) -> None:
    p = sub.add_parser(
        "denoise",
        description="Denoise IN (NIfTI file or DICOM series folder) slice by slice with a 2.5-D "
        "checkpoint, or as a volume in overlapping z-chunks with a 3-D one, and write OUT as "
        "NIfTI with the input's header and orientation. The volume "
        "is normalised by its mean over the estimated body (tgd.data.intensity_scale) unless "
        "--scale is given, as in training. Inference runs with batch norm folded into the "
        "convs and channels_last memory.",
    )
    add_options(p, DENOISE, (*field_names(DenoiseOptions), "threads", "overwrite", "progress"),
                positional=("input", "output"))
    add_config_option(p)
    p.set_defaults(func=run)


def check_not_input(inp: Path, out: Path) -> None:
    """Refuse an OUT (or its JSON sidecar) that is the input file itself, by whatever path or
    link it is named: writing it would destroy the input, even with --overwrite."""
    src = inp.resolve()
    for p, what in ((out, "OUT"), (sidecar_path(out), f"OUT's JSON sidecar {sidecar_path(out)}")):
        q = p.resolve()
        if q == src:
            raise ValueError(f"{what} is the input IN {inp}; refusing to write "
                             "over the input, even with --overwrite: give another OUT")


def run(args) -> int:
    opts = parse(args, DENOISE)
    if not opts.get("checkpoint"):
        raise ValueError("give --checkpoint (the trained model)")
    check_checkpoint(opts["checkpoint"], "--checkpoint")
    if opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    out = check_writable(opts["output"], "OUT")
    check_not_input(Path(opts["input"]), out)
    for p in (out, sidecar_path(out)):
        if p.exists() and not opts["overwrite"]:
            raise FileExistsError(f"{p} exists; refusing to overwrite it (use --overwrite)")
    model, ckpt = load_model(opts["checkpoint"])
    image = read_image(opts["input"])
    device = torch.device(opts["device"]) if opts.get("device") else default_device()
    net = prepare_for_inference(model.to(device), fold_bn=opts["fold_bn"],
                                channels_last=opts["channels_last"])
    t0 = time.perf_counter()
    den = denoise_volume(net, image.data, scale=opts["scale"], batch_size=opts["batch_size"],
                         channels_last=opts["channels_last"], prepared=True,
                         progress=opts["progress"], chunk=opts["chunk"], halo=opts["halo"],
                         compile=bool(opts["compile"]), amp=amp_value(opts.get("amp")))
    dt = time.perf_counter() - t0
    write_nifti(out, den, like=image, overwrite=opts["overwrite"],
                meta={"denoised_by": "tgd denoise", "checkpoint": str(ckpt.path),
                      "source": image.source, **units_meta(image)})
    # the arrays are (z, y, x); NIfTI files list their dimensions as (x, y, z)
    print_summary({"output": str(out), "slices": den.shape[0],
                   "shape (x, y, z)": list(den.shape[::-1]),
                   "device": str(device),
                   "seconds": dt, "slices_per_s": den.shape[0] / dt if dt else None})
    return 0
