"""Threshold selection on a classification domain shift (not denoising): does auto-phi find a
useful point between adaptation and retention? Results in docs/threshold_selection.md.

Task: 5 synthetic shapes (disk, square, triangle, cross, ring; random position, size, rotation),
28 x 28 pixels. "Scanner A" (source): light blur, mild noise. "Scanner B" (target): heavy blur,
lower contrast with an offset and a smooth intensity gradient, strong noise. A small CNN
(4 conv + BN + ReLU, global average pool, linear head) is trained on A, then adapted with 60
labelled B images (12 per class) by:

- FT: every weight; EWC: every weight with the EWC penalty (Fisher from A, cross-entropy);
- TGD at fixed phi 0.3 / 0.5 / 0.7 (KSE);
- TGD at auto-phi from the 60 B images without their labels: global and per layer (KSE,
  default relative tolerance 0.05, and a looser 0.2), and global with ablation / Taylor scores.

TGD keeps the frozen maps' batch-norm statistics (eval-mode BN, the repository's default for
TGD); FT and EWC train BN. Metrics: accuracy on 1000 held-out B images (adaptation) and 1000 A
images (retention), per seed; also the KSE-vs-random check of each source net.

    PYTHONPATH=src .venv/bin/python bench/eval_threshold_classification.py --seeds 0 1 2 \
        --out docs/threshold_selection  # writes classification.json and classification.png
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import tgd
from tgd.targeting.premise import kse_vs_random
from tgd.training.ewc import EWCPenalty

SIZE = 28
CLASSES = ("disk", "square", "triangle", "cross", "ring")
SCANNERS = {
    "A": {"blur": 0.6, "contrast": 1.0, "offset": 0.0, "gradient": 0.0, "noise": 0.15},
    "B": {"blur": 1.2, "contrast": 0.6, "offset": 0.2, "gradient": 0.2, "noise": 0.25},
}


def shapes(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean shape images (n, 1, SIZE, SIZE) in [0, 1] and their labels."""
    labels = torch.randint(len(CLASSES), (n,), generator=gen)
    c = (SIZE - 1) / 2 + (torch.rand(n, 2, generator=gen) - 0.5) * 8
    r = 5 + torch.rand(n, generator=gen) * 4
    th = torch.rand(n, generator=gen) * math.pi
    yy, xx = torch.meshgrid(torch.arange(SIZE.__float__()), torch.arange(SIZE.__float__()),
                            indexing="ij")
    dy, dx = yy[None] - c[:, 0, None, None], xx[None] - c[:, 1, None, None]
    cos, sin = th.cos()[:, None, None], th.sin()[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    rr = r[:, None, None]
    dist = torch.sqrt(dx**2 + dy**2)
    sd = torch.stack([
        dist - rr,                                                      # disk
        torch.maximum(u.abs(), v.abs()) - 0.8 * rr,                     # square
        torch.maximum(torch.maximum(-v - 0.5 * rr,                      # triangle
                                    0.866 * u + 0.5 * v - 0.5 * rr),
                      -0.866 * u + 0.5 * v - 0.5 * rr),
        torch.minimum(torch.maximum(u.abs() - 0.3 * rr, v.abs() - rr),  # cross
                      torch.maximum(v.abs() - 0.3 * rr, u.abs() - rr)),
        (dist - 0.7 * rr).abs() - 0.3 * rr,                             # ring
    ], 1)
    img = (0.5 - sd[torch.arange(n), labels]).clamp(0, 1)
    return img[:, None], labels


def scanner(img: torch.Tensor, name: str, gen: torch.Generator) -> torch.Tensor:
    s = SCANNERS[name]
    k = torch.arange(-4, 5.0)
    g = torch.exp(-(k**2) / (2 * s["blur"] ** 2))
    g = g / g.sum()
    x = F.conv2d(img, g.view(1, 1, 1, -1), padding=(0, 4))
    x = F.conv2d(x, g.view(1, 1, -1, 1), padding=(4, 0))
    ramp = torch.linspace(-1, 1, SIZE).view(1, 1, 1, -1)
    x = s["contrast"] * x + s["offset"] + s["gradient"] * ramp
    return x + s["noise"] * torch.randn(x.shape, generator=gen)


def data(n: int, name: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    img, y = shapes(n, gen)
    return scanner(img, name, gen), y


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()

        def block(i, o, s):
            return [nn.Conv2d(i, o, 3, stride=s, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

        self.features = nn.Sequential(*block(1, 16, 1), *block(16, 32, 2), *block(32, 32, 1),
                                      *block(32, 64, 2))
        self.head = nn.Linear(64, len(CLASSES))

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def fit(model, x, y, steps, lr, *, params=None, penalty=None, bn_train=True, seed=0,
        batch=32, weight_decay=0.0):
    opt = torch.optim.AdamW(params if params is not None else model.parameters(), lr=lr,
                            weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        model.train(bn_train)
        idx = torch.randint(len(x), (min(batch, len(x)),), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if penalty is not None:
            loss = loss + penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


def fisher(model, x, y, n=256):
    """Diagonal empirical Fisher of the cross-entropy on source data (per-sample gradients)."""
    model.eval()
    params = dict(model.named_parameters())
    f = {k: torch.zeros_like(p) for k, p in params.items()}
    for i in range(min(n, len(x))):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]),
                                    list(params.values()))
        for k, g in zip(params, grads, strict=True):
            f[k] += g.detach() ** 2 / min(n, len(x))
    return f


def tgd_adapt(source, plan, xb, yb, steps, lr, seed):
    model = copy.deepcopy(source)
    handle = tgd.attach(model, plan, mode="parameter")
    params = list(handle.trainable_parameters())
    if params:
        fit(model, xb, yb, steps, lr, params=params, bn_train=False, seed=seed)
    handle.detach()
    return model


def seed_data(seed: int, n_source: int):
    """A seed's data: source training images, A and B test sets (1000 each), and the few
    labelled target images (12 per class): ``(xa, ya, xa_test, ya_test, xb_test, yb_test, xb,
    yb)``."""
    xa, ya = data(n_source, "A", 100 + seed)
    xa_test, ya_test = data(1000, "A", 200 + seed)
    xb_test, yb_test = data(1000, "B", 300 + seed)
    xb_pool, yb_pool = data(600, "B", 400 + seed)
    idx = torch.cat([torch.nonzero(yb_pool == c).flatten()[:12] for c in range(len(CLASSES))])
    return xa, ya, xa_test, ya_test, xb_test, yb_test, xb_pool[idx], yb_pool[idx]


def run_seed(seed: int, args) -> dict:
    torch.manual_seed(seed)
    xa, ya, xa_test, ya_test, xb_test, yb_test, xb, yb = seed_data(seed, args.n_source)
    t0 = time.perf_counter()
    source = fit(SmallCNN(), xa, ya, args.source_steps, 2e-3, seed=seed, batch=64,
                 weight_decay=args.weight_decay)
    rows = [{"method": "source net", "target": accuracy(source, xb_test, yb_test),
             "source": accuracy(source, xa_test, ya_test), "fraction": 0.0}]
    print(f"seed {seed}: source net {time.perf_counter() - t0:.0f} s, A {rows[0]['source']:.3f}"
          f" B {rows[0]['target']:.3f}", flush=True)
    steps, lr = args.adapt_steps, args.adapt_lr

    def add(name, model, fraction, **extra):
        rows.append({"method": name, "target": accuracy(model, xb_test, yb_test),
                     "source": accuracy(model, xa_test, ya_test), "fraction": fraction, **extra})
        print(f"  {name:<32} B {rows[-1]['target']:.3f}  A {rows[-1]['source']:.3f}  "
              f"retrained {100 * fraction:.1f}%", flush=True)

    add("FT", fit(copy.deepcopy(source), xb, yb, steps, lr, seed=seed), 1.0)
    fis = fisher(source, xa, ya)
    anchor = {k: p.detach().clone() for k, p in source.named_parameters()}
    for lam in args.ewc_lambdas:
        m = copy.deepcopy(source)
        add(f"EWC lambda={lam:g}", fit(m, xb, yb, steps, lr, seed=seed,
                                       penalty=EWCPenalty(fis, anchor, lam)), 1.0)
    for phi in (0.3, 0.5, 0.7):
        p = tgd.plan(source, phi)
        add(f"TGD phi={phi}", tgd_adapt(source, p, xb, yb, steps, lr, seed),
            p.trainable_fraction(source), phi=phi)
    unlabelled = xb  # the same 60 images, labels unused
    autos = [("auto global", {}), ("auto per-layer", {"per_layer": True}),
             ("auto global tol 0.2", {"tolerance": 0.2}),
             ("auto per-layer tol 0.2", {"per_layer": True, "tolerance": 0.2}),
             ("auto global ablation", {"score": "ablation"}),
             ("auto global taylor", {"score": "taylor"}),
             ("ablation phi=0.1", {"score": "ablation", "fixed": 0.1}),
             ("taylor phi=0.1", {"score": "taylor", "fixed": 0.1})]
    for name, kw in autos:
        kw = dict(kw)
        t1 = time.perf_counter()
        fixed = kw.pop("fixed", None)
        p = tgd.plan(source, "auto" if fixed is None else fixed, images=unlabelled, **kw)
        sel_s = time.perf_counter() - t1
        sel = p.selection or {}
        add(f"TGD {name}", tgd_adapt(source, p, xb, yb, steps, lr, seed),
            p.trainable_fraction(source), phi=p.threshold, maps=sel.get("maps"),
            selection_s=sel_s, reason=sel.get("reason"))
    premise = kse_vs_random(source, unlabelled, threshold=0.5, n_random=10, seed=seed)
    print(f"  premise: {premise['verdict']}", flush=True)
    return {"seed": seed, "rows": rows, "premise": premise}


def summarise(results: list[dict]) -> list[dict]:
    """Mean and 95% t-interval half-width over seeds per method."""
    from scipy import stats

    methods = [r["method"] for r in results[0]["rows"]]
    out = []
    for m in methods:
        per = [next(r for r in res["rows"] if r["method"] == m) for res in results]
        row = {"method": m, "n": len(per)}
        for key in ("target", "source", "fraction"):
            v = np.array([p[key] for p in per], float)
            half = (stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
                    if len(v) > 1 else float("nan"))
            row[key] = float(v.mean())
            row[key + "_ci"] = float(half)
        out.append(row)
    return out


def figure(summary: list[dict], results: list[dict], path: Path, title: str) -> None:
    """Means with 95% CIs (clipped to 0-100 %), every seed as a faint dot, numbered labels
    listed beside the axes (the points crowd)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, key) = plt.subplots(1, 2, figsize=(10, 5.2), width_ratios=(3, 1.3))
    lines = []
    for i, r in enumerate(summary, 1):
        m = r["method"]
        color = ("tab:red" if m == "FT" else "tab:orange" if m.startswith("EWC")
                 else "tab:gray" if m == "source net" else "tab:purple"
                 if "ablation" in m or "taylor" in m else "tab:green" if "auto" in m
                 else "tab:blue")
        per = [next(x for x in res["rows"] if x["method"] == m) for res in results]
        ax.plot([100 * p["target"] for p in per], [100 * p["source"] for p in per], ".",
                color=color, alpha=0.3)
        tx, sy = 100 * r["target"], 100 * r["source"]
        xe = [[min(100 * r["target_ci"], tx)], [min(100 * r["target_ci"], 100 - tx)]]
        ye = [[min(100 * r["source_ci"], sy)], [min(100 * r["source_ci"], 100 - sy)]]
        ax.errorbar(tx, sy, xerr=xe, yerr=ye, fmt="o", color=color, ms=5, capsize=2, lw=0.8)
        ax.annotate(str(i), (tx, sy), fontsize=7, xytext=(3, 3), textcoords="offset points")
        lines.append((f"{i}. {m.replace('TGD ', 'TGD ')} ({100 * r['fraction']:.0f}%): "
                      f"{tx:.0f} / {sy:.0f}", color))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 102)
    ax.set_xlabel("adaptation: target (scanner B) accuracy, %")
    ax.set_ylabel("retention: source (scanner A) accuracy, %")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    key.axis("off")
    key.text(0, 1, "method (% params retrained): B / A accuracy", fontsize=7, va="top",
             weight="bold")
    for j, (text, color) in enumerate(lines):
        key.text(0, 0.95 - j * 0.055, text, fontsize=6.5, va="top", color=color)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-source", type=int, default=4000)
    ap.add_argument("--source-steps", type=int, default=600)
    ap.add_argument("--adapt-steps", type=int, default=150)
    ap.add_argument("--adapt-lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--ewc-lambdas", type=float, nargs="+", default=[100.0, 10000.0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/threshold_selection")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the figure from OUT/classification.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    title = ("shapes, scanner A -> B with 60 labelled B images; mean, 95% CI and seeds "
             "(dots)")
    if args.replot:
        rec = json.loads((Path(args.out) / "classification.json").read_text())
        figure(rec["summary"], rec["results"], Path(args.out) / "classification.png", title)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = [run_seed(s, args) for s in args.seeds]
    summary = summarise(results)
    record = {"settings": vars(args), "scanners": SCANNERS, "results": results,
              "summary": summary, "wall_s": time.perf_counter() - t0}
    (out / "classification.json").write_text(json.dumps(record, indent=1) + "\n")
    figure(summary, results, out / "classification.png", title)
    print(f"\n{'method':<34}{'target':>14}{'source':>14}{'retrained':>11}")
    for r in summary:
        print(f"{r['method']:<34}{100 * r['target']:>7.1f} ± {100 * r['target_ci']:<4.1f}"
              f"{100 * r['source']:>7.1f} ± {100 * r['source_ci']:<4.1f}"
              f"{100 * r['fraction']:>9.1f}%")
    print(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
