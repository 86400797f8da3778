"""``tgd denoise IN OUT``: denoise a PET volume with a trained checkpoint."""

from __future__ import annotations

import time

import torch

from tgd.commands._common import S, _amp, _int_or_none, print_summary, resolve
from tgd.data.io import read_image, sidecar_path, write_nifti
from tgd.inference import denoise_volume, prepare_for_inference
from tgd.training import load_model
from tgd.training.distributed import default_device

DEFAULTS = {"checkpoint": None, "batch_size": 8, "chunk": 32, "halo": None, "scale": None,
            "fold_bn": True,
            "channels_last": True, "overwrite": False, "progress": True, "threads": None,
            "device": None, "compile": False, "amp": None}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "denoise", help="denoise a NIfTI file or DICOM series with a checkpoint",
        description="Denoise IN (NIfTI file or DICOM series folder) slice by slice with a 2.5-D "
        "checkpoint, or as a volume in overlapping z-chunks with a 3-D one, and write OUT as "
        "NIfTI with the input's header and orientation. The volume "
        "is normalised by its mean over the estimated body (tgd.data.intensity_scale) unless "
        "--scale is given, as in training. Inference runs with batch norm folded into the "
        "convs and channels_last memory.",
    )
    p.add_argument("input", help="NIfTI file (.nii/.nii.gz) or DICOM series folder")
    p.add_argument("output", help="output NIfTI (.nii/.nii.gz)")
    p.add_argument("--checkpoint", "-c", default=S, help="trained model (folder or .json)")
    p.add_argument("--batch-size", type=int, default=S,
                   help="2.5-D nets: slices per forward (default 8)")
    p.add_argument("--chunk", type=_int_or_none, default=S,
                   help="3-D nets: output slices per forward (default 32; 'none': the whole "
                   "volume at once)")
    p.add_argument("--halo", type=int, default=S,
                   help="3-D nets: context slices added on each side of a chunk (default: the "
                   "net's receptive-field radius, which makes chunking exact)")
    p.add_argument("--scale", type=float, default=S, help="intensity factor applied before "
                   "the net and undone after (default: 1 / mean over the estimated body)")
    p.add_argument("--no-fold-bn", dest="fold_bn", action="store_false", default=S,
                   help="keep batch norm layers separate")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=S,
                   help="plain NCHW memory format")
    p.add_argument("--device", default=S,
                   help="cpu, cuda or cuda:N (default: cuda when a GPU is visible, else cpu)")
    p.add_argument("--compile", action="store_true", default=S,
                   help="run the net through torch.compile (falls back to eager if it cannot "
                   "compile; pays back on large volumes or GPUs, see docs/benchmarks.md)")
    p.add_argument("--amp", type=_amp, default=S,
                   help="'bf16': bfloat16 autocast (faster on recent CPUs and GPUs, output "
                   "within about 1e-2 relative of float32); 'none' (default)")
    p.add_argument("--threads", type=int, default=S, help="torch intra-op threads")
    p.add_argument("--overwrite", action="store_true", default=S, help="replace OUT")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=S)
    p.add_argument("--config", metavar="TOML", default=S, help="TOML file with these options")
    p.set_defaults(func=run)


def run(args) -> int:
    opts = resolve(args, {**DEFAULTS, "input": None, "output": None})
    if not opts.get("checkpoint"):
        raise ValueError("give --checkpoint (the trained model)")
    if opts.get("threads"):
        torch.set_num_threads(int(opts["threads"]))
    from pathlib import Path

    out = Path(opts["output"])
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
                         compile=bool(opts["compile"]), amp=_amp(opts.get("amp")))
    dt = time.perf_counter() - t0
    write_nifti(out, den, like=image, overwrite=opts["overwrite"],
                meta={"denoised_by": "tgd denoise", "checkpoint": str(ckpt.path),
                      "source": image.source})
    print_summary({"output": str(out), "slices": den.shape[0], "shape": list(den.shape),
                   "device": str(device),
                   "seconds": dt, "slices_per_s": den.shape[0] / dt if dt else None})
    return 0
