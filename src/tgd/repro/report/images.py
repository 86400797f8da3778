"""PET image panels a reader can judge: a methods x {slice, zoom, difference} grid and line
profiles, from plain 2-D numpy arrays (one slice per method, in the units the caller states,
SUV for the report).

Contract:
- ``images`` maps a method's name to its 2-D slice; ``reference`` is the slice every method
  is compared with (the 600-s image in the report), same shape.
- ``center`` is (row, column) in pixels of the structure to look at (a lesion, an unseen
  feature); ``box`` the side of the zoom square in pixels.
- One display window ``(vmin, vmax)`` for every image panel (default: see
  :func:`image_grid`) and one symmetric window for every difference panel; both are written in
  the figure's title and on a colour bar in every row.
- Panels are drawn at ``scale`` screen pixels per image pixel at least (nearest-neighbour, so
  pixels stay visible) when the figure is saved at :data:`DPI`.

The functions return a :class:`matplotlib.figure.Figure` (no pyplot, no global backend).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 100
IMAGE_CMAP = "gray_r"     # the usual PET reading display: hot is dark
DIFF_CMAP = "RdBu_r"      # red: above the reference, blue: below
COLORBAR = "colorbar"     # label of every colour-bar axes (tests and callers find them by it)


def _check_slices(images: Mapping[str, np.ndarray], reference: np.ndarray) -> np.ndarray:
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 2 or ref.size == 0:
        raise ValueError(f"reference must be a non-empty 2-D slice, got shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError("reference contains NaN or infinite values")
    if not images:
        raise ValueError("images is empty: give at least one method's slice")
    for name, img in images.items():
        a = np.asarray(img)
        if a.shape != ref.shape:
            raise ValueError(f"image {name!r} has shape {a.shape}, the reference {ref.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"image {name!r} contains NaN or infinite values")
    return ref


def _check_center(center, shape) -> tuple[int, int]:
    if len(center) != 2:
        raise ValueError(f"center must be (row, column), got {center!r}")
    r, c = (int(round(float(v))) for v in center)
    if not (0 <= r < shape[0] and 0 <= c < shape[1]):
        raise ValueError(f"center {center!r} is outside the slice of shape {shape}")
    return r, c


def body_crop(reference: np.ndarray, margin: int = 2,
              level: float = 0.2) -> tuple[slice, slice]:
    """Bounding box of the body, widened by ``margin``: the pixels above ``level`` x the median
    of the pixels above 0.1 % of the maximum (soft tissue, so that a very hot bladder does not
    set it); the whole slice when nothing is above it."""
    ref = np.asarray(reference)
    top = float(ref.max())
    ys, xs = ((), ())
    if top > 0:
        typical = float(np.median(ref[ref > 1e-3 * top]))
        ys, xs = np.nonzero(ref > level * typical)
    if len(ys) == 0:
        return slice(0, ref.shape[0]), slice(0, ref.shape[1])
    return (slice(max(int(ys.min()) - margin, 0), int(ys.max()) + margin + 1),
            slice(max(int(xs.min()) - margin, 0), int(xs.max()) + margin + 1))


def zoom_box(center: tuple[int, int], box: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The ``box`` x ``box`` square around ``center``, shifted to stay inside ``shape``."""
    if box < 2:
        raise ValueError(f"box must be at least 2 pixels, got {box}")
    out = []
    for c, n in zip(center, shape, strict=True):
        b = min(box, n)
        lo = min(max(c - b // 2, 0), n - b)
        out.append(slice(lo, lo + b))
    return out[0], out[1]


def default_window(reference: np.ndarray) -> tuple[float, float]:
    """0 to the reference's 99.5th percentile (a few hot voxels saturate, as on a reading
    station)."""
    top = float(np.percentile(reference, 99.5))
    return 0.0, top if top > 0 else 1.0


def image_grid(images: Mapping[str, np.ndarray], reference: np.ndarray, *,
               center: tuple[int, int] | None = None, box: int = 16,
               window: tuple[float, float] | None = None, diff_window: float | None = None,
               unit: str = "SUV", reference_name: str = "600 s", title: str | None = None,
               scale: int = 3, crop: bool = True) -> Figure:
    """One row per method (the reference first): the slice (cropped to the body), a zoom on
    ``center`` (when given; its square is outlined on the slice) and the difference
    method - reference, each row with a colour bar for the images and one for the
    difference. Default window: 0 to the larger of the reference's 99.5th percentile and its
    maximum inside the zoom (the structure looked at is never saturated); default difference
    window: the median over methods of the 99.5th percentile of |method - reference| (a method
    far off saturates)."""
    ref = _check_slices(images, reference)
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    cy, cx = body_crop(ref) if crop else (slice(0, ref.shape[0]), slice(0, ref.shape[1]))
    zoom = None
    if center is not None:
        zoom = zoom_box(_check_center(center, ref.shape), box, ref.shape)
        # the zoom square is always inside the slice shown
        cy = slice(max(min(cy.start, zoom[0].start - 1), 0),
                   min(max(cy.stop, zoom[0].stop + 1), ref.shape[0]))
        cx = slice(max(min(cx.start, zoom[1].start - 1), 0),
                   min(max(cx.stop, zoom[1].stop + 1), ref.shape[1]))
    if window is None:  # the zoomed structure itself is never saturated
        window = default_window(ref)
        if zoom:
            window = (window[0], max(window[1], float(ref[zoom].max())))
    vmin, vmax = window
    if not vmax > vmin:
        raise ValueError(f"window must have vmax > vmin, got {(vmin, vmax)}")
    diffs = {n: np.asarray(v, float) - ref for n, v in images.items()}
    if diff_window is None:
        # the typical method sets it: one diverged method saturates instead of washing out
        # every other difference
        spread = float(np.median([np.percentile(np.abs(d), 99.5) for d in diffs.values()]))
        diff_window = spread if spread > 0 else 0.1 * (vmax - vmin)

    h, w = cy.stop - cy.start, cx.stop - cx.start
    ph = max(scale * h / DPI, 2.2)        # panel height, inches: >= `scale` px per pixel
    pw = ph * w / h
    # columns (inches): label | slice | zoom | bar + ticks | difference | bar + ticks
    left, gap, bar, bar_room, top, row_gap, bottom = 0.45, 0.12, 0.14, 0.85, 0.85, 0.22, 0.15
    x_slice = left
    x_zoom = x_slice + pw + gap
    x_bar = (x_zoom + ph if zoom else x_slice + pw) + gap
    x_diff = x_bar + bar + bar_room
    x_dbar = x_diff + pw + gap
    width = x_dbar + bar + bar_room
    rows = [(reference_name, ref, None)] + [(n, np.asarray(v, float), diffs[n])
                                            for n, v in images.items()]
    height = top + len(rows) * (ph + row_gap) + bottom
    fig = Figure(figsize=(width, height), dpi=DPI)

    def axes(x, y, wi, label=""):
        return fig.add_axes((x / width, 1 - (y + ph) / height, wi / width, ph / height),
                            label=label)

    kw = {"interpolation": "nearest", "origin": "upper", "aspect": "equal"}
    for i, (name, img, diff) in enumerate(rows):
        y = top + i * (ph + row_gap)
        ax = axes(x_slice, y, pw)
        shown = ax.imshow(img[cy, cx], cmap=IMAGE_CMAP, vmin=vmin, vmax=vmax, **kw)
        ax.set_ylabel(name, fontsize=10, fontweight="bold")
        if zoom:
            zy, zx = zoom
            ax.add_patch(Rectangle((zx.start - cx.start - 0.5, zy.start - cy.start - 0.5),
                                   zx.stop - zx.start, zy.stop - zy.start, fill=False,
                                   edgecolor="tab:orange", lw=1.4))
        _bare(ax, "slice" if i == 0 else None)
        if zoom:
            ax = axes(x_zoom, y, ph)
            ax.imshow(img[zoom], cmap=IMAGE_CMAP, vmin=vmin, vmax=vmax, **kw)
            _bare(ax, f"zoom ({zoom[0].stop - zoom[0].start} px square)" if i == 0 else None)
        cb = fig.colorbar(shown, cax=axes(x_bar, y, bar, COLORBAR))
        cb.ax.tick_params(labelsize=8)
        cb.set_label(unit, fontsize=8)
        ax = axes(x_diff, y, pw)
        d = diff[cy, cx] if diff is not None else np.zeros((h, w))
        dm = ax.imshow(d, cmap=DIFF_CMAP, vmin=-diff_window, vmax=diff_window, **kw)
        if diff is None:
            ax.text(0.5, 0.5, "(reference)", ha="center", va="center", transform=ax.transAxes,
                    fontsize=9, color="0.4")
        _bare(ax, f"difference to {reference_name}" if i == 0 else None)
        cb = fig.colorbar(dm, cax=axes(x_dbar, y, bar, COLORBAR))
        cb.ax.tick_params(labelsize=8)
        cb.set_label(f"{unit} difference", fontsize=8)
    window_txt = (f"window {unit} {vmin:.3g} to {vmax:.3g} for every image; difference "
                  f"{-diff_window:.3g} to {diff_window:.3g}")
    fig.suptitle((title + "\n" if title else "") + window_txt, fontsize=10,
                 y=1 - 0.12 / height, va="top")
    return fig


def _bare(ax, column_title: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if column_title:
        ax.set_title(column_title, fontsize=9)


def line_profiles(images: Mapping[str, np.ndarray], reference: np.ndarray,
                  center: tuple[int, int], *, half_length: int | None = None,
                  pixel_mm: float | None = None, unit: str = "SUV",
                  reference_name: str = "600 s", title: str | None = None) -> Figure:
    """Horizontal and vertical profiles through ``center`` (``half_length`` pixels either
    side, default the whole slice) of every method, the reference drawn thick and black."""
    ref = _check_slices(images, reference)
    r, c = _check_center(center, ref.shape)
    fig = Figure(figsize=(11, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, horizontal in zip(axes, (True, False), strict=True):
        n = ref.shape[1] if horizontal else ref.shape[0]
        at = c if horizontal else r
        lo, hi = (0, n) if half_length is None else (max(at - half_length, 0),
                                                     min(at + half_length + 1, n))
        pos = (np.arange(lo, hi) - at) * (pixel_mm or 1.0)

        def cut(a, horizontal=horizontal, lo=lo, hi=hi):
            a = np.asarray(a, float)
            return a[r, lo:hi] if horizontal else a[lo:hi, c]

        for name, img in images.items():
            ax.plot(pos, cut(img), lw=1.3, label=name)
        ax.plot(pos, cut(ref), color="k", lw=2.6, label=reference_name, zorder=5)
        ax.axvline(0, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel(("horizontal" if horizontal else "vertical") + " distance from the "
                      "centre (" + ("mm" if pixel_mm else "pixels") + ")")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(unit)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle((title + ": " if title else "") + f"profiles through row {r}, column {c}",
                 fontsize=10)
    return fig
