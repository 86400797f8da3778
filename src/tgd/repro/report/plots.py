"""Plots of the questions the reproduction asks, from plain numbers (reusable for a user's own
study): every value may carry a 95 % confidence interval ``(lo, hi)`` over replicates, drawn
as an error bar or band; ``None`` draws the point alone.

- :func:`tradeoff_scatter` (one panel), :func:`tradeoff_panels` (several): adaptation (a
  new-domain metric) against retention (an old-domain metric), one point per method.
- :func:`compare_methods`: one panel per metric, one row per method, ours with its CI and the
  paper's value on the same axis.
- :func:`loss_vs_time`: validation loss against wall time, one curve per method, optional
  target level.
- :func:`threshold_sweep`: image change against the KSE threshold for KSE-selected maps, with
  the band of randomly selected maps, and the fraction of parameters dropped beside the
  paper's.

Every function returns a :class:`matplotlib.figure.Figure` (no pyplot, no global backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from tgd.repro.report.images import DPI

OURS, PAPER = "tab:blue", "tab:red"


def _ci(value: float, ci) -> tuple[float, float] | None:
    """(below, above) error-bar lengths of ``ci`` around ``value``; None when there is no CI."""
    if ci is None:
        return None
    lo, hi = (float(v) for v in ci)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    if lo > hi:
        raise ValueError(f"confidence interval must be (lo, hi) with lo <= hi, got {ci!r}")
    return max(value - lo, 0.0), max(hi - value, 0.0)


def _finite(name: str, v) -> float:
    if v is None:
        raise ValueError(f"{name} is missing")
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"{name} is not finite ({v})")
    return v


def tradeoff_scatter(points: Sequence[Mapping], *, x_label: str, y_label: str,
                     x_better: str = "higher", y_better: str = "lower",
                     title: str | None = None) -> Figure:
    """One point per method: ``{"name", "x", "x_ci", "y", "y_ci"}`` (CIs optional), with
    error bars in both directions; the title names the corner that is better on both."""
    return tradeoff_panels([{"points": points, "x_label": x_label, "y_label": y_label,
                             "x_better": x_better, "y_better": y_better, "title": title}])


def tradeoff_panels(panels: Sequence[Mapping]) -> Figure:
    """Several :func:`tradeoff_scatter` panels side by side; each panel is a dict of that
    function's arguments (``points``, ``x_label``, ``y_label``, optional ``x_better``,
    ``y_better``, ``title``)."""
    if not panels:
        raise ValueError("panels is empty")
    fig = Figure(figsize=(5.4 * len(panels), 4.6), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, p in zip(axes, panels, strict=True):
        _tradeoff(ax, p["points"], p["x_label"], p["y_label"], p.get("x_better", "higher"),
                  p.get("y_better", "lower"), p.get("title"))
    handles, labels = [], []
    for ax in axes:  # one legend: a method keeps its colour when it is in the same place
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5),
               fontsize=9)
    return fig


def _tradeoff(ax, points, x_label, y_label, x_better, y_better, title) -> None:
    if not points:
        raise ValueError("points is empty")
    for b in (x_better, y_better):
        if b not in ("higher", "lower"):
            raise ValueError(f"better must be 'higher' or 'lower', got {b!r}")
    for i, p in enumerate(points):
        col = f"C{i % 10}"
        x, y = _finite(f"{p['name']} x", p["x"]), _finite(f"{p['name']} y", p["y"])
        xe, ye = _ci(x, p.get("x_ci")), _ci(y, p.get("y_ci"))
        ax.errorbar(x, y, xerr=None if xe is None else [[xe[0]], [xe[1]]],
                    yerr=None if ye is None else [[ye[0]], [ye[1]]], fmt="o", ms=7,
                    color=col, capsize=3, lw=1.2, label=p["name"])
    ax.set_xlabel(x_label + f"\n({x_better} is better)", fontsize=10)
    ax.set_ylabel(y_label + f" ({y_better} is better)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    corner = ("top" if y_better == "higher" else "bottom") + " " + (
        "right" if x_better == "higher" else "left")
    has_ci = any(p.get("x_ci") is not None or p.get("y_ci") is not None for p in points)
    ax.set_title((title + "\n" if title else "") + f"best: {corner}; " + (
        "error bars: 95 % CI over replicates" if has_ci else "one run, no replicate CIs"),
        fontsize=10)


def compare_methods(rows: Sequence[Mapping], metrics: Sequence[tuple[str, str]], *,
                    paper: Mapping[str, Mapping[str, float]] | None = None,
                    paper_label: str = "paper", title: str | None = None) -> Figure:
    """One panel per ``(key, label)`` in ``metrics``, one line per row ``{"name", key,
    key + "_ci"}``: our value with its CI and, where ``paper[name][key]`` exists, the paper's
    value on the same axis. A row without the key is left blank in that panel."""
    if not rows or not metrics:
        raise ValueError("compare_methods needs at least one row and one metric")
    names = [r["name"] for r in rows]
    fig = Figure(figsize=(3.4 * len(metrics) + 1.8, 0.36 * len(rows) + 1.5), dpi=DPI,
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics), sharey=True))
    y = np.arange(len(rows))[::-1]
    for ax, (key, label) in zip(axes, metrics, strict=True):
        shown_paper = False
        for yi, r in zip(y, rows, strict=True):
            v = r.get(key)
            if v is not None and np.isfinite(float(v)):
                e = _ci(float(v), r.get(key + "_ci"))
                ax.errorbar(float(v), yi, xerr=None if e is None else [[e[0]], [e[1]]],
                            fmt="o", color=OURS, capsize=3, ms=6,
                            label="this reproduction" if yi == y[0] else None)
            pv = (paper or {}).get(r["name"], {}).get(key)
            if pv is not None:
                ax.plot(pv, yi, "D", color=PAPER, ms=6, mfc="none", mew=1.6,
                        label=paper_label if not shown_paper else None)
                shown_paper = True
        ax.axvline(0, color="0.5", lw=0.7)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, len(rows) - 0.3)
    axes[0].set_yticks(y, names, fontsize=9)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if paper:  # the legend only tells ours from the paper's
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def loss_vs_time(curves: Mapping[str, Mapping], *, target: float | None = None,
                 target_tolerance: float = 0.02, target_label: str = "target",
                 log_y: bool = True, title: str | None = None) -> Figure:
    """Validation loss against wall time, one curve per method: ``{name: {"time_s": [...],
    "loss": [...], "loss_ci": [[lo...], [hi...]] (optional)}}``. ``target`` draws the level to
    reach with a band of ``target_tolerance`` (relative) above it."""
    if not curves:
        raise ValueError("curves is empty")
    fig = Figure(figsize=(8, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, (name, c) in enumerate(curves.items()):
        t, loss = np.asarray(c["time_s"], float), np.asarray(c["loss"], float)
        if t.shape != loss.shape or t.ndim != 1 or len(t) == 0:
            raise ValueError(f"curve {name!r}: time_s and loss must be equal-length 1-D lists")
        ax.plot(t, loss, "-", marker=".", color=f"C{i % 10}", lw=1.5, label=name)
        if c.get("loss_ci") is not None:
            lo, hi = (np.asarray(b, float) for b in c["loss_ci"])
            ax.fill_between(t, lo, hi, color=f"C{i % 10}", alpha=0.18, lw=0)
    if target is not None:
        ax.axhline(target, color="k", lw=1, ls="--", label=target_label)
        ax.axhspan(target, target * (1 + target_tolerance), color="k", alpha=0.08, lw=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def threshold_sweep(phi: Sequence[float], change: Sequence[float], *,
                    change_ci: Sequence | None = None,
                    random_change: Sequence[float] | None = None,
                    random_band: tuple[Sequence[float], Sequence[float]] | None = None,
                    fraction_dropped: Sequence[float] | None = None,
                    paper_fraction: Mapping[float, float] | None = None,
                    change_label: str = "image change vs the original net, NRMSE (%)",
                    title: str | None = None) -> Figure:
    """Left: image change against the threshold when the KSE-selected maps are dropped (CI
    bars from ``change_ci``, one (lo, hi) per threshold), beside dropping as many random maps
    (mean ``random_change``, band ``random_band`` = (lo list, hi list)). Right (when
    ``fraction_dropped`` is given, in %): the share of parameters dropped, with the paper's
    (``{phi: %}``)."""
    phi = np.asarray(phi, float)
    change = np.asarray(change, float)
    if phi.ndim != 1 or len(phi) == 0 or change.shape != phi.shape:
        raise ValueError(f"phi and change must be equal-length 1-D lists, got {phi.shape} and "
                         f"{change.shape}")
    two = fraction_dropped is not None
    fig = Figure(figsize=(10 if two else 5.5, 3.8), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 2 if two else 1))
    ax = axes[0]
    yerr = None
    if change_ci is not None:
        errs = [_ci(v, ci) or (0.0, 0.0) for v, ci in zip(change, change_ci, strict=True)]
        yerr = np.array(errs).T
    ax.errorbar(phi, change, yerr=yerr, fmt="o-", color=OURS, capsize=3,
                label="lowest-KSE maps dropped")
    if random_band is not None:
        lo, hi = (np.asarray(b, float) for b in random_band)
        ax.fill_between(phi, lo, hi, color="0.5", alpha=0.25, lw=0,
                        label="as many random maps (range)")
    if random_change is not None:
        ax.plot(phi, np.asarray(random_change, float), "s--", color="0.35", ms=4,
                label="as many random maps (mean)")
    ax.set_xlabel("KSE threshold phi")
    ax.set_ylabel(change_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if two:
        fr = np.asarray(fraction_dropped, float)
        if fr.shape != phi.shape:
            raise ValueError("fraction_dropped must have one value per threshold")
        axes[1].plot(phi, fr, "o-", color=OURS, label="this reproduction")
        if paper_fraction:
            ks = sorted(paper_fraction)
            axes[1].plot(ks, [paper_fraction[k] for k in ks], "D", color=PAPER, mfc="none",
                         mew=1.6, label="paper")
        axes[1].set_xlabel("KSE threshold phi")
        axes[1].set_ylabel("parameters dropped (%)")
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
