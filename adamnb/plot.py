"""Convergence and trajectory plots, for the experiments and for your own runs.

Every function takes the results of :func:`adamnb.minimize` (or of ``scipy.optimize.minimize``)
run with ``options={"return_all": True}``, which adds ``allvecs`` (the iterates, ``x0`` first) and
``fun_history`` (f at each iterate), or plain arrays of the same:

>>> import adamnb, adamnb.plot
>>> from adamnb.problems.functions import get
>>> rosen = get("rosenbrock")
>>> runs = {lr: adamnb.minimize(rosen.fun, rosen.x0, method="adam", jac=rosen.grad,
...                             options={"lr": lr, "maxiter": 2000, "return_all": True})
...         for lr in (0.01, 0.1)}
>>> fig = adamnb.plot.plot_convergence(runs, fmin=rosen.fmin)
>>> fig = adamnb.plot.plot_trajectories(rosen.fun, runs, minimizers=rosen.minimizers)
>>> fig.savefig("rosenbrock.png")  # doctest: +SKIP

**Saving.** Every plotting function returns the :class:`matplotlib.figure.Figure` it drew on.
Save it with ``fig.savefig(path)``, or with :func:`save_figure` (atomic, optionally
palette-compressed). ``matplotlib.pyplot.savefig(path)`` does *not* work after these functions:
it saves pyplot's current figure, and the figures made here are not pyplot's (nothing here depends
on an interactive backend or on pyplot's global state, so the functions work the same on a
headless machine, in a script and in a notebook, which shows a returned Figure). Pass ``ax=`` to
draw into your own pyplot axes instead; the returned figure is then the one holding ``ax``.

**Reading the plots.** Values that span decades are drawn on log scales: ``f - f*`` against the
step (the step axis is logarithmic too, from step 1), and the contour levels of ``f - f*``
(log-spaced, so the floor of a narrow valley is as visible as its walls). Series take their
colours from Okabe & Ito's colour-blind-safe palette, then line styles and markers
(:func:`series_styles`), so a dozen series stay apart. A run that diverges is marked where it
leaves the panel and named with the size it reached; a path that leaves the frame of a
trajectory panel is marked with an arrowhead where it leaves. Contours are grey, under a colour
bar of their levels, so that the coloured paths stand out.
"""

import io
import math
from pathlib import Path

import numpy as np
from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory
from PIL import Image
from scipy.optimize import OptimizeResult

from adamnb._io import atomic_write

__all__ = ["plot_convergence", "contour_grid", "plot_contour", "plot_trajectory",
           "plot_trajectories", "trajectory_window", "panel_grid", "save_figure",
           "series_style", "series_styles", "PALETTE", "LINESTYLES", "MARKERS", "CONTOUR_CMAP",
           "DEFAULT_FLOOR"]

#: Gaps f - f* below this are drawn at it: a log axis cannot show 0, and double precision cannot
#: resolve f much below 1e-16 of its scale anyway.
DEFAULT_FLOOR = 1e-16

#: Okabe & Ito (2008), "Color Universal Design": seven colours that stay apart under the common
#: colour-vision deficiencies (blue, vermillion, bluish green, reddish purple, orange, sky blue,
#: black). Their eighth, yellow, is left out: it vanishes on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

#: Line styles, taken in turn once every colour has been used: 28 distinct (colour, style) pairs.
LINESTYLES = ("-", "--", "-.", ":")

#: Markers, 11 of them (prime to the 7 colours), so that neighbours in a list differ in shape too.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*")

#: The contours' colour map: white (the lowest level) to mid-grey, muted so that paths drawn in
#: :data:`PALETTE` colours stand out on it.
CONTOUR_CMAP = LinearSegmentedColormap.from_list("adamnb_greys", ["#ffffff", "#b4b4b4"])

_START_STYLE = dict(marker="o", markersize=7, markerfacecolor="white", markeredgecolor="black",
                    linestyle="none", zorder=6)
_END_STYLE = dict(marker="X", markersize=8, markerfacecolor="black", markeredgecolor="white",
                  markeredgewidth=0.8, linestyle="none", zorder=7)
_MINIMUM_STYLE = dict(marker="*", markersize=13, markerfacecolor="gold", markeredgecolor="black",
                      linestyle="none", zorder=5)
_EXIT_SIZE = 8


def series_style(index):
    """The line properties of series number ``index`` (0, 1, ...): colour, line style, marker.

    Colours go round :data:`PALETTE` first, then the next line style of :data:`LINESTYLES` is
    taken, so the first 28 series all have distinct (colour, line style) pairs; markers go round
    the 11 :data:`MARKERS`.

    Parameters
    ----------
    index : int
        Position of the series, from 0.

    Returns
    -------
    dict
        ``{"color": ..., "linestyle": ..., "marker": ...}``, keywords of
        :class:`matplotlib.lines.Line2D`.

    Raises
    ------
    TypeError
        If ``index`` is not an integer.
    ValueError
        If ``index`` is negative.
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"index must be an integer, got {type(index).__name__}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    colours = len(PALETTE)
    return {"color": PALETTE[index % colours],
            "linestyle": LINESTYLES[(index // colours) % len(LINESTYLES)],
            "marker": MARKERS[index % len(MARKERS)]}


def series_styles(labels):
    """``{label: series_style(position)}`` for labels in order; see :func:`series_style`.

    Use it to give several figures the same colour per method, e.g. ``styles=`` of
    :func:`plot_convergence` and ``colors=`` of :func:`plot_trajectories`.

    >>> styles = series_styles(["adam", "sgd"])
    >>> styles["adam"]
    {'color': '#0072B2', 'linestyle': '-', 'marker': 'o'}
    """
    return {label: series_style(position) for position, label in enumerate(labels)}


def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _per_run(runs, extract):
    """``{label: extract(run)}`` of a mapping of runs, or ``{None: extract(runs)}`` of a single
    run (an OptimizeResult is a dict too, but a single run); ValueError for no runs at all."""
    if isinstance(runs, dict) and not isinstance(runs, OptimizeResult):
        if not runs:
            raise ValueError("runs is empty: give at least one run ({label: run}, or one run)")
        return {label: extract(run) for label, run in runs.items()}
    return {None: extract(runs)}


def _recorded(run, name):
    """A result's per-step record ``name``, or the run itself when it is a plain array."""
    if isinstance(run, OptimizeResult):
        if name not in run:
            raise ValueError(f"this result has no {name}; run minimize with "
                             "options={'return_all': True}")
        return run[name]
    return run


def _fun_values(run):
    """f at every iterate of a run: its ``fun_history``, or the run itself as an array."""
    values = np.asarray(_recorded(run, "fun_history"), dtype=float)
    if values.ndim != 1:
        raise ValueError(f"expected a 1-D history of f values, got shape {values.shape}")
    return values


def _path(run):
    """The iterates of a run as a (k, 2) array: its ``allvecs``, or the run itself as an array."""
    points = np.asarray(_recorded(run, "allvecs"), dtype=float)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"a trajectory plot needs 2-D iterates, an array of shape (k, 2); "
                         f"got shape {points.shape}")
    return points


def _excursion(gap, ceiling):
    """``(step, note)`` for a gap history that first exceeds ``ceiling`` or stops being finite at
    ``step``, with a note of how far it went and whether it came back; None when it never does."""
    bad = ~np.isfinite(gap) | (gap > ceiling)
    if not bad.any():
        return None
    step = int(np.argmax(bad))
    finite = gap[np.isfinite(gap)]
    if not np.isfinite(gap).all():
        first = int(np.argmax(~np.isfinite(gap)))
        return step, f"diverged, f - f* = {gap[first]} at step {first}"
    if gap[-1] > ceiling:
        end = f"diverged, f - f* = {gap[-1]:.1e} at the end (step {gap.size - 1})"
        return step, end if gap[-1] == finite.max() else f"{end}, up to {finite.max():.1e}"
    back = step + int(np.argmax(~bad[step:]))
    return step, f"above the panel from step {step} to {back}, f - f* up to {finite.max():.1e}"


def plot_convergence(runs, fmin=None, ax=None, *, floor=DEFAULT_FLOOR, target=None, styles=None,
                     xlabel="step", ylabel=None, title=None, legend=True, log_steps=True,
                     ceiling=None):
    """Plot f - f* against the step, both on log scales, one line per run.

    The gap ``f(x_k) - f*`` of iterate ``k`` is drawn at step ``k``. With the default
    ``log_steps=True`` the step axis is logarithmic from step 1, so the first steps and the last
    thousands are both readable; the start ``x_0`` (step 0) has no place on it and is left out.

    A run that *diverges* (its gap ends above ``ceiling`` or stops being finite: NaN or inf), or
    only goes above ``ceiling`` for a while, would stretch the axis over a hundred decades or
    leave unseen: the y axis stops at ``ceiling``, an upward triangle in the run's colour marks
    on the top edge the step where it leaves the panel, and a note in the panel names the run,
    how far its gap went and whether it came back.

    Parameters
    ----------
    runs : mapping, OptimizeResult or array_like
        ``{label: run}``, or one run. A run is an OptimizeResult with ``fun_history`` (minimize with
        ``options={"return_all": True}``) or a 1-D array of f values, the start's first.
    fmin : float, optional
        The minimum f*; by default the lowest value any run reached (the axis then reads
        "f(x) - best f seen").
    ax : matplotlib Axes, optional
        Where to draw; by default a new Figure's axes.
    floor : float, default 1e-16
        Gaps below ``floor`` (including 0 and rounding below f*) are drawn at ``floor``.
    target : float, optional
        Draw a dotted horizontal line at this gap (e.g. the 1e-6 of a success criterion).
    styles : mapping, optional
        ``{label: dict of Line2D properties}`` (color, linestyle, ...) for some of the runs, such
        as :func:`series_styles` of all the labels to match other figures (a marker is drawn at a
        few evenly spaced steps unless ``markevery`` says otherwise); the others take
        :func:`series_style` of their position.
    xlabel, ylabel, title : str, optional
        Axis labels and title; ``ylabel`` defaults to "f(x) - f*".
    legend : bool, default True
        Add a legend when the runs have labels.
    log_steps : bool, default True
        Logarithmic step axis from step 1; False draws every iterate, step 0 included, on a
        linear axis.
    ceiling : float, optional
        Top of the y axis when a run goes above it (otherwise the axis fits the data); by
        default 1000 times the largest starting gap (at least 1000).

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes. Save it with ``fig.savefig(path)`` or
        :func:`save_figure`; ``pyplot.savefig`` would save another (blank) figure. The axes are
        ``fig.axes[0]`` for a new figure, or the ``ax`` you passed.

    Raises
    ------
    ValueError
        If ``runs`` is an empty mapping, a result has no ``fun_history`` or a history is not
        1-D.
    """
    histories = _per_run(runs, _fun_values)
    if fmin is None:
        finite = [h[np.isfinite(h)] for h in histories.values()]
        fmin = min((h.min() for h in finite if h.size), default=0.0)
        ylabel = ylabel or "f(x) - best f seen"
    ax = _new_axes(ax, (6.0, 4.0))
    styles = styles or {}
    gaps = {label: history - fmin for label, history in histories.items()}
    if ceiling is None:
        starts = [gap[0] for gap in gaps.values() if gap.size and np.isfinite(gap[0])]
        ceiling = 1e3 * max([1.0, *starts])
    first = 1 if log_steps else 0
    excursions = []
    for index, (label, gap) in enumerate(gaps.items()):
        steps = np.arange(gap.size)[first:]
        if label in styles:
            style = dict(styles[label])
            if style.get("marker") not in (None, "", "None", "none"):
                # A marker per step would bury the line: a few, evenly spaced, as by default.
                style.setdefault("markevery", _marker_positions(index, steps.size, log_steps))
                style.setdefault("markersize", 4)
        else:
            style = _convergence_style(index, steps.size, log_steps)
        (line,) = ax.plot(steps, np.maximum(gap[first:], floor),
                          label=None if label is None else str(label), **style)
        excursion = _excursion(gap, ceiling)
        if excursion is not None:
            excursions.append((label, line.get_color(), max(excursion[0], first), excursion[1]))
    if log_steps:
        ax.set_xscale("log")
    ax.set_yscale("log")
    if excursions:
        ax.set_ylim(top=ceiling)
        _mark_excursions(ax, excursions)
    if target is not None:
        ax.axhline(target, color="0.4", linestyle=":", linewidth=1.0, label=f"{target:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or "f(x) - f*")
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if legend and any(label is not None for label in histories):
        ax.legend(fontsize="small")
    return ax.figure


def _convergence_style(index, count, log_steps):
    style = series_style(index)
    style.update(markersize=4, linewidth=1.3, markevery=_marker_positions(index, count, log_steps))
    return style


def _marker_positions(index, count, log_steps, per_line=8):
    """Indices of the points that carry a marker: ``per_line`` of them, evenly spaced along the
    step axis (log or linear, as drawn) whatever the line does, and shifted a little per series
    so that lines on top of each other still show each one's shape."""
    if count < 2:
        return None
    shift = (index % 7) / (7 * per_line)
    if log_steps:
        positions = np.geomspace(1, count, per_line + 1) * count ** shift - 1
    else:
        positions = np.linspace(0, count - 1, per_line + 1) + shift * (count - 1)
    return sorted({int(p) for p in positions if 0 <= p < count})


def _mark_excursions(ax, excursions):
    """An upward triangle at the top edge where each run leaves, and a note naming each."""
    top_edge = blended_transform_factory(ax.transData, ax.transAxes)
    for row, (label, color, step, description) in enumerate(excursions):
        ax.plot([step], [1.0], transform=top_edge, marker="^", markersize=9, color=color,
                markeredgecolor="black", markeredgewidth=0.6, clip_on=False, zorder=8,
                linestyle="none")
        name = "run" if label is None else str(label)
        ax.text(0.02, 0.97 - 0.13 * row, f"\u25b2 {name}:\n{description}", transform=ax.transAxes,
                ha="left", va="top", fontsize="x-small", color=color, clip_on=True, zorder=9,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.0))


def _oscillations(values):
    """Number of local extrema along a 1-D sample, ignoring rounding-level wiggles."""
    values = values[np.isfinite(values)]
    if values.size < 3:
        return 0
    steps = np.diff(values)
    scale = values.max() - values.min()
    signs = np.sign(steps[np.abs(steps) > 1e-9 * scale])
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def _resolution_for(fun, xlim, ylim, base, max_resolution, samples_per_extremum=6, probes=5,
                    probe_points=2001):
    """Grid points per axis so that each oscillation of ``fun`` in the window gets
    ``samples_per_extremum`` points: a few fine probe lines count its extrema along each axis."""
    limits = (xlim, ylim)
    point = np.empty(2)
    wanted = []
    for axis in (0, 1):
        along = np.linspace(*limits[axis], probe_points)
        across = np.linspace(*limits[1 - axis], probes + 2)[1:-1]
        most = 0
        for fixed in across:
            values = np.empty(probe_points)
            point[1 - axis] = fixed
            for i, coordinate in enumerate(along):
                point[axis] = coordinate
                values[i] = fun(point)
            most = max(most, _oscillations(values))
        wanted.append(min(max(base[axis], samples_per_extremum * (most + 1)), max_resolution))
    return tuple(wanted)


def contour_grid(fun, xlim, ylim, resolution=200, *, adaptive=True, max_resolution=1200):
    """``fun`` on a regular grid over ``xlim`` x ``ylim``: the arrays ``(X, Y, Z)``.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float`` for a 1-D array ``x`` of two floats, as minimize's objective; it is
        called once per grid point (fast for numba-compiled functions: about 1 us a call).
    xlim, ylim : (float, float)
        The window.
    resolution : int or (int, int), default 200
        Grid points per axis (or per x and y axis): the least, when ``adaptive``.
    adaptive : bool, default True
        Raise the resolution for a function that oscillates faster than the grid resolves (Levi
        N.13, Rastrigin over a wide window): 10 probe lines of 2001 points count its local
        extrema along each axis, and each extremum gets 6 grid points, so contour lines stay
        unbroken.
    max_resolution : int, default 1200
        Upper bound of the adaptive resolution per axis.

    Returns
    -------
    X, Y, Z : ndarray, shape (ny, nx)
        Coordinates (as ``numpy.meshgrid``) and ``fun`` at each point.
    """
    base = (resolution, resolution) if np.ndim(resolution) == 0 else tuple(resolution)
    if len(base) != 2 or any(int(n) < 2 for n in base):
        raise ValueError(f"resolution must be an integer >= 2 or a pair of them, got {resolution}")
    base = tuple(int(n) for n in base)
    if adaptive:
        base = _resolution_for(fun, xlim, ylim, base, max(max_resolution, *base))
    xs = np.linspace(xlim[0], xlim[1], base[0])
    ys = np.linspace(ylim[0], ylim[1], base[1])
    X, Y = np.meshgrid(xs, ys)
    Z = np.empty_like(X)
    point = np.empty(2)
    for index in np.ndindex(X.shape):
        point[0], point[1] = X[index], Y[index]
        Z[index] = fun(point)
    return X, Y, Z


def _draw_contour(ax, grid, fmin, levels, cmap, filled):
    """Log-spaced contours of the gap on ``grid``; returns the set a colour bar reads."""
    X, Y, Z = grid
    finite = np.isfinite(Z)
    if not finite.any():
        raise ValueError("the function is not finite anywhere in the window")
    if fmin is None:
        fmin = Z[finite].min()
    gap = np.where(finite, Z - fmin, np.nan)
    positive = gap[gap > 0]
    high = positive.max() if positive.size else 1.0
    low = max(positive.min() if positive.size else high * 1e-8, high * 1e-8)
    if not high > low:
        high = low * 10.0
    # Clip rather than mask the gaps at or below the lowest level, so the valley floor closes.
    gap = np.clip(gap, low, None)
    bounds = np.geomspace(low, high, levels)
    norm = LogNorm(vmin=low, vmax=high)
    cmap = CONTOUR_CMAP if cmap is None else cmap
    if filled:
        shading = ax.contourf(X, Y, gap, levels=bounds, norm=norm, cmap=cmap, zorder=0)
        ax.contour(X, Y, gap, levels=bounds, colors="0.45", linewidths=0.4, zorder=1)
        contours = shading
    else:
        contours = ax.contour(X, Y, gap, levels=bounds, norm=norm, cmap=cmap, linewidths=0.7)
    ax.set_xlim(X.min(), X.max())
    ax.set_ylim(Y.min(), Y.max())
    return contours


def _colorbar(figure, contours, axes, label="f - f*", cax=None):
    """A colour bar of the contour levels, labelled at every power of ten in their range (at
    least its two ends); beside ``axes``, or in ``cax``."""
    if cax is None:
        bar = figure.colorbar(contours, ax=axes, label=label, shrink=0.9, pad=0.02, aspect=30)
    else:
        bar = figure.colorbar(contours, cax=cax, label=label)
    low, high = contours.levels[0], contours.levels[-1]
    ticks = 10.0 ** np.arange(math.ceil(math.log10(low)), math.floor(math.log10(high)) + 1)
    if ticks.size < 2:
        ticks = np.array([low, high])
    if ticks.size > 8:  # every other power of ten, so that the labels do not crowd
        ticks = ticks[ticks.size % 2::2] if ticks.size % 2 == 0 else ticks[::2]
    bar.set_ticks(ticks, labels=[_power_of_ten(t) for t in ticks])
    bar.minorticks_off()
    bar.ax.tick_params(labelsize="small")
    return bar


def _power_of_ten(value):
    exponent = math.log10(value)
    if abs(exponent - round(exponent)) < 1e-9:
        return f"$10^{{{round(exponent)}}}$"
    return f"{value:.1e}"


def plot_contour(fun, xlim, ylim, ax=None, *, fmin=None, levels=20, resolution=200, grid=None,
                 cmap=None, filled=True, colorbar=True, aspect="equal"):
    """Contours of f - f* on log-spaced levels, grey, with a colour bar of the levels.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float`` for a 1-D array ``x`` of two floats.
    xlim, ylim : (float, float)
        The window.
    ax : matplotlib Axes, optional
        By default a new Figure's axes.
    fmin : float, optional
        f*; by default the lowest value on the grid.
    levels : int, default 20
        Number of contour levels, log-spaced from the smallest positive gap on the grid (at least
        1e-8 of the largest) to the largest.
    resolution : int, default 200
        Least grid points per axis; more where the function oscillates fast (see
        :func:`contour_grid`).
    grid : tuple (X, Y, Z), optional
        A grid from :func:`contour_grid` to reuse (``fun``, ``xlim``, ``ylim`` are then ignored),
        so that many panels cost one evaluation of the function.
    cmap : str or Colormap, optional
        Colour map of the levels; by default :data:`CONTOUR_CMAP` (white to grey).
    filled : bool, default True
        Filled bands with thin grey level lines; False draws coloured lines only.
    colorbar : bool, default True
        Add a colour bar with the level values beside ``ax``.
    aspect : "equal", "auto" or float, default "equal"
        The axes' aspect: "equal" draws one unit the same length on both axes, so a path's angles
        and a valley's shape are true.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes; save it with ``fig.savefig(path)`` or :func:`save_figure`.

    Raises
    ------
    ValueError
        If ``fun`` is not finite anywhere in the window.
    """
    ax = _new_axes(ax, (5.0, 4.0))
    grid = grid if grid is not None else contour_grid(fun, xlim, ylim, resolution)
    contours = _draw_contour(ax, grid, fmin, levels, cmap, filled)
    ax.set_aspect(aspect, adjustable="box")
    if colorbar:
        _colorbar(ax.figure, contours, ax)
    return ax.figure


def _exits(points, xlim, ylim, y_scale=1.0):
    """Where a path leaves the window: ``[(x, y, angle in degrees)]``, one per departure.

    Each segment between finite iterates is clipped to the window (Liang & Barsky, 1984); where
    a segment runs inside the window and ends outside it, the point where it crosses the frame is
    an exit, with the segment's direction on screen as the angle, for an arrowhead (``y_scale``:
    the length on screen of one unit of y over one unit of x, 1 for equal aspect). A segment
    that only passes through the window counts too.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    start, delta = points[:-1], np.diff(points, axis=0)
    finite = np.isfinite(points[:-1]).all(axis=1) & np.isfinite(points[1:]).all(axis=1)
    # every segment at once (a path has thousands): the clipping parameters, per axis in turn
    enter, leave = np.zeros(len(start)), np.ones(len(start))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for axis, (low, high) in enumerate((xlim, ylim)):
            low, high = float(low), float(high)
            s, d = start[:, axis], delta[:, axis]
            still = d == 0
            # a tiny step far outside the window overflows to inf: the segment misses it
            t_low, t_high = (low - s) / d, (high - s) / d
            enter = np.where(still, enter, np.maximum(enter, np.minimum(t_low, t_high)))
            leave = np.where(still, leave, np.minimum(leave, np.maximum(t_low, t_high)))
            outside = still & ~((low <= s) & (s <= high))
            enter, leave = np.where(outside, 1.0, enter), np.where(outside, 0.0, leave)
        leaving = np.flatnonzero(finite & (enter <= leave) & (leave < 1.0))
        where = start[leaving] + leave[leaving, None] * delta[leaving]
        angles = np.degrees(np.arctan2(delta[leaving, 1] * y_scale, delta[leaving, 0]))
    return [(float(x), float(y), float(angle)) for (x, y), angle in zip(where, angles)]


def plot_trajectory(run, ax, *, label=None, color="tab:red", minimizers=None, linewidth=1.0,
                    step_marker_size=2.5, frame=None):
    """Draw one run's path with its start (circle), end (cross) and the known minima (stars).

    A dot of size ``step_marker_size`` (0 for none) marks every iterate, so that crowded dots
    show where the steps are short. Where the path leaves the frame, an arrowhead in the path's
    colour sits on the edge, pointing the way it went.

    Parameters
    ----------
    run : OptimizeResult or array_like, shape (k, 2)
        A result with ``allvecs`` (minimize with ``options={"return_all": True}``) or the
        iterates, the start first.
    ax : matplotlib Axes
        Where to draw (e.g. over :func:`plot_contour`).
    label : str, optional
        Legend label of the path.
    color : color, default "tab:red"
        The path's colour.
    minimizers : array_like, shape (m, 2), optional
        Known minima, marked with stars.
    linewidth : float, default 1.0
    step_marker_size : float, default 2.5
    frame : ((float, float), (float, float)), optional
        The window ``(xlim, ylim)`` whose exits are marked; by default the axes' limits when
        they are fixed (as :func:`plot_contour` leaves them), else no exits are marked.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding ``ax``; save it with ``fig.savefig(path)`` or :func:`save_figure`.
        The path is ``ax.get_lines()`` (its Line2D carries ``label``).
    """
    points = _path(run)
    (line,) = ax.plot(points[:, 0], points[:, 1], color=color, linewidth=linewidth,
                      marker="." if step_marker_size else None, markersize=step_marker_size,
                      label=label, zorder=3)
    ax.plot(points[0, 0], points[0, 1], **_START_STYLE)
    finite = points[np.isfinite(points).all(axis=1)]
    if finite.size:
        ax.plot(finite[-1, 0], finite[-1, 1], **_END_STYLE)
    if minimizers is not None:
        minimizers = np.atleast_2d(np.asarray(minimizers, dtype=float))
        ax.plot(minimizers[:, 0], minimizers[:, 1], **_MINIMUM_STYLE)
    if frame is None and not (ax.get_autoscalex_on() or ax.get_autoscaley_on()):
        frame = (sorted(ax.get_xlim()), sorted(ax.get_ylim()))
    if frame is not None:
        for x, y, angle in _exits(points, *frame, y_scale=_y_scale(ax)):
            # (3, 0, angle) is a triangle turned by angle from pointing up.
            ax.plot([x], [y], marker=(3, 0, angle - 90.0), markersize=_EXIT_SIZE, color=color,
                    markeredgecolor="black", markeredgewidth=0.6, linestyle="none",
                    clip_on=False, zorder=8)
    return ax.figure


def _y_scale(ax):
    """Screen length of one unit of y over one unit of x in ``ax`` (1 with equal aspect)."""
    aspect = ax.get_aspect()
    if aspect != "auto":
        return float(aspect)
    box = ax.get_position()
    width, height = ax.figure.get_size_inches()
    x_span, y_span = np.ptp(ax.get_xlim()), np.ptp(ax.get_ylim())
    return (box.height * height / y_span) / (box.width * width / x_span)


def trajectory_window(paths, points=(), domain=None, margin=0.08, min_width=0.5, *,
                      square=False):
    """A window ``(xlim, ylim)`` that holds every path and the given points (e.g. the minima).

    Parameters
    ----------
    paths : iterable of array_like, shape (k, 2)
        Iterates; non-finite ones are ignored.
    points : array_like, shape (m, 2), optional
        More points to include, such as the known minimizers.
    domain : (lower, upper), optional
        Clip the window to this box (the same bounds for both coordinates, or pairs per
        coordinate), so that a run that diverged does not shrink everything else to a dot.
    margin : float, default 0.08
        Padding on each side, as a fraction of the window's size.
    min_width : float, default 0.5
        Smallest width of each side, for runs that hardly moved.
    square : bool, default False
        Widen the narrower side to make a square window, which fills a square panel drawn with
        equal aspect.

    Returns
    -------
    xlim, ylim : (float, float)

    Raises
    ------
    ValueError
        If there is no finite point to frame.
    """
    chunks = [np.asarray(path, dtype=float).reshape(-1, 2) for path in paths]
    chunks.append(np.asarray(points, dtype=float).reshape(-1, 2))
    everything = np.concatenate(chunks)
    everything = everything[np.isfinite(everything).all(axis=1)]
    if everything.size == 0:
        raise ValueError("no finite point to frame")
    low, high = everything.min(axis=0), everything.max(axis=0)
    if domain is not None:
        lower, upper = (np.broadcast_to(np.asarray(bound, dtype=float), (2,)) for bound in domain)
        low, high = np.clip(low, lower, upper), np.clip(high, lower, upper)
    centre, half = (low + high) / 2, np.maximum((high - low) / 2, min_width / 2)
    if square:
        half = np.full(2, half.max())
    half = half * (1 + 2 * margin)
    return (centre[0] - half[0], centre[0] + half[0]), (centre[1] - half[1], centre[1] + half[1])


def panel_grid(count, ncols=4, panel_size=(3.4, 2.9), layout="constrained", **subplot_kw):
    """A Figure with ``count`` axes in rows of ``ncols``; unused cells are hidden.

    Parameters
    ----------
    count : int
        Number of panels.
    ncols : int, default 4
        Panels per row.
    panel_size : (float, float), default (3.4, 2.9)
        Size of one panel in inches.
    layout : str or None, default "constrained"
        The figure's layout engine (:class:`matplotlib.figure.Figure`'s ``layout``).
    **subplot_kw
        Passed to :meth:`matplotlib.figure.Figure.subplots`.

    Returns
    -------
    figure : matplotlib.figure.Figure
        Save it with ``figure.savefig(path)`` or :func:`save_figure`.
    axes : list of Axes
        The first ``count`` axes, then the hidden spare cells (``axes[count:]``, handy for a
        legend).
    """
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)
    figure = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout=layout)
    axes = list(np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False, **subplot_kw)).ravel())
    for spare in axes[count:]:
        spare.set_axis_off()
    return figure, axes


def plot_trajectories(fun, runs, *, minimizers=None, fmin=None, xlim=None, ylim=None, domain=None,
                      titles=None, colors=None, ncols=4, panel_size=(3.4, 3.0), levels=20,
                      resolution=200, cmap=None, step_marker_size=2.5, suptitle=None,
                      colorbar=True):
    """One panel per run: the path over grey contours of f - f* on log-spaced levels.

    Every panel shares one window (square by default, drawn with equal aspect), one grid of the
    function and one colour bar of the level values. Each path has its own colour
    (:func:`series_style` of its position unless ``colors`` says), a white circle at the start, a
    black cross at the end, gold stars at the known minima and an arrowhead where it leaves the
    window.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float`` for a 1-D array of two floats.
    runs : mapping or OptimizeResult
        ``{label: run}`` (or one run), each an OptimizeResult with ``allvecs`` or a (k, 2) array.
    minimizers : array_like, shape (m, 2), optional
        Known minima, marked with stars.
    fmin : float, optional
        f* for the contour levels; by default the lowest value on the grid.
    xlim, ylim : (float, float), optional
        The window; by default the square :func:`trajectory_window` of the paths and minimizers.
    domain : (lower, upper), optional
        Clips the default window (see :func:`trajectory_window`).
    titles : mapping, optional
        ``{label: title}``; a panel's title is its label otherwise.
    colors : mapping, optional
        ``{label: color}`` of the paths (e.g. to match a convergence plot).
    ncols : int, default 4
        Panels per row.
    panel_size : (float, float), default (3.4, 3.0)
        Size of one panel in inches.
    levels, resolution : int
        Passed to :func:`plot_contour` (``resolution`` is the least, see :func:`contour_grid`).
    cmap : str or Colormap, optional
        Colour map of the contours; by default :data:`CONTOUR_CMAP` (white to grey).
    step_marker_size : float, default 2.5
        Size of the dot at every iterate (0 for none); see :func:`plot_trajectory`.
    suptitle : str, optional
        Title of the whole figure.
    colorbar : bool, default True
        One colour bar of the contour levels for all panels.

    Returns
    -------
    matplotlib.figure.Figure
        Save it with ``fig.savefig(path)`` or :func:`save_figure` (not ``pyplot.savefig``).
        Its panels are placed once, for its size (faster than a layout engine, which would
        measure every panel at every drawing): resizing it afterwards does not re-fit them, so
        ask for another ``panel_size`` instead.

    Raises
    ------
    ValueError
        If ``runs`` is an empty mapping, a result has no ``allvecs`` or the iterates are not
        of shape (k, 2).
    """
    paths = _per_run(runs, _path)
    if xlim is None or ylim is None:
        auto_x, auto_y = trajectory_window(paths.values(),
                                           () if minimizers is None else minimizers, domain,
                                           square=True)
        xlim, ylim = xlim or auto_x, ylim or auto_y
    grid = contour_grid(fun, xlim, ylim, resolution)
    # Laid out by _fit_panels, not by constrained layout, which measures every panel's texts.
    figure, axes = panel_grid(len(paths), ncols=ncols, panel_size=panel_size, layout=None)
    ncols = axes[0].get_gridspec().ncols  # at most one per panel
    panels = axes[:len(paths)]
    titles, colors = titles or {}, colors or {}
    any_exit = False
    for index, (ax, (label, path)) in enumerate(zip(panels, paths.items())):
        contours = _draw_contour(ax, grid, fmin, levels, cmap, filled=True)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal", adjustable="box")
        plot_trajectory(path, ax, color=colors.get(label, series_style(index)["color"]),
                        minimizers=minimizers, step_marker_size=step_marker_size,
                        frame=(xlim, ylim))
        any_exit = any_exit or bool(_exits(path, xlim, ylim))
        ax.set_title(titles.get(label, "" if label is None else str(label)), fontsize="medium")
        row_start = index % ncols == 0
        last_row = index + ncols >= len(paths)
        # one window for every panel: its numbers on the outer panels only (fewer texts to lay
        # out, which is most of the time a figure of many panels takes to save)
        ax.tick_params(labelsize="small", labelbottom=last_row, labelleft=row_start)
        ax.set_xlabel("x1" if last_row else "")
        ax.set_ylabel("x2" if row_start else "")
    bar = None
    if colorbar:
        bar = _colorbar(figure, contours, panels, label="f - f* (contour levels)",
                        cax=figure.add_axes((0.9, 0.1, 0.02, 0.8), label="<colorbar>"))
    handles = [Line2D([], [], **_START_STYLE, label="start"),
               Line2D([], [], **_END_STYLE, label="end"),
               Line2D([], [], color="0.3", marker=".", label="path (one dot per step)")]
    if any_exit:
        handles.append(Line2D([], [], marker=">", markersize=_EXIT_SIZE, color="0.3",
                              markeredgecolor="black", markeredgewidth=0.6, linestyle="none",
                              label="leaves the frame"))
    if minimizers is not None:
        handles.append(Line2D([], [], **_MINIMUM_STYLE, label="global minimum"))
    renderer = FigureCanvasAgg(figure).get_renderer()  # for measuring the texts
    legend = _figure_legend(figure, renderer, handles, loc="lower center", fontsize="medium",
                            frameon=False)
    title = figure.suptitle(suptitle, va="top") if suptitle else None
    _fit_panels(figure, renderer, panels, ncols, bar, legend, title)
    return figure


#: Room, in inches, between the blocks of a figure of panels (and around it), and between two
#: panels side by side (where an arrowhead on a frame's edge may stick out).
_GAP, _PANEL_GAP = 0.08, 0.18


def _figure_legend(figure, renderer, handles, **options):
    """A legend of ``handles`` below the panels: one row, or as few as fit the figure's width."""
    room = (figure.get_figwidth() - 2 * _GAP) * figure.dpi
    for ncols in range(len(handles), 0, -1):
        legend = figure.legend(handles=handles, ncols=ncols, **options)
        if ncols == 1 or legend.get_window_extent(renderer).width <= room:
            return legend
        legend.remove()


def _fit_panels(figure, renderer, panels, ncols, bar=None, legend=None, title=None):
    """Place ``panels`` (rows of ``ncols``, one shared window, the numbers and axis labels on
    the left column and the bottom row only, as :func:`plot_trajectories` draws them), the
    colour bar ``bar`` on the right, ``legend`` at the bottom and ``title`` at the top.

    The room each text needs is measured on one panel of each kind, twice (tick labels follow
    the panel's size): the layout constrained layout would find for such a grid, without
    measuring every panel, which took most of the time of saving a figure of 24 panels.
    """
    width, height = figure.get_size_inches()
    nrows = -(-len(panels) // ncols)
    corner = panels[(nrows - 1) * ncols]  # left column and bottom row: both axes labelled

    def size(artist):
        box = None if artist is None else artist.get_tightbbox(renderer)
        if box is None or not np.isfinite(box.bounds).all():  # nothing drawn (an empty text)
            return (0.0, 0.0)
        return (box.width / figure.dpi, box.height / figure.dpi)

    def edge(artist, top=False):  # the inner edge of a text at the figure's top or bottom
        box = artist.get_tightbbox(renderer)
        return (box.y0 if top else box.y1) / figure.dpi

    def labels_width(bar):  # the colour bar's numbers and label, from the bar's right edge on
        return size(bar.ax)[0] - bar.ax.get_position().width * width

    titled = [ax.title for ax in panels if ax.get_title()]
    # Texts at the figure's edges first, so that what is measured is where they stand.
    if legend is not None:
        legend.set_bbox_to_anchor((0.5, _GAP / height), transform=figure.transFigure)
    if title is not None:
        title.set_y(1.0 - _GAP / height)
    for _ in range(2):
        title_height = (max(size(text)[1] for text in titled)
                        + rcParams["axes.titlepad"] / 72.0 if titled else 0.0) + _GAP
        # (title_height ends with a gap: the room above the panels' titles)
        top = (edge(title, top=True) if title is not None else height) - title_height
        bottom = (edge(legend) if legend is not None else _GAP) + _GAP \
            + size(corner.xaxis)[1] + _GAP
        left = size(corner.yaxis)[0] + 2 * _GAP
        span = 0.9 * (top - bottom)  # the colour bar's, as colorbar(shrink=0.9, aspect=30)
        bar_width = span / 30
        right = width - _GAP - (labels_width(bar) + bar_width + _GAP if bar else 0.0)
        # (a figure too small for its texts gets tiny panels, not an error)
        cell_width = max((right - left - (ncols - 1) * _PANEL_GAP) / ncols, 0.05)
        cell_height = max((top - bottom - (nrows - 1) * title_height) / nrows, 0.05)
        right, top = max(right, left + 0.05), max(top, bottom + 0.05)
        figure.subplots_adjust(left=left / width, right=right / width, bottom=bottom / height,
                               top=top / height, wspace=_PANEL_GAP / cell_width,
                               hspace=title_height / cell_height)
        if bar is not None:
            bar.ax.set_position(((right + _GAP) / width, (bottom + (top - bottom - span) / 2)
                                 / height, bar_width / width, span / height))


def save_figure(figure, path, dpi=100, palette=False):
    """Save ``figure`` to ``path`` atomically, creating the folder; the format follows the suffix.

    The image is written to a temporary file in the same folder and renamed over ``path``, so a
    reader never sees a half-written file and an interrupted run leaves the old one intact.
    (``figure.savefig(path)`` works too, without these guarantees.)

    Parameters
    ----------
    figure : matplotlib.figure.Figure
    path : str or Path
    dpi : int, default 100
    palette : bool, default False
        For PNG: store 256 colours in a palette instead of full RGBA. Line plots and contours have
        few distinct colours, so this looks the same and makes files about 3x smaller, which
        matters for images committed to a repository.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    file_format = path.suffix.lstrip(".").lower() or "png"
    with atomic_write(path, "wb") as stream:
        if palette and file_format == "png":
            _rendered(figure, dpi).convert("RGB").quantize(colors=256).save(
                stream, format="png", optimize=True)
        else:
            figure.savefig(stream, format=file_format, dpi=dpi)
    return path


#: The ``savefig.*`` settings under which savefig's PNG is exactly the figure as Agg draws it.
_PLAIN_SAVEFIG = {"savefig.bbox": None, "savefig.facecolor": "auto", "savefig.edgecolor": "auto",
                  "savefig.transparent": False, "savefig.orientation": "portrait"}


def _rendered(figure, dpi):
    """The figure's pixels at ``dpi`` (None: ``savefig.dpi``), as a PIL image.

    Under the default ``savefig.*`` settings Agg draws them directly, on a canvas lent for the
    drawing (the figure keeps its own): the pixels ``savefig`` would encode as PNG, without that
    encoding and the extra layout pass savefig makes first. Under other settings (a tight box, a
    face colour) ``savefig`` makes the PNG, which is then decoded.
    """
    if dpi is None:
        dpi = rcParams["savefig.dpi"]
    if dpi == "figure":
        dpi = figure.dpi
    if any(rcParams[key] != value for key, value in _PLAIN_SAVEFIG.items()):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi)
        buffer.seek(0)
        with Image.open(buffer) as image:
            return image.copy()
    canvas, saved_dpi = figure.canvas, figure.dpi
    try:
        figure.set_dpi(dpi)
        drawing = FigureCanvasAgg(figure)
        drawing.draw()
        return Image.frombuffer("RGBA", drawing.get_width_height(), drawing.buffer_rgba(),
                                "raw", "RGBA", 0, 1).copy()
    finally:
        figure.set_dpi(saved_dpi)
        figure.set_canvas(canvas)
