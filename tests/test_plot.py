"""adamnb.plot: what a reader relies on when looking at a figure.

Distinct styles per series, log step axes from step 1, diverged runs named, equal aspect, colour
bars with level values, exits marked on the frame, contour grids fine enough for the function,
and figures that save (with ``fig.savefig``, the documented way) to a non-blank image.
"""

import io
import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

import adamnb
from adamnb import plot
from adamnb.problems.functions import get

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Okabe & Ito (2008), "Color Universal Design (CUD): how to make figures and presentations that
# are friendly to colorblind people", the published 0-255 RGB values (yellow, 240/228/66, is the
# one left out of the palette, for white backgrounds).
OKABE_ITO_RGB = {"blue": (0, 114, 178), "vermillion": (213, 94, 0), "bluish green": (0, 158, 115),
                 "reddish purple": (204, 121, 167), "orange": (230, 159, 0),
                 "sky blue": (86, 180, 233), "black": (0, 0, 0)}


def png_pixels(figure):
    """Render ``figure`` the documented way (``figure.savefig``) and return its pixels."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=50)
    data = buffer.getvalue()
    assert data[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L"))


def assert_not_blank(figure):
    pixels = png_pixels(figure)
    # A blank figure is one colour; a drawn one has ink (dark pixels) in more than a sliver.
    assert pixels.std() > 10
    assert (pixels < 128).mean() > 0.005


@pytest.fixture(scope="module")
def booth_runs():
    tf = get("booth")
    return tf, {lr: adamnb.minimize(tf.fun, tf.x0, method="adam", jac=tf.grad,
                                    options={"lr": lr, "maxiter": 300, "return_all": True})
                for lr in (0.1, 0.5)}


# --- the palette ----------------------------------------------------------------------------------

def test_palette_is_okabe_ito_without_yellow():
    expected = {tuple(v / 255 for v in rgb) for rgb in OKABE_ITO_RGB.values()}
    assert {tuple(round(c, 6) for c in to_rgb(color)) for color in plot.PALETTE} == {
        tuple(round(c, 6) for c in rgb) for rgb in expected}
    assert len(plot.PALETTE) == 7


@pytest.mark.parametrize("count", [12, 14, 28])
def test_series_styles_never_repeat_a_colour_and_line_style_pair(count):
    styles = plot.series_styles([f"run {i}" for i in range(count)])
    pairs = [(to_rgb(s["color"]), s["linestyle"]) for s in styles.values()]
    assert len(set(pairs)) == count
    # Neighbours also differ in marker shape.
    markers = [s["marker"] for s in styles.values()]
    assert all(a != b for a, b in zip(markers, markers[1:]))


def test_series_style_rejects_bad_indices():
    with pytest.raises(TypeError, match="integer"):
        plot.series_style(1.5)
    with pytest.raises(ValueError, match=">= 0"):
        plot.series_style(-1)


def test_convergence_default_lines_are_distinct_for_14_runs():
    runs = {f"m{i}": np.geomspace(10.0, 1e-3 * (i + 1), 50) for i in range(14)}
    figure = plot.plot_convergence(runs, fmin=0.0)
    lines = [line for line in figure.axes[0].get_lines() if line.get_label().startswith("m")]
    assert len(lines) == 14
    pairs = {(to_rgb(line.get_color()), line.get_linestyle()) for line in lines}
    assert len(pairs) == 14


# --- convergence plots ----------------------------------------------------------------------------

def test_plot_convergence_draws_steps_from_1_on_log_axes(booth_runs):
    tf, runs = booth_runs
    figure = plot.plot_convergence(runs, fmin=tf.fmin, target=1e-6)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "step" and "f*" in ax.get_ylabel()
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["0.1", "0.5"]
    first = ax.get_lines()[0]
    history = np.asarray(runs[0.1].fun_history)
    np.testing.assert_array_equal(first.get_xdata(), np.arange(1, history.size))
    np.testing.assert_allclose(first.get_ydata(),
                               np.maximum(history[1:] - tf.fmin, plot.DEFAULT_FLOOR))
    # No linear stretch: the axis starts at step 1 or just below, not at 0.
    assert 0.5 <= ax.get_xlim()[0] <= 1.0
    # Plain arrays of f values work too; log_steps=False keeps the start at step 0.
    ax = plot.plot_convergence({"mine": [4.0, 1.0, 0.25]}, fmin=0.0).axes[0]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [1.0, 0.25])
    ax = plot.plot_convergence({"mine": [4.0, 1.0, 0.25]}, fmin=0.0, log_steps=False).axes[0]
    assert ax.get_xscale() == "linear"
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [4.0, 1.0, 0.25])


def notes(ax):
    return [text.get_text() for text in ax.texts]


def test_a_diverged_run_is_marked_and_named():
    runs = {"calm": [100.0, 10.0, 1.0, 0.1], "wild": [100.0, 1e4, 1e30, 9.6e108]}
    ax = plot.plot_convergence(runs, fmin=0.0).axes[0]
    ceiling = 1e3 * 100.0
    assert ax.get_ylim()[1] == pytest.approx(ceiling)  # not stretched to 1e108
    (note,) = notes(ax)
    assert "wild" in note and "diverged" in note and "9.6e+108" in note
    # The triangle on the top edge, at the first step above the ceiling (step 2), in its colour.
    wild = next(line for line in ax.get_lines() if line.get_label() == "wild")
    (marker,) = [line for line in ax.get_lines() if line.get_marker() == "^"
                 and line.get_label().startswith("_")]
    assert marker.get_xdata()[0] == 2 and marker.get_ydata()[0] == 1.0
    assert to_rgb(marker.get_color()) == to_rgb(wild.get_color())


def test_non_finite_and_returning_runs_are_named_too():
    ax = plot.plot_convergence({"nan": [1.0, 0.5, np.nan]}, fmin=0.0).axes[0]
    (note,) = notes(ax)
    assert "nan" in note and "diverged" in note and "step 2" in note
    ax = plot.plot_convergence({"back": [1.0, 1e6, 1e5, 0.1, 0.01]}, fmin=0.0).axes[0]
    (note,) = notes(ax)
    assert "back" in note and "above the panel from step 1 to 3" in note and "1.0e+06" in note
    ax = plot.plot_convergence({"calm": [1.0, 0.5, 0.1]}, fmin=0.0).axes[0]
    assert notes(ax) == []


def test_given_styles_with_markers_mark_a_few_steps_not_every_one():
    styles = plot.series_styles(["a", "b"])
    history = np.geomspace(10.0, 1e-6, 3000)
    ax = plot.plot_convergence({"a": history, "b": history / 2}, fmin=0.0, styles=styles).axes[0]
    for line in ax.get_lines()[:2]:
        marked = line.get_markevery()
        assert line.get_marker() in plot.MARKERS and 3 <= len(marked) <= 12
        # Evenly spaced on the log step axis: successive marked steps grow by a steady factor.
        steps = np.asarray(line.get_xdata())[marked]
        ratios = steps[2:] / steps[1:-1]
        assert ratios.max() / ratios.min() < 1.5


def test_plot_convergence_into_given_axes_returns_their_figure():
    figure = Figure()
    ax = figure.add_subplot()
    assert plot.plot_convergence({"a": [3.0, 2.0, 1.0]}, fmin=0.0, ax=ax) is figure


# --- contours and trajectories --------------------------------------------------------------------

def colorbars(figure):
    return [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]


def test_plot_trajectories_panels_colour_bar_and_saving(booth_runs, tmp_path):
    tf, runs = booth_runs
    figure = plot.plot_trajectories(tf.fun, runs, minimizers=tf.minimizers, fmin=tf.fmin,
                                    resolution=40)
    assert isinstance(figure, Figure)
    panels = [ax for ax in figure.axes if ax.axison and ax.get_label() != "<colorbar>"]
    assert len(panels) == 2
    for ax, run in zip(panels, runs.values()):
        assert ax.get_aspect() == 1.0  # "equal"
        width, height = np.ptp(ax.get_xlim()), np.ptp(ax.get_ylim())
        assert width == pytest.approx(height)  # the square window fills a square panel
        path = np.array(run.allvecs)
        drawn = [line for line in ax.get_lines() if len(line.get_xdata()) == len(path)]
        assert drawn, "the path is not drawn"
        np.testing.assert_allclose(drawn[0].get_xdata(), path[:, 0])
    (bar,) = colorbars(figure)
    labels = [tick.get_text() for tick in bar.get_yticklabels()]
    assert len(labels) >= 2 and all(labels), labels  # the level values are written
    assert "f - f*" in bar.get_ylabel()
    # Paths do not share the contours' hues: the contours are grey.
    assert all(np.ptp(to_rgb(plot.CONTOUR_CMAP(v))) < 1e-9 for v in (0.0, 0.5, 1.0))
    assert_not_blank(figure)
    target = plot.save_figure(figure, tmp_path / "sub" / "booth.png", palette=True)
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert not [p.name for p in target.parent.iterdir() if p.name.startswith(".")]


def test_plot_contour_has_equal_aspect_and_a_colour_bar():
    tf = get("rosenbrock")
    figure = plot.plot_contour(tf.fun, (-2, 2), (-1, 3), fmin=tf.fmin, resolution=60)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_aspect() == 1.0
    (bar,) = colorbars(figure)
    labels = [tick.get_text() for tick in bar.get_yticklabels()]
    assert labels and all(labels)
    assert_not_blank(figure)


def test_every_plotting_function_returns_a_figure_that_saves_non_blank(booth_runs):
    tf, runs = booth_runs
    run = runs[0.1]
    assert_not_blank(plot.plot_convergence(runs, fmin=tf.fmin))
    assert_not_blank(plot.plot_trajectories(tf.fun, runs, resolution=30))
    figure = plot.plot_contour(tf.fun, (-1, 4), (-1, 4), resolution=30)
    assert plot.plot_trajectory(run, figure.axes[0], minimizers=tf.minimizers) is figure
    assert_not_blank(figure)
    figure, axes = plot.panel_grid(3)
    assert isinstance(figure, Figure) and len(axes) == 3


def test_trajectory_panels_legend_and_titles_fit_the_figure_without_overlapping(booth_runs):
    """plot_trajectories lays out its panels itself: every text inside the figure, no two panels'
    boxes (titles and numbers included) overlapping, for one untitled panel (a bare result, whose
    one-row legend is wider than the figure), a row of three, and two rows with a left-over cell."""
    tf, runs = booth_runs
    run = runs[0.1]
    figures = [plot.plot_trajectories(tf.fun, run, resolution=30),
               plot.plot_trajectories(tf.fun, {"a": run, "b": runs[0.5], "c": run},
                                      resolution=30, colorbar=False, suptitle="a title"),
               plot.plot_trajectories(tf.fun, {f"run {k}": run for k in range(5)}, ncols=3,
                                      minimizers=tf.minimizers, resolution=30)]
    for figure in figures:
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        renderer = canvas.get_renderer()
        inside = figure.bbox.padded(1.0)
        panels = [ax for ax in figure.axes if ax.axison and ax.get_label() != "<colorbar>"]
        texts = [*figure.legends, *colorbars(figure)] + \
            ([figure._suptitle] if figure._suptitle is not None else [])
        boxes = [ax.get_tightbbox(renderer) for ax in panels]
        for box in boxes + [artist.get_tightbbox(renderer) for artist in texts]:
            assert np.isfinite(box.bounds).all()
            assert inside.containsx(box.x0) and inside.containsx(box.x1), (box, figure.bbox)
            assert inside.containsy(box.y0) and inside.containsy(box.y1), (box, figure.bbox)
        for i, first in enumerate(boxes):
            for second in boxes[i + 1:]:
                assert not first.shrunk(0.99, 0.99).overlaps(second.shrunk(0.99, 0.99))
        for legend in figure.legends:
            assert not any(legend.get_window_extent(renderer).overlaps(box) for box in boxes)


def exit_marks(ax):
    """The arrowheads on the frame: ``[(x, y, direction in degrees)]``."""
    return [(line.get_xdata()[0], line.get_ydata()[0], line.get_marker()[2] + 90.0)
            for line in ax.get_lines() if isinstance(line.get_marker(), tuple)]


def test_paths_leaving_the_frame_are_marked_on_its_edge():
    # Geometry: from (0, 0) towards (3, 1) the segment crosses x = 1 at y = 1/3, heading
    # atan(1/3); then the path comes back in and leaves through the bottom, straight down, at
    # (0.5, -1).
    path = np.array([[0.0, 0.0], [3.0, 1.0], [0.5, 0.5], [0.5, -2.0]])
    figure = plot.plot_contour(get("booth").fun, (-1, 1), (-1, 1), resolution=20)
    ax = figure.axes[0]
    plot.plot_trajectory(path, ax, color="#0072B2")
    marks = exit_marks(ax)
    assert len(marks) == 2
    (x, y, heading), (x2, y2, heading2) = marks
    assert (x, y) == pytest.approx((1.0, 1 / 3))
    assert heading == pytest.approx(math.degrees(math.atan2(1.0, 3.0)))
    assert (x2, y2) == pytest.approx((0.5, -1.0)) and heading2 == pytest.approx(-90.0)
    arrows = [line for line in ax.get_lines() if isinstance(line.get_marker(), tuple)]
    assert all(not line.get_clip_on() for line in arrows)  # drawn whole, on the edge
    assert all(to_rgb(line.get_color()) == to_rgb("#0072B2") for line in arrows)


def test_exit_arrows_point_the_way_the_path_goes_on_screen_for_any_aspect():
    # A 4 x 4 inch axes showing x in [0, 10] and y in [0, 1]: a unit of y is 10 times as long
    # on screen as a unit of x, so the segment (+10, +1) heads up at 45 degrees on screen.
    figure = Figure(figsize=(4, 4))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 1)
    plot.plot_trajectory([[5.0, 0.5], [15.0, 1.5]], ax)
    ((x, y, heading),) = exit_marks(ax)
    assert (x, y) == pytest.approx((10.0, 1.0)) and heading == pytest.approx(45.0)


def test_a_path_inside_the_frame_has_no_exit_marks(booth_runs):
    tf, runs = booth_runs
    figure = plot.plot_trajectories(tf.fun, {"in": runs[0.1]}, resolution=30)
    assert exit_marks(figure.axes[0]) == []
    # Nor does a path on axes whose limits are not fixed (no frame to leave).
    ax = Figure().add_subplot()
    plot.plot_trajectory([[0.0, 0.0], [5.0, 5.0]], ax)
    assert exit_marks(ax) == []


def interpolation_error(fun, grid, column):
    """95th percentile of the relative error of the grid's column, linearly interpolated as the
    contour lines are, against ``fun`` itself at 40001 points of the same column."""
    X, Y, Z = grid
    x, ys = X[0, column], np.linspace(Y[0, 0], Y[-1, 0], 40001)
    truth = np.array([fun(np.array([x, y])) for y in ys])
    return np.percentile(np.abs(np.interp(ys, Y[:, column], Z[:, column]) - truth) / truth, 95)


def test_contour_grid_resolves_levi13s_oscillation():
    # Levi N.13's sin(3 pi y)**2 term has an extremum every 1/6 in y: a fixed 160-point grid
    # over [-10, 10] (one point per 0.126) misses its peaks and troughs by 10-20%, which broke
    # the contour lines into dashes.
    tf = get("levi13")
    fine = plot.contour_grid(tf.fun, (-10, 10), (-10, 10), resolution=160)
    coarse = plot.contour_grid(tf.fun, (-10, 10), (-10, 10), resolution=160, adaptive=False)
    assert coarse[2].shape == (160, 160)
    assert fine[2].shape[0] >= 6 * 120  # 6 points per extremum, 120 extrema along y
    for column in (40, 80):
        x = coarse[0][0, column]
        fine_column = int(np.argmin(np.abs(fine[0][0] - x)))
        assert interpolation_error(tf.fun, fine, fine_column) < 0.02
        assert interpolation_error(tf.fun, coarse, column) > 0.08


def test_contour_grid_keeps_the_asked_resolution_for_smooth_functions():
    tf = get("booth")
    X, Y, Z = plot.contour_grid(tf.fun, (-10, 10), (-5, 5), resolution=(50, 40))
    assert Z.shape == (40, 50)
    np.testing.assert_allclose(Z[7, 11], tf.fun(np.array([X[7, 11], Y[7, 11]])))
    with pytest.raises(ValueError, match="resolution"):
        plot.contour_grid(tf.fun, (0, 1), (0, 1), resolution=1)


# --- windows and errors ---------------------------------------------------------------------------

def test_plots_explain_a_result_without_histories():
    tf = get("booth")
    result = adamnb.minimize(tf.fun, tf.x0, jac=tf.grad, options={"maxiter": 5})
    with pytest.raises(ValueError, match="return_all"):
        plot.plot_convergence(result)
    with pytest.raises(ValueError, match="return_all"):
        plot.plot_trajectories(tf.fun, result)


def test_plots_name_an_empty_mapping_of_runs():
    # Before: plot_convergence drew an empty figure and plot_trajectories said "no finite point
    # to frame".
    with pytest.raises(ValueError, match="runs is empty"):
        plot.plot_convergence({})
    with pytest.raises(ValueError, match="runs is empty"):
        plot.plot_trajectories(get("booth").fun, {})


def test_trajectory_window_holds_paths_and_points_and_respects_the_domain():
    xlim, ylim = plot.trajectory_window([[[0.0, 0.0], [1.0, 2.0], [np.nan, 5.0]]],
                                        points=[[3.0, -1.0]], margin=0.0)
    assert xlim == pytest.approx((0.0, 3.0)) and ylim == pytest.approx((-1.0, 2.0))
    xlim, _ = plot.trajectory_window([[[0.0, 0.0], [1e9, 1.0]]], domain=(-5, 5), margin=0.0)
    assert xlim == pytest.approx((0.0, 5.0))
    xlim, ylim = plot.trajectory_window([[[0.0, 0.0], [4.0, 1.0]]], margin=0.0, square=True)
    assert xlim == pytest.approx((0.0, 4.0)) and ylim == pytest.approx((-1.5, 2.5))


def test_palette_saving_matches_savefig_and_leaves_the_figure_as_it_was(tmp_path):
    """save_figure(palette=True) quantizes the pixels savefig would write: the same image with
    the default savefig settings, a tight box and face colour when rcParams ask for them, any dpi
    savefig takes; and the figure keeps its canvas and dpi, a bad dpi included."""
    import matplotlib

    figure = Figure(figsize=(3, 2), dpi=80)
    figure.add_subplot().plot([0, 1, 4])
    canvas = figure.canvas

    def pixels(path):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    def savefig_quantized(dpi):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi)
        buffer.seek(0)
        with Image.open(buffer) as image:
            return np.asarray(image.convert("RGB").quantize(colors=256).convert("RGB"))

    for dpi in (None, "figure", 72):
        saved = plot.save_figure(figure, tmp_path / "a.png", dpi=dpi, palette=True)
        np.testing.assert_array_equal(pixels(saved), savefig_quantized(dpi))
    with matplotlib.rc_context({"savefig.facecolor": "red", "savefig.bbox": "tight"}):
        saved = plot.save_figure(figure, tmp_path / "b.png", dpi=50, palette=True)
        np.testing.assert_array_equal(pixels(saved), savefig_quantized(50))
        assert tuple(pixels(saved)[0, 0]) == (255, 0, 0)
    with pytest.raises(ValueError):
        plot.save_figure(figure, tmp_path / "c.png", dpi=-5, palette=True)
    assert figure.canvas is canvas and figure.dpi == 80
    assert not (tmp_path / "c.png").exists()
