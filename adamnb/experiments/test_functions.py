"""Every method on every classic 2-D test function, each at a fairly chosen learning rate.

For each (method, function) pair, the method runs from the function's standard start ``x0`` for a
fixed budget of update steps, once per learning rate of a small log-spaced grid (:data:`LR_GRIDS`),
and the rate kept is the best by :data:`CRITERION`, which the table states. scipy's BFGS and
L-BFGS-B run on the same problems as references (their "steps" are iterations, each with a line
search). Every run calls ``adamnb.minimize(tf.fun, tf.x0, jac=tf.grad, ...)`` with the test
function's own numba-compiled value and gradient, as a user would.

Every (method, function) pair is one cell of a sweep (:mod:`adamnb.sweep`), and so is every
scipy reference run and every figure: the cells spread over one worker process per core by
default, ``--workers N`` processes, or a Dask cluster (``--scheduler tcp://HOST:8786``), with the
same numbers on each (wall times aside).

Outputs, under ``./results/test_functions/`` (``./results/test_functions/quick/`` with
``--quick``; or ``--out DIR``), all written atomically by the main process:

``table.md``
    Steps to first reach f - f* < 1e-6 for every method and function, then every number: the
    chosen learning rate, final f - f*, distance to the nearest known minimum, first step with
    f - f* < 1e-6 ("-" when never), wall time and how the run stopped.
``summary.json``
    The same numbers, plus every grid point's outcome and the machine.
``convergence.png``
    f - f* against the step (log scale), one panel per function, one line per method.
``trajectories_<function>.png``
    The paths over the function's contour (log-spaced levels), one panel per method, with the
    start, the end and the known minima marked.

Run: ``adamnb experiment test-functions [--quick] [--out DIR] [--workers N | --scheduler
ADDRESS]`` (or ``python -m adamnb.experiments.test_functions ...``). ``--quick`` (fewer
functions, a shorter budget and a coarser grid) takes seconds, for CI. How long the default run
takes, cold and warm, is in docs/benchmarks.md.
"""

import dataclasses
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import scipy
import scipy.optimize

import adamnb
from adamnb import plot
from adamnb import sweep as sweeps
from adamnb._io import atomic_write
from adamnb.experiments import (default_out, experiment_parser, finish, markdown_table,
                                parse_arguments, quick_note, run_cells, write_json, write_text)
from adamnb.optim.rules import VECTOR_RULES
from adamnb.problems.functions import FUNCTIONS

NAME = "test-functions"
FOLDER = "test_functions"

#: Update steps per run (scipy's references: iterations).
BUDGET = 3000
QUICK_BUDGET = 1000
#: The functions of a --quick run: enough to exercise every output, small enough for CI.
QUICK_FUNCTIONS = ("rosenbrock", "booth")

#: Runs stop, successfully, once the gradient's infinity-norm is at most this (minimize's default).
GTOL = 1e-5
#: The suboptimality f - f* a run must reach to count as solved.
TARGET_GAP = 1e-6

#: The methods compared: every rule that updates a flat vector (Muon orthogonalises matrices and
#: needs groups with a 2-D shape, which a point in the plane does not have).
METHODS = tuple(method for method in adamnb.METHODS if method in VECTOR_RULES)

#: Learning-rate grids: seven rates half a decade apart, spanning a factor 1000. Plain SGD's and
#: ASGD's useful rates are smaller (their step is the raw gradient, in the hundreds on
#: Rosenbrock's walls) and Adadelta's larger (torch's default lr is 1.0 and its first steps are
#: about lr * sqrt(eps)).
ADAPTIVE_GRID = tuple(float(f"{10.0 ** e:.3g}") for e in np.arange(-3.0, 0.01, 0.5))
LR_GRIDS = {method: ADAPTIVE_GRID for method in METHODS}
LR_GRIDS["sgd"] = tuple(float(f"{10.0 ** e:.3g}") for e in np.arange(-4.0, -0.99, 0.5))
LR_GRIDS["asgd"] = LR_GRIDS["sgd"]  # ASGD steps along the raw gradient too
LR_GRIDS["adadelta"] = tuple(float(f"{10.0 ** e:.3g}") for e in np.arange(-0.5, 2.51, 0.5))

CRITERION = (f"among the rates whose run ends with f - f* < {TARGET_GAP:g}, the fewest steps to "
             f"first reach it; if no rate ends there, the lowest final f - f* (a run that met "
             f"NaN/inf ranks last)")

#: scipy's quasi-Newton methods, run on the same problems as references.
REFERENCES = ("BFGS", "L-BFGS-B")

#: How a run stopped, in the table's words. "gtol met" says the gradient vanished, not that the
#: minimum is the global one: the final f - f* says that.
_STOPPED = {0: "gtol met", 1: "budget used", 3: "diverged (NaN/inf)", 99: "callback"}


@dataclass
class Run:
    """One run of one method on one function, reduced to what the outputs need."""

    method: str
    lr: float  # None for scipy's references
    final_gap: float
    distance: float
    steps_to_target: int  # None when f - f* never dropped below TARGET_GAP
    stopped: str
    nit: int
    nfev: int
    wall_time_s: float
    fun_history: np.ndarray = field(repr=False)
    path: np.ndarray = field(repr=False)

    @property
    def diverged(self):
        return self.stopped.startswith("diverged")

    def rank(self):
        """Sort key of :data:`CRITERION`: smaller is better."""
        if not self.diverged and self.final_gap < TARGET_GAP:
            return (0, self.steps_to_target, self.final_gap)
        return (1, np.inf if self.diverged else self.final_gap, 0.0)

    def record(self):
        """Everything, histories included, as a sweep record (see :meth:`from_record`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record):
        """The run a sweep record holds."""
        return cls(**record)

    def numbers(self):
        """The JSON-ready numbers of this run (no histories)."""
        return {"lr": self.lr, "final_gap": self.final_gap, "distance": self.distance,
                "steps_to_target": self.steps_to_target, "stopped": self.stopped,
                "nit": self.nit, "nfev": self.nfev, "wall_time_ms": 1e3 * self.wall_time_s}


def _measure(tf, method, lr, fun_history, path, stopped, nit, nfev, wall_time_s, final_f, final_x):
    gap_history = np.maximum(np.asarray(fun_history, dtype=float) - tf.fmin, 0.0)
    below = np.flatnonzero(gap_history < TARGET_GAP)
    # Rounding can put f a hair below the tabulated f*; such a gap counts as 0.
    return Run(method=method, lr=lr, final_gap=max(float(final_f) - tf.fmin, 0.0),
               distance=tf.nearest_minimizer_distance(final_x),
               steps_to_target=int(below[0]) if below.size else None, stopped=stopped,
               nit=int(nit), nfev=int(nfev), wall_time_s=wall_time_s,
               fun_history=np.asarray(fun_history, dtype=float),
               path=np.asarray(path, dtype=float))


def run_method(tf, method, lr, budget):
    """One adamnb run from ``tf.x0``: ``budget`` steps at most, iterates recorded."""
    start = time.perf_counter()
    result = adamnb.minimize(tf.fun, tf.x0, method=method, jac=tf.grad,
                             options={"lr": lr, "maxiter": budget, "gtol": GTOL,
                                      "return_all": True})
    wall_time_s = time.perf_counter() - start
    return _measure(tf, method, lr, result.fun_history, np.array(result.allvecs),
                    _STOPPED[result.status], result.nit, result.nfev, wall_time_s, result.fun,
                    result.x)


def run_reference(tf, method, budget):
    """One scipy run (BFGS or L-BFGS-B) from ``tf.x0``, iterates recorded by its callback."""
    points, values = [tf.x0.copy()], [tf.fun(tf.x0)]

    def record(intermediate_result):
        points.append(np.array(intermediate_result.x, dtype=float))
        values.append(float(intermediate_result.fun))

    # A first, untimed call pays scipy's one-off setup cost (L-BFGS-B's takes about 0.2 s).
    scipy.optimize.minimize(tf.fun, tf.x0, jac=tf.grad, method=method, options={"maxiter": 1})
    start = time.perf_counter()
    result = scipy.optimize.minimize(tf.fun, tf.x0, jac=tf.grad, method=method, callback=record,
                                     options={"maxiter": budget, "gtol": GTOL})
    wall_time_s = time.perf_counter() - start
    if result.success:
        # L-BFGS-B also stops, successfully, once f stops decreasing (its ftol test).
        stopped = "gtol met" if np.abs(result.jac).max() <= GTOL else "f stopped decreasing"
    elif result.nit >= budget:
        stopped = "budget used"
    elif not np.isfinite(result.fun):
        stopped = "diverged (NaN/inf)"
    else:
        stopped = "line search stopped"
    return _measure(tf, method, None, values, points, stopped, result.nit, result.nfev,
                    wall_time_s, result.fun, result.x)


def tune(function_name, method, grid, budget):
    """Run one method on one function at every rate of its grid; the best run and the grid's.

    Returns
    -------
    best : Run
        The run chosen by :data:`CRITERION`.
    grid_numbers : list of dict
        Every rate's outcome: ``lr``, ``final_gap``, ``steps_to_target``, ``stopped``.
    """
    tf = FUNCTIONS[function_name]
    # The first call compiles minimize's loop for this (method, function) pair; keep that one-off
    # cost out of the measured wall times.
    adamnb.minimize(tf.fun, tf.x0, method=method, jac=tf.grad, options={"maxiter": 1})
    runs = [run_method(tf, method, lr, budget) for lr in grid]
    best = min(runs, key=Run.rank)
    grid_numbers = [{"lr": run.lr, "final_gap": run.final_gap,
                     "steps_to_target": run.steps_to_target, "stopped": run.stopped}
                    for run in runs]
    return best, grid_numbers


def run_cell(cell):
    """One cell of the sweep: ``{"function", "method", "budget"}``, plus ``"grid"`` (the
    learning rates) for adamnb's methods; the record ``{"best": Run.record(), "grid": ...}``."""
    tf = FUNCTIONS[cell["function"]]
    if cell["method"] in REFERENCES:
        best, grid_numbers = run_reference(tf, cell["method"], cell["budget"]), None
    else:
        best, grid_numbers = tune(cell["function"], cell["method"], cell["grid"],
                                  cell["budget"])
    return {"best": best.record(), "grid": grid_numbers}


def cells_of(functions, grids, budget):
    """The sweep's cells: every method of adamnb on every function, then scipy's references."""
    cells = [{"function": name, "method": method, "grid": list(grids[method]), "budget": budget}
             for name in functions for method in METHODS]
    cells += [{"function": name, "method": method, "budget": budget}
              for name in functions for method in REFERENCES]
    return cells


def run(out=None, quick=False, plots=True, workers=None, scheduler=None):
    """Run the experiment, write its outputs under ``out`` and return the summary.

    Parameters
    ----------
    out : path, optional
        Output folder, created if needed; default ``./results/test_functions`` (``.../quick``
        for a quick run).
    quick : bool, default False
        The CI version: :data:`QUICK_FUNCTIONS`, :data:`QUICK_BUDGET` steps and every third rate
        of each grid.
    plots : bool, default True
        Also write the PNG figures.
    workers, scheduler
        Where the runs go, as in :func:`adamnb.sweep.sweep`: default one local process per
        core; ``workers=1`` this process; ``scheduler`` a Dask cluster.

    Returns
    -------
    dict
        The contents of ``summary.json``: among them ``results`` (per function and method, the
        numbers of the best run over its learning-rate grid) and the ``lr_grids`` searched.
    """
    started = time.perf_counter()
    out = default_out(FOLDER, quick, out)
    budget = QUICK_BUDGET if quick else BUDGET
    functions = QUICK_FUNCTIONS if quick else tuple(FUNCTIONS)
    grids = {method: grid[::3] if quick else grid for method, grid in LR_GRIDS.items()}
    cells = cells_of(functions, grids, budget)
    methods = (*METHODS, *REFERENCES)
    with sweeps.executor(workers, scheduler) as executor:
        records = run_cells(run_cell, cells, out=out, workers=executor, desc=NAME)
        best = {(cell["function"], cell["method"]): Run.from_record(record["best"])
                for cell, record in zip(cells, records)}
        grid_numbers = {(cell["function"], cell["method"]): record["grid"]
                        for cell, record in zip(cells, records) if record["grid"] is not None}
        summary = {
            "experiment": NAME,
            "quick": quick,
            "budget": budget,
            "gtol": GTOL,
            "target_gap": TARGET_GAP,
            "criterion": CRITERION,
            "lr_grids": {method: list(grids[method]) for method in METHODS},
            "functions": list(functions),
            "methods": list(methods),
            "problems": {name: {"description": FUNCTIONS[name].description,
                                "fmin": FUNCTIONS[name].fmin, "x0": FUNCTIONS[name].x0,
                                "minimizers": FUNCTIONS[name].minimizers}
                         for name in functions},
            "results": {name: {method: {**best[name, method].numbers(),
                                        **({"grid": grid_numbers[name, method]}
                                           if (name, method) in grid_numbers else {})}
                               for method in methods}
                        for name in functions},
            "environment": {"python": platform.python_version(), "numpy": np.__version__,
                            "numba": numba.__version__, "scipy": scipy.__version__,
                            "adamnb": adamnb.__version__, "machine": platform.machine(),
                            "system": platform.system(), "cores": sweeps.available_cores(),
                            "executor": executor.describe()},
        }
        summary["runs_time_s"] = time.perf_counter() - started
        write_json(out / "summary.json", summary)
        write_text(out / "table.md", table(summary))
        if plots:
            figures = figure_cells(best, functions, methods, quick)
            pictures = run_cells(draw_figure, figures, out=out, workers=executor,
                                 desc=f"{NAME} plots", store=False)
            for cell, picture in zip(figures, pictures):
                with atomic_write(out / cell["file"], "wb") as stream:
                    stream.write(picture["png"])
    summary["total_time_s"] = time.perf_counter() - started
    write_json(out / "summary.json", summary)
    finish(out)
    return summary


# --- outputs --------------------------------------------------------------------------------------

def format_lr(lr):
    return "-" if lr is None else f"{lr:.3g}"


def format_gap(value):
    return f"{value:.2e}"


def format_steps(steps):
    return "-" if steps is None else str(steps)


def format_ms(value):
    return f"{value:.2f}"


def table(summary):
    """The Markdown of ``table.md``: the setting, an overview, then every number."""
    functions, methods = summary["functions"], summary["methods"]
    results = summary["results"]
    target = f"{summary['target_gap']:g}"
    grids = summary["lr_grids"]
    adaptive = [m for m in grids if grids[m] == grids["adam"]]
    grid_lines = [f"  - {', '.join(adaptive)}: {', '.join(map(format_lr, grids['adam']))}"]
    grid_lines += [f"  - {m}: {', '.join(map(format_lr, grids[m]))}" for m in grids
                   if m not in adaptive]
    environment = summary["environment"]
    lines = [
        "# Every method on the classic 2-D test functions"
        + (" (quick run)" if summary["quick"] else ""),
        "",
        f"Produced by `adamnb experiment {NAME}{' --quick' if summary['quick'] else ''}`.",
        "",
        f"- **Budget**: {summary['budget']} update steps per run, from each function's standard "
        f"start x0; a run stops early once max |grad f| <= {summary['gtol']:g}.",
        f"- **Learning rate**, chosen per (method, function) from the method's grid: "
        f"{summary['criterion']}. Every other hyperparameter keeps its default (torch's), so "
        "AdamW's decoupled weight decay of 0.01 pulls it towards a point a little off the minimum.",
        "- **Grids**:",
        *grid_lines,
        "- **BFGS** and **L-BFGS-B** are scipy's, as references: no learning rate; their steps "
        "are iterations, each with a line search of several function evaluations.",
        f"- **Wall time**: the chosen run alone, compilation excluded "
        f"({environment['system']} {environment['machine']}, numba {environment['numba']}).",
        "- **stopped**: \"gtol met\" means the gradient vanished, at a minimum that may be a "
        "local one (the final f - f* tells); \"diverged\": f or its gradient became NaN or "
        "infinite, and the numbers are those of the last finite iterate.",
        "- f - f* below 0 by rounding counts as 0.",
        "- A step count of 1 is a coincidence of the start, not magic: the first step of the "
        "sign-like methods (Adam and its kin, RMSprop, Adagrad) moves every coordinate by about "
        "the same amount, which from x0 = (1, 1) (quadratic) or (-1, -1) (three_hump_camel) can "
        "land exactly on the minimum at 0.",
        "",
        f"## Steps to first reach f - f* < {target}",
        "",
        "\"-\": not reached within the budget. A run may get there and leave again (see the "
        "final f - f* below).",
        "",
    ]
    lines += markdown_table(
        ["method", *functions],
        ([method, *(format_steps(results[name][method]["steps_to_target"])
                    for name in functions)] for method in methods),
        align="l" + "r" * len(functions))
    lines += ["", "## All results", ""]
    lines += markdown_table(
        ["function", "method", "lr", "final f - f*", "distance to nearest minimum",
         f"first step with f - f* < {target}", "wall time (ms)", "stopped"],
        ([name, method, format_lr(r["lr"]), format_gap(r["final_gap"]),
          format_gap(r["distance"]), format_steps(r["steps_to_target"]),
          format_ms(r["wall_time_ms"]), r["stopped"]]
         for name in functions for method in methods for r in [results[name][method]]),
        align="llrrrrrl")
    return "\n".join(lines) + "\n"


# Long dashes, thicker: unlike any of the methods' (colour, line style) pairs, black included.
_REFERENCE_STYLES = {"BFGS": dict(color="0.15", linestyle=(0, (9, 3)), linewidth=2.0),
                     "L-BFGS-B": dict(color="0.55", linestyle=(0, (9, 2, 2, 2)), linewidth=2.0)}


def _styles(methods):
    """A distinct (colour, line style) pair per method (adamnb.plot's colour-blind-safe palette,
    then the next line style), the references in black and grey."""
    styles = {method: dict(color=style["color"], linestyle=style["linestyle"], linewidth=1.2)
              for method, style in plot.series_styles(
                  [m for m in methods if m not in REFERENCES]).items()}
    styles.update(_REFERENCE_STYLES)
    return styles


def figure_cells(best, functions, methods, quick):
    """One sweep cell per figure, holding the data it draws (figures render in the workers)."""
    cells = [{"figure": "convergence", "file": "convergence.png", "quick": quick,
              "functions": list(functions), "methods": list(methods),
              "histories": {name: {method: best[name, method].fun_history for method in methods}
                            for name in functions}}]
    cells += [{"figure": "trajectories", "file": f"trajectories_{name}.png", "quick": quick,
               "function": name, "methods": list(methods),
               "runs": {method: {"path": best[name, method].path, "lr": best[name, method].lr,
                                 "final_gap": best[name, method].final_gap}
                        for method in methods}}
              for name in functions]
    return cells


def draw_figure(cell):
    """Render one figure cell; the record ``{"png": bytes}`` (the main process writes the file,
    so that no worker ever leaves a file half-written in the output folder)."""
    if cell["figure"] == "convergence":
        figure = convergence_figure(cell["histories"], cell["functions"], cell["methods"],
                                    cell["quick"])
        options = {}
    else:
        figure = trajectories_figure(cell["function"], cell["runs"], cell["methods"],
                                     cell["quick"])
        # dpi 90 keeps the busiest contour (Rastrigin's egg box) under 300 KB.
        options = {"dpi": 90}
    with tempfile.TemporaryDirectory(prefix="adamnb-figure-") as folder:
        path = plot.save_figure(figure, Path(folder) / cell["file"], palette=True, **options)
        return {"png": path.read_bytes()}


def convergence_figure(histories, functions, methods, quick=False):
    """One panel per function, f - f* against the step for every method at its chosen rate.

    ``histories[function][method]`` is the f history of the chosen run.
    """
    styles = _styles(methods)
    figure, axes = plot.panel_grid(len(functions) + 1, ncols=min(4, len(functions) + 1),
                                   panel_size=(3.6, 2.8))
    for ax, name in zip(axes, functions):
        runs = {method: histories[name][method] for method in methods}
        plot.plot_convergence(runs, fmin=FUNCTIONS[name].fmin, ax=ax, styles=styles,
                              target=TARGET_GAP, legend=False, title=name,
                              xlabel="step (BFGS: iteration), log scale", ylabel="f - f*")
        # Most runs that converge do so in the first few hundred steps, a few need thousands: a
        # log step axis (linear from 0 to 1) shows both.
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(0, max(len(history) for history in runs.values()))
        ax.tick_params(labelsize="small")
        # A run that blew up would stretch the axis over a hundred decades; cut it off above.
        start_gap = max(runs["adam"][0] - FUNCTIONS[name].fmin, 1.0)
        ax.set_ylim(plot.DEFAULT_FLOOR / 3, start_gap * 1e3)
    legend_ax = axes[len(functions)]
    legend_ax.set_axis_off()
    legend_ax.legend(*axes[0].get_legend_handles_labels(), loc="center", fontsize="small",
                     ncols=2, title=f"method (dotted: f - f* = {TARGET_GAP:g})",
                     title_fontsize="small")
    figure.suptitle(f"Convergence from the standard start, each method at its chosen learning "
                    f"rate (f - f* below {plot.DEFAULT_FLOOR:g} drawn at {plot.DEFAULT_FLOOR:g})"
                    f"{quick_note(quick)}", fontsize="medium")
    return figure


def trajectories_figure(name, runs, methods, quick=False):
    """The paths of every method on one function, one panel each, over its log contour.

    ``runs[method]`` holds the chosen run's ``path``, ``lr`` and ``final_gap``.
    """
    tf = FUNCTIONS[name]
    titles = {}
    for method in methods:
        rate = "" if runs[method]["lr"] is None else f", lr {format_lr(runs[method]['lr'])}"
        titles[method] = f"{method}{rate}\nf - f* = {runs[method]['final_gap']:.1e}"
    styles = _styles(methods)
    return plot.plot_trajectories(
        tf.fun, {method: runs[method]["path"] for method in methods}, minimizers=tf.minimizers,
        fmin=tf.fmin, domain=tf.domain, titles=titles,
        colors={method: style["color"] for method, style in styles.items()}, ncols=4,
        panel_size=(3.0, 2.8), resolution=160, levels=12,
        suptitle=f"{name} from x0 = ({tf.x0[0]:g}, {tf.x0[1]:g}): contours of f - f* on "
                 f"log-spaced levels{quick_note(quick)}")


def main(argv=None):
    """Command-line entry point: ``adamnb experiment test-functions [--quick] [--out DIR]
    [--workers N | --scheduler ADDRESS]``."""
    parser = experiment_parser(
        NAME, "Every adamnb method on every classic 2-D test function, each at the best learning "
              "rate of a small grid, with scipy's BFGS and L-BFGS-B as references. Writes "
              "table.md, summary.json, convergence.png and trajectories_*.png.",
        f"CI version: {', '.join(QUICK_FUNCTIONS)} only, {QUICK_BUDGET} steps, three rates per "
        "method", FOLDER, plots_help="write the table and summary.json only")
    args = parse_arguments(parser, argv)
    summary = run(args.out, quick=args.quick, plots=args.plots, workers=args.workers,
                  scheduler=args.scheduler)
    print(table(summary))
    print(f"Wrote {args.out} in {summary['total_time_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
