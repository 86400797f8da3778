"""Every figure function of tgd.repro.report draws on a tiny input, and draws what it promises."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from tgd.repro.report import (
    compare_methods,
    image_grid,
    line_profiles,
    loss_vs_time,
    threshold_sweep,
    tradeoff_panels,
    tradeoff_scatter,
)
from tgd.repro.report.images import COLORBAR, DPI, body_crop, zoom_box


def _slices(n=3, size=20, seed=0):
    rng = np.random.default_rng(seed)
    ref = np.zeros((size, size))
    ref[4:16, 3:17] = 1.0          # body
    ref[9:12, 9:12] = 5.0          # lesion
    imgs = {f"m{i}": ref + rng.normal(0, 0.1, ref.shape) for i in range(n)}
    return imgs, ref


def _colorbars(fig):
    return [a for a in fig.axes if a.get_label() == COLORBAR]


def _image_axes(fig):
    return [a for a in fig.axes if a.get_label() != COLORBAR]


def test_image_grid_rows_columns_colorbars_and_scale():
    imgs, ref = _slices()
    fig = image_grid(imgs, ref, center=(10, 10), box=6, unit="SUV", title="t")
    assert isinstance(fig, Figure)
    rows = len(imgs) + 1  # the reference first
    assert len(_image_axes(fig)) == rows * 3  # slice, zoom, difference
    assert len(_colorbars(fig)) == rows * 2   # images and differences, in every row
    assert fig.axes[0].get_ylabel() == "600 s" and fig.axes[0].get_title() == "slice"
    # the window is stated, once, for every image
    assert "window SUV 0 to 5" in fig._suptitle.get_text()
    ims = [a.images[0] for a in _image_axes(fig)]
    image_clims = {im.get_clim() for im in ims if im.get_cmap().name == "gray_r"}
    assert image_clims == {(0.0, 5.0)}
    diff = [im for im in ims if im.get_cmap().name == "RdBu_r"]
    assert len(diff) == rows and len({im.get_clim() for im in diff}) == 1
    assert diff[0].get_clim()[0] == -diff[0].get_clim()[1]
    # the zoom shows the box around the centre; panels get >= 3 screen px per image pixel
    zoom = _image_axes(fig)[1].images[0].get_array()
    assert zoom.shape == (6, 6) and zoom.max() == 5.0
    crop_h = body_crop(ref)[0].stop - body_crop(ref)[0].start
    bbox = fig.axes[0].get_position()
    assert bbox.height * fig.get_figheight() * DPI >= 3 * crop_h


def test_image_grid_without_zoom_and_bad_input():
    imgs, ref = _slices(n=1)
    fig = image_grid(imgs, ref, window=(0, 2))
    assert len(_image_axes(fig)) == 2 * 2 and len(_colorbars(fig)) == 4
    with pytest.raises(ValueError, match="shape"):
        image_grid({"a": ref[:5]}, ref)
    with pytest.raises(ValueError, match="NaN"):
        image_grid({"a": np.full_like(ref, np.nan)}, ref)
    with pytest.raises(ValueError, match="outside"):
        image_grid(imgs, ref, center=(50, 3))
    with pytest.raises(ValueError, match="empty"):
        image_grid({}, ref)
    with pytest.raises(ValueError, match="vmax > vmin"):
        image_grid(imgs, ref, window=(2, 1))


def test_zoom_box_stays_inside_and_body_crop():
    assert zoom_box((0, 19), 6, (20, 20)) == (slice(0, 6), slice(14, 20))
    _, ref = _slices()
    cy, cx = body_crop(ref, margin=0)
    assert (cy.start, cy.stop, cx.start, cx.stop) == (4, 16, 3, 17)
    # a very hot spot (bladder) does not shrink the crop to itself
    hot = ref.copy()
    hot[10, 10] = 500
    assert body_crop(hot, margin=0) == (cy, cx)


def test_line_profiles_one_line_per_method_and_reference():
    imgs, ref = _slices()
    fig = line_profiles(imgs, ref, (10, 10), half_length=5, pixel_mm=4.0)
    axes = fig.axes
    assert len(axes) == 2
    for ax in axes:
        lines = [ln for ln in ax.get_lines() if ln.get_label() in (*imgs, "600 s")]
        assert len(lines) == len(imgs) + 1
        x = lines[-1].get_xdata()
        assert len(x) == 11 and x[0] == -20 and x[-1] == 20  # mm
        assert max(lines[-1].get_ydata()) == 5.0  # through the lesion
    assert "mm" in axes[0].get_xlabel()


def test_tradeoff_scatter_error_bars_and_panels():
    pts = [{"name": "FT", "x": 31.0, "x_ci": [30.5, 31.4], "y": 11.0, "y_ci": [10.0, 12.5]},
           {"name": "TGD", "x": 31.2, "x_ci": None, "y": 8.0, "y_ci": [7.5, 8.4]}]
    fig = tradeoff_scatter(pts, x_label="PSNR", y_label="CoV")
    ax = fig.axes[0]
    assert len(ax.containers) == 2  # one error bar per method
    segs = ax.containers[0].lines[2]  # FT: x and y bars
    assert len(segs) == 2
    assert "95 % CI" in ax.get_title() and "bottom right" in ax.get_title()
    fig2 = tradeoff_panels([{"points": pts, "x_label": "a", "y_label": "b"},
                            {"points": pts, "x_label": "a", "y_label": "c",
                             "y_better": "higher"}])
    assert len(fig2.axes) == 2 and len(fig2.legends) == 1
    with pytest.raises(ValueError, match="not finite"):
        tradeoff_scatter([{"name": "x", "x": float("nan"), "y": 1}], x_label="", y_label="")
    with pytest.raises(ValueError, match="lo <= hi"):
        tradeoff_scatter([{"name": "x", "x": 1, "x_ci": [2, 0], "y": 1}], x_label="",
                         y_label="")


def test_compare_methods_ours_with_ci_beside_the_paper_on_one_axis():
    rows = [{"name": "v1-net", "bias": -30.0, "bias_ci": [-33.0, -27.0], "cov": 3.6},
            {"name": "TGD-net", "bias": -17.0, "cov": 3.3, "cov_ci": [3.0, 3.5]},
            {"name": "EWC-net", "bias": -5.0}]
    paper = {"v1-net": {"bias": -6.3, "cov": 6.02}, "TGD-net": {"bias": -3.77}}
    fig = compare_methods(rows, [("bias", "bias %"), ("cov", "CoV %")], paper=paper)
    assert len(fig.axes) == 2
    bias_ax, cov_ax = fig.axes
    assert len(bias_ax.containers) == 3 and len(cov_ax.containers) == 2  # EWC has no CoV
    paper_pts = [ln for ln in bias_ax.get_lines() if ln.get_marker() == "D"]
    assert sorted(float(ln.get_xdata()[0]) for ln in paper_pts) == [-6.3, -3.77]
    assert [t.get_text() for t in bias_ax.get_yticklabels()] == ["v1-net", "TGD-net",
                                                                 "EWC-net"]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "paper" in labels and "this reproduction" in labels


def test_loss_vs_time_curves_band_and_target():
    curves = {"TGD": {"time_s": [0, 1, 2], "loss": [1.0, 0.5, 0.3],
                      "loss_ci": [[0.9, 0.4, 0.25], [1.1, 0.6, 0.35]]},
              "FT": {"time_s": [0, 1.5, 3], "loss": [1.0, 0.6, 0.4]}}
    fig = loss_vs_time(curves, target=0.35)
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels[:2] == ["TGD", "FT"] and "target" in labels
    assert len(ax.collections) == 1 and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="equal-length"):
        loss_vs_time({"a": {"time_s": [0, 1], "loss": [1.0]}})


def test_threshold_sweep_kse_against_random_band_and_paper():
    phi = [0.0, 0.3, 0.5]
    fig = threshold_sweep(phi, [0.0, 3.1, 6.0], change_ci=[(0, 0), (2.5, 3.6), (5, 7)],
                          random_change=[0.0, 8.0, 12.0],
                          random_band=([0.0, 5.5, 9.0], [0.0, 12.8, 20.0]),
                          fraction_dropped=[0, 28, 45], paper_fraction={0.3: 51.4, 0.5: 53.0})
    left, right = fig.axes
    assert len(left.collections) >= 1  # the random band
    assert sorted(t.get_text() for t in left.get_legend().get_texts()) == [
        "as many random maps (mean)", "as many random maps (range)", "lowest-KSE maps dropped"]
    paper = [ln for ln in right.get_lines() if ln.get_label() == "paper"]
    assert list(paper[0].get_ydata()) == [51.4, 53.0]
    only = threshold_sweep(phi, [0.0, 3.1, 6.0])
    assert len(only.axes) == 1
    with pytest.raises(ValueError, match="equal-length"):
        threshold_sweep(phi, [1.0])
