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
>>> ax = adamnb.plot.plot_convergence(runs, fmin=rosen.fmin)
>>> fig = adamnb.plot.plot_trajectories(rosen.fun, runs, minimizers=rosen.minimizers)
>>> adamnb.plot.save_figure(fig, "rosenbrock.png")  # doctest: +SKIP

Figures are built with :class:`matplotlib.figure.Figure`, not ``pyplot``: nothing here depends on
an interactive backend or on pyplot's global state, so the functions work the same on a headless
machine, in a script and in a notebook (a notebook shows a returned Figure). Pass ``ax=`` to draw
into your own pyplot axes instead.

Values that span decades are drawn on log scales: ``f - f*`` against the step, and the contour
levels of ``f - f*`` (log-spaced, so the floor of a narrow valley is as visible as its walls).
"""

import io
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image
from scipy.optimize import OptimizeResult

from adamnb._io import atomic_write

__all__ = ["plot_convergence", "contour_grid", "plot_contour", "plot_trajectory",
           "plot_trajectories", "trajectory_window", "panel_grid", "save_figure"]

#: Gaps f - f* below this are drawn at it: a log axis cannot show 0, and double precision cannot
#: resolve f much below 1e-16 of its scale anyway.
DEFAULT_FLOOR = 1e-16

_START_STYLE = dict(marker="o", markersize=7, markerfacecolor="white", markeredgecolor="black",
                    linestyle="none", zorder=5)
_END_STYLE = dict(marker="X", markersize=8, markerfacecolor="red", markeredgecolor="black",
                  linestyle="none", zorder=6)
_MINIMUM_STYLE = dict(marker="*", markersize=13, markerfacecolor="gold", markeredgecolor="black",
                      linestyle="none", zorder=4)


def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _as_mapping(runs):
    """A {label: run} dict from a mapping of runs, or {None: run} from a single run.

    An OptimizeResult is a dict too, but a single run.
    """
    if isinstance(runs, dict) and not isinstance(runs, OptimizeResult):
        return dict(runs)
    return {None: runs}


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


def plot_convergence(runs, fmin=None, ax=None, *, floor=DEFAULT_FLOOR, target=None, styles=None,
                     xlabel="step", ylabel=None, title=None, legend=True):
    """Plot f - f* against the step, on a log scale, one line per run.

    Parameters
    ----------
    runs : mapping, OptimizeResult or array_like
        ``{label: run}``, or one run. A run is an OptimizeResult with ``fun_history`` (minimize with
        ``options={"return_all": True}``) or a 1-D array of f values, the start's first.
    fmin : float, optional
        The minimum f*; by default the lowest value any run reached (the axis then reads
        "f(x) - best f seen").
    ax : matplotlib Axes, optional
        Where to draw; by default a new Figure's axes (``ax.figure``).
    floor : float, default 1e-16
        Gaps below ``floor`` (including 0 and rounding below f*) are drawn at ``floor``.
    target : float, optional
        Draw a dotted horizontal line at this gap (e.g. the 1e-6 of a success criterion).
    styles : mapping, optional
        ``{label: dict of Line2D properties}`` (color, linestyle, ...) for some of the runs.
    xlabel, ylabel, title : str, optional
        Axis labels and title; ``ylabel`` defaults to "f(x) - f*".
    legend : bool, default True
        Add a legend when the runs have labels.

    Returns
    -------
    matplotlib.axes.Axes
    """
    runs = _as_mapping(runs)
    histories = {label: _fun_values(run) for label, run in runs.items()}
    if fmin is None:
        finite = [h[np.isfinite(h)] for h in histories.values()]
        fmin = min((h.min() for h in finite if h.size), default=0.0)
        ylabel = ylabel or "f(x) - best f seen"
    ax = _new_axes(ax, (6.0, 4.0))
    styles = styles or {}
    for label, history in histories.items():
        gap = np.maximum(history - fmin, floor)
        ax.semilogy(np.arange(gap.size), gap, label=None if label is None else str(label),
                    **styles.get(label, {}))
    if target is not None:
        ax.axhline(target, color="0.4", linestyle=":", linewidth=1.0, label=f"{target:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or "f(x) - f*")
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if legend and any(label is not None for label in histories):
        ax.legend(fontsize="small")
    return ax


def contour_grid(fun, xlim, ylim, resolution=200):
    """``fun`` on a regular grid over ``xlim`` x ``ylim``: the arrays ``(X, Y, Z)``.

    ``fun`` takes a 1-D array of two floats, as minimize's objective does; it is called once per
    grid point (``resolution`` squared calls, fast for numba-compiled functions).
    """
    xs = np.linspace(xlim[0], xlim[1], resolution)
    ys = np.linspace(ylim[0], ylim[1], resolution)
    X, Y = np.meshgrid(xs, ys)
    Z = np.empty_like(X)
    point = np.empty(2)
    for index in np.ndindex(X.shape):
        point[0], point[1] = X[index], Y[index]
        Z[index] = fun(point)
    return X, Y, Z


def plot_contour(fun, xlim, ylim, ax=None, *, fmin=None, levels=20, resolution=200, grid=None,
                 cmap="viridis"):
    """Contour lines of f - f* on log-spaced levels.

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
        Grid points per axis.
    grid : tuple (X, Y, Z), optional
        A grid from :func:`contour_grid` to reuse (``fun``, ``xlim``, ``ylim`` are then ignored),
        so that many panels cost one evaluation of the function.
    cmap : str, default "viridis"

    Returns
    -------
    matplotlib.contour.QuadContourSet
    """
    ax = _new_axes(ax, (5.0, 4.0))
    X, Y, Z = grid if grid is not None else contour_grid(fun, xlim, ylim, resolution)
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
    contours = ax.contour(X, Y, gap, levels=np.geomspace(low, high, levels),
                          norm=LogNorm(vmin=low, vmax=high), cmap=cmap, linewidths=0.7)
    ax.set_xlim(X.min(), X.max())
    ax.set_ylim(Y.min(), Y.max())
    return contours


def plot_trajectory(run, ax, *, label=None, color="tab:red", minimizers=None, linewidth=1.0,
                    step_marker_size=2.5):
    """Draw one run's path with its start (circle) and end (cross), and the known minima (stars).

    ``run`` is an OptimizeResult with ``allvecs`` (minimize with ``return_all``) or a (k, 2) array
    of iterates, the start first. A dot of size ``step_marker_size`` (0 for none) marks every
    iterate, so that crowded dots show where the steps are short. Returns the path's Line2D.
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
    return line


def trajectory_window(paths, points=(), domain=None, margin=0.08, min_width=0.5):
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
    half = half * (1 + 2 * margin)
    return (centre[0] - half[0], centre[0] + half[0]), (centre[1] - half[1], centre[1] + half[1])


def panel_grid(count, ncols=4, panel_size=(3.4, 2.9), **subplot_kw):
    """A Figure with ``count`` axes in rows of ``ncols``; unused cells are hidden.

    Returns ``(figure, axes)`` with ``axes`` a flat list of the first ``count`` axes and the
    hidden spare cells after them (``axes[count:]``, handy for a legend).
    """
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)
    figure = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = list(np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False, **subplot_kw)).ravel())
    for spare in axes[count:]:
        spare.set_axis_off()
    return figure, axes


def plot_trajectories(fun, runs, *, minimizers=None, fmin=None, xlim=None, ylim=None, domain=None,
                      titles=None, colors=None, ncols=4, panel_size=(3.4, 3.0), levels=20,
                      resolution=200, cmap="viridis", step_marker_size=2.5, suptitle=None):
    """One panel per run: the path over the contour of f - f* on log-spaced levels.

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
        The window; by default :func:`trajectory_window` of the paths and minimizers.
    domain : (lower, upper), optional
        Clips the default window (see :func:`trajectory_window`).
    titles : mapping, optional
        ``{label: title}``; a panel's title is its label otherwise.
    colors : mapping, optional
        ``{label: color}`` of the paths (e.g. to match a convergence plot); by default the
        colour cycle in order.
    ncols : int, default 4
        Panels per row.
    panel_size : (float, float), default (3.4, 3.0)
        Size of one panel in inches.
    levels, resolution : int
        Passed to :func:`plot_contour`.
    cmap : str, default "viridis"
        Colour map of the contour lines.
    step_marker_size : float, default 2.5
        Size of the dot at every iterate (0 for none); see :func:`plot_trajectory`.
    suptitle : str, optional
        Title of the whole figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    runs = _as_mapping(runs)
    paths = {label: _path(run) for label, run in runs.items()}
    if xlim is None or ylim is None:
        auto_x, auto_y = trajectory_window(paths.values(),
                                           () if minimizers is None else minimizers, domain)
        xlim, ylim = xlim or auto_x, ylim or auto_y
    grid = contour_grid(fun, xlim, ylim, resolution)
    figure, axes = panel_grid(len(paths), ncols=ncols, panel_size=panel_size)
    titles, colors = titles or {}, colors or {}
    for index, (ax, (label, path)) in enumerate(zip(axes, paths.items())):
        plot_contour(fun, xlim, ylim, ax, fmin=fmin, levels=levels, grid=grid, cmap=cmap)
        plot_trajectory(path, ax, color=colors.get(label, f"C{index % 10}"),
                        minimizers=minimizers, step_marker_size=step_marker_size)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_title(titles.get(label, "" if label is None else str(label)), fontsize="medium")
        ax.tick_params(labelsize="small")
        row_start = index % ncols == 0
        last_row = index + ncols >= len(paths)
        ax.set_xlabel("x1" if last_row else "")
        ax.set_ylabel("x2" if row_start else "")
    handles = [Line2D([], [], **_START_STYLE, label="start"),
               Line2D([], [], **_END_STYLE, label="end"),
               Line2D([], [], color="0.3", marker=".", label="path (one dot per step)")]
    if minimizers is not None:
        handles.append(Line2D([], [], **_MINIMUM_STYLE, label="global minimum"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                  fontsize="medium", frameon=False)
    if suptitle:
        figure.suptitle(suptitle)
    return figure


def save_figure(figure, path, dpi=100, palette=False):
    """Save ``figure`` to ``path`` atomically, creating the folder; the format follows the suffix.

    The image is written to a temporary file in the same folder and renamed over ``path``, so a
    reader never sees a half-written file and an interrupted run leaves the old one intact.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
    path : str or Path
    dpi : int, default 100
    palette : bool, default False
        For PNG: store 256 colours in a palette instead of full RGBA. Line plots and contours have
        few distinct colours, so this looks the same and makes files about 3x smaller, which
        matters for images committed to a repository.
    """
    path = Path(path)
    file_format = path.suffix.lstrip(".").lower() or "png"
    with atomic_write(path, "wb") as stream:
        if palette and file_format == "png":
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=dpi)
            buffer.seek(0)
            with Image.open(buffer) as image:
                image.convert("RGB").quantize(colors=256).save(stream, format="png",
                                                               optimize=True)
        else:
            figure.savefig(stream, format=file_format, dpi=dpi)
    return path
