"""TGD on MONAI's network zoo: plan, attach, train, check; writes the coverage table.

For every network in ``ZOO`` (2-D and 3-D where MONAI builds it), with default-ish arguments:

1. ``tgd.plan(model, 0.3)`` on the default example input (timed: median of ``--repeats``);
2. if it plans: the parameter gradients of every targeted entry in ``mode="parameter"`` equal
   those of plain training (an independent run of the unmodified model, same batch);
3. ``tgd.attach`` + a few AdamW steps with weight decay; every frozen value is kept
   (``tgd.frozen_fingerprint`` before and after).

A network either passes all three or is refused with ``UnsupportedModelError`` naming the
operation. Run by hand (about a minute per 3-D network on a 2-core CPU):

    PYTHONPATH=src .venv/bin/python bench/zoo_coverage.py [--write docs/any_architecture.md]

``--write`` replaces the table between the ``zoo-coverage`` markers of that file.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.networks import nets
from torch import nn
from torch.nn.utils import parametrize

import tgd
from tgd.targeting import UnsupportedModelError
from tgd.targeting.channels import trace_smallest
from tgd.targeting.geometry import CONV_TYPES

BEGIN, END = "<!-- zoo-coverage:begin -->", "<!-- zoo-coverage:end -->"
THRESHOLD = 0.3


@dataclass
class Entry:
    name: str
    build: Callable[[int], nn.Module]  # spatial dims -> model
    dims: tuple[int, ...] = (2, 3)
    size: int = 32  # the training batch's spatial size in the checks
    in_channels: int = 1


def _effnet(dims):
    return nets.EfficientNetBN("efficientnet-b0", spatial_dims=dims, in_channels=1,
                               num_classes=2, pretrained=False)  # fmt: skip


ZOO: list[Entry] = [
    Entry("UNet", lambda d: nets.UNet(d, 1, 1, (16, 32, 64, 128, 256), (2, 2, 2, 2),
                                      num_res_units=2)),  # fmt: skip
    Entry("BasicUNet", lambda d: nets.BasicUNet(d, 1, 1)),
    Entry("BasicUNetPlusPlus", lambda d: nets.BasicUNetPlusPlus(d, 1, 1)),
    Entry("AttentionUnet", lambda d: nets.AttentionUnet(d, 1, 1, (16, 32, 64, 128), (2, 2, 2))),
    Entry("SegResNet", lambda d: nets.SegResNet(d, init_filters=8, in_channels=1, out_channels=2)),
    Entry("SegResNetDS", lambda d: nets.SegResNetDS(d, init_filters=8, in_channels=1,
                                                    out_channels=2)),  # fmt: skip
    Entry("DynUNet", lambda d: nets.DynUNet(d, 1, 1, [3, 3, 3, 3], [1, 2, 2, 2], [2, 2, 2])),
    Entry("HighResNet", lambda d: nets.HighResNet(d, 1, 1)),
    Entry("VNet", lambda d: nets.VNet(d, 1, 1)),
    Entry("DenseNet121", lambda d: nets.DenseNet121(d, 1, 2)),
    Entry("SEResNet50", lambda d: nets.SEResNet50(spatial_dims=d, in_channels=1, num_classes=2)),
    Entry("ResNet18", lambda d: nets.resnet18(spatial_dims=d, n_input_channels=1, num_classes=2)),
    Entry("EfficientNetBN-b0", _effnet),
    Entry("RegUNet", lambda d: nets.RegUNet(d, 1, 4, depth=3, out_channels=1)),
    Entry("LocalNet", lambda d: nets.LocalNet(d, 1, 4, (0, 1, 2, 3), out_channels=1)),
    Entry("GlobalNet", lambda d: nets.GlobalNet((32,) * d, d, 1, 4, depth=3)),
    Entry("AutoEncoder", lambda d: nets.AutoEncoder(d, 1, 1, (4, 8, 16), (2, 2, 2))),
    Entry("MedNeXtS", lambda d: nets.MedNeXtS(spatial_dims=d, in_channels=1, out_channels=1)),
    Entry("UNETR", lambda d: nets.UNETR(1, 1, (32,) * d, feature_size=8, hidden_size=96,
                                        mlp_dim=192, num_heads=4, spatial_dims=d)),  # fmt: skip
    Entry("SwinUNETR", lambda d: nets.SwinUNETR(1, 1, feature_size=12, spatial_dims=d)),
]


def _loss(out) -> torch.Tensor:
    tensors = [t for t in _flat(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return sum(t.float().square().mean() for t in tensors)


def _flat(out):
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (list, tuple)):
        for o in out:
            yield from _flat(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _flat(o)


def targeted_gradients_match(model: nn.Module, plan, x: torch.Tensor, rtol=1e-4) -> int:
    """Parameter-mode TGD gradients of targeted entries == plain training's; returns how many.

    The reference is an independent run of an unmodified copy of the model (no TGD code on its
    path). Raises ``AssertionError`` naming the first parameter that differs.
    """
    plain = copy.deepcopy(model).train()
    torch.manual_seed(0)
    _loss(plain(x)).backward()
    ref = {n: p.grad for n, p in plain.named_parameters()}
    # entries whose true gradient is zero (a conv bias before a batch norm) carry rounding noise
    scale = max(float(g.abs().max()) for g in ref.values() if g is not None)
    tgd_model = copy.deepcopy(model).train()
    n_checked = 0
    with tgd.attach(tgd_model, plan, mode="parameter"):
        torch.manual_seed(0)
        _loss(tgd_model(x)).backward()
        for mname, mod in tgd_model.named_modules():
            if not parametrize.is_parametrized(mod):
                continue
            for pname, plist in mod.parametrizations.items():
                mask = plist[0].mask.expand_as(plist.original)
                if not bool(mask.any()):
                    continue
                key = f"{mname}.{pname}" if mname else pname
                got, want = plist.original.grad, ref[key]
                assert got is not None, f"{key}: no gradient under TGD"
                torch.testing.assert_close(got[mask], want[mask], rtol=rtol, atol=1e-5 * scale,
                                           msg=key)  # fmt: skip
                n_checked += int(mask.sum())
    return n_checked


def adamw_keeps_frozen(model: nn.Module, plan, x: torch.Tensor, steps=3) -> None:
    fp = tgd.frozen_fingerprint(model, plan)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    model.train()
    with tgd.attach(model, plan, mode="activation"):
        for _ in range(steps):
            opt.zero_grad()
            _loss(model(x)).backward()
            opt.step()
        assert tgd.frozen_fingerprint(model, plan) == fp, "a frozen value moved during training"
    assert tgd.frozen_fingerprint(model, plan) == fp, "a frozen value moved at detach"


def conv_fraction_targeted(model: nn.Module, plan) -> float:
    modules = dict(model.named_modules())
    total = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                for m in modules.values() if isinstance(m, CONV_TYPES))  # fmt: skip
    counts = plan.parameter_counts(model)
    return sum(counts[n][0] for n in plan.layers) / total


def check(entry: Entry, dims: int, repeats: int = 3, train: bool = True) -> dict:
    torch.manual_seed(0)
    model = entry.build(dims)
    row = {"network": entry.name, "dims": dims,
           "params": sum(p.numel() for p in model.parameters())}  # fmt: skip
    times = []
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            p = tgd.plan(model, THRESHOLD)
            times.append(time.perf_counter() - t0)
    except UnsupportedModelError as err:
        row.update(result="refused", reason=str(err))
        return row
    trace_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trace_smallest(model)
        trace_times.append(time.perf_counter() - t0)
    row.update(plan_ms=1e3 * statistics.median(times), plan=p,
               trace_ms=1e3 * statistics.median(trace_times),
               targeted=conv_fraction_targeted(model, p))  # fmt: skip
    if train:
        x = torch.randn(2, entry.in_channels, *([entry.size] * dims))
        row["grads_checked"] = targeted_gradients_match(model, p, x)
        adamw_keeps_frozen(model, p, x)
    row["result"] = "planned"
    return row


def table(rows: list[dict]) -> str:
    lines = ["| network | dims | parameters | plan (ms) | of which trace (ms) | "
             "conv params targeted, φ = 0.3 | result |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for r in rows:
        if r["result"] == "planned" and "grads_checked" not in r:
            res = "planned"
            ms, pct = f"{r['plan_ms']:.0f} | {r['trace_ms']:.0f}", f"{100 * r['targeted']:.1f} %"
        elif r["result"] == "planned":
            res = f"planned; {r['grads_checked']} targeted gradients = plain, frozen kept"
            ms, pct = f"{r['plan_ms']:.0f} | {r['trace_ms']:.0f}", f"{100 * r['targeted']:.1f} %"
        else:
            res = f"{r['result']}: {r['reason']}"
            ms, pct = "- | -", "-"
        lines.append(f"| {r['network']} | {r['dims']}-D | {r['params'] / 1e6:.2f} M | {ms} | "
                     f"{pct} | {res} |")  # fmt: skip
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="network names to run (default: all)")
    ap.add_argument("--dims", nargs="*", type=int, default=[2, 3])
    ap.add_argument("--no-train", action="store_true", help="plan only (timing and coverage)")
    ap.add_argument("--write", type=Path, help="markdown file to write the table into")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for entry in ZOO:
        if args.only and entry.name not in args.only:
            continue
        for dims in entry.dims:
            if dims not in args.dims:
                continue
            t0 = time.perf_counter()
            try:
                row = check(entry, dims, args.repeats, train=not args.no_train)
            except Exception as err:  # a failed check is a finding: show it, keep going
                row = {"network": entry.name, "dims": dims, "params": 0, "result": "FAILED",
                       "reason": f"{type(err).__name__}: {err}"}  # fmt: skip
            row.pop("plan", None)
            rows.append(row)
            print(f"{entry.name:<20} {dims}-D  {row['result']:<8} "
                  f"{row.get('plan_ms', float('nan')):7.1f} ms  "
                  f"trace {row.get('trace_ms', float('nan')):7.1f} ms  "
                  f"{100 * row.get('targeted', float('nan')):5.1f} %  "
                  f"{row.get('reason', '')[:110]}  [{time.perf_counter() - t0:.0f} s]",
                  flush=True)  # fmt: skip
    text = table(rows)
    print(text)
    if args.write:
        doc = args.write.read_text(encoding="utf-8")
        head, rest = doc.split(BEGIN)
        _, tail = rest.split(END)
        load = os.getloadavg()[0]
        meta = (f"Generated by `bench/zoo_coverage.py` (torch {torch.__version__}, 1 thread, "
                f"{platform.machine()}, Python {sys.version.split()[0]}, "
                f"{args.repeats} plan call(s) per row, load average {load:.1f} at the end)."
                )  # fmt: skip
        args.write.write_text(f"{head}{BEGIN}\n{meta}\n\n{text}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
