"""Multi-start search at scale: 10-D Rastrigin from 100,000 random starts, spread over workers.

Rastrigin's function :math:`f(x) = 10 n + \\sum_i (x_i^2 - 10 \\cos 2\\pi x_i)` on
:math:`[-5.12, 5.12]^n` has a local minimum near every integer point, about :math:`10^n` of them
in the box, and one global minimum, :math:`f(0) = 0`. A local method such as Adam ends in the
basin it starts in (or a neighbour), so a multi-start search is a sample of the basins: its best
end point is the search's answer, and the spread of the end points tells how hard the problem is.

The starts are drawn uniformly from the box with one seed (all of them at once, so a start does
not depend on how the starts are cut into chunks). The chunks are the cells of a sweep
(:mod:`adamnb.sweep`): each runs :func:`adamnb.minimize_batch` on its starts, on one worker
process per core by default or on a Dask cluster (``--scheduler``). Every start's result equals,
bit for bit, its own single-start ``adamnb.minimize`` run (minimize_batch's promise), so the
summary does not depend on the chunk size, the executor or the order the chunks finish in.

Outputs, under ``./results/multistart/`` (``.../quick/`` with ``--quick``; or ``--out DIR``):
``summary.json`` (the best minimum found, where, and the distribution of the final f and of how
many coordinates ended away from 0) and ``multistart.png``.

Run: ``adamnb experiment multistart [--starts N] [--dim N] [--quick] [--out DIR] [--workers N |
--scheduler ADDRESS]``.
"""

import sys
import time

import numpy as np
from matplotlib.figure import Figure

import adamnb
from adamnb import plot
from adamnb import sweep as sweeps
from adamnb.experiments import (conclude, default_out, experiment_parser, machine,
                                parse_arguments, positive_int, quick_note, report_run,
                                run_cells)
from adamnb.problems.functions import get

NAME = "multistart"
FOLDER = "multistart"
FUNCTION, DIM, SEED = "rastrigin", 10, 0
STARTS, QUICK_STARTS = 100_000, 4_000
#: Starts per cell: large enough that a cell's compiled loop outweighs the sweep's overhead.
CHUNK = 10_000
METHOD = "adam"
OPTIONS = {"lr": 0.02, "maxiter": 2000}
QUICK_OPTIONS = {"lr": 0.02, "maxiter": 500}
#: An end point with f - f* below this found the global minimum.
TARGET_GAP = 1e-6


def draw_starts(seed, total, dim, domain):
    """All ``total`` starts, uniform on ``domain`` in each of ``dim`` coordinates, shape
    ``(total, dim)``: a chunk takes its rows, so no start depends on the chunking."""
    return np.random.default_rng(seed).uniform(*domain, size=(total, dim))


def run_chunk(cell):
    """One sweep cell: ``minimize_batch`` on rows ``start:stop`` of the starts.

    The record holds every start's final f and number of coordinates away from 0 (``|x_i| > 0.5``,
    outside the global minimum's basin in that coordinate), and the chunk's best end point.
    """
    tf = get(cell["function"], n=cell["dim"])
    starts = draw_starts(cell["seed"], cell["total"], cell["dim"], tf.domain)
    result = adamnb.minimize_batch(tf.value_and_grad, starts[cell["start"]:cell["stop"]],
                                   jac=True, method=cell["method"], options=cell["options"])
    best = int(result.best)
    return {"fun": result.fun, "status": result.status,
            "away": (np.abs(result.x) > 0.5).sum(axis=1).astype(np.int64),
            "best_index": cell["start"] + best, "best_fun": float(result.fun[best]),
            "best_x": result.x[best]}


def run(out=None, quick=False, plots=True, starts=None, dim=DIM, workers=None, scheduler=None):
    """Run the search; write ``summary.json`` (and ``multistart.png``) under ``out``; the summary.

    Parameters
    ----------
    out : path, optional
        Default ``./results/multistart`` (``.../quick`` for a quick run).
    quick : bool
        :data:`QUICK_STARTS` starts and :data:`QUICK_OPTIONS`, for CI.
    starts : int, optional
        Number of starts (default :data:`STARTS`, or :data:`QUICK_STARTS` when quick).
    dim : int
        Rastrigin's dimension.
    workers, scheduler
        As in :func:`adamnb.sweep.sweep`.

    Returns
    -------
    dict
        The contents of ``summary.json``: among them ``best`` (the lowest minimum found, its
        point and start), ``found_global`` (how many starts ended within ``target_gap`` of the
        global minimum), ``status_counts`` and ``final_gap_quantiles``.
    """
    started = time.perf_counter()
    out = default_out(FOLDER, quick, out)
    total = starts if starts is not None else (QUICK_STARTS if quick else STARTS)
    options = QUICK_OPTIONS if quick else OPTIONS
    tf = get(FUNCTION, n=dim)
    chunk = min(CHUNK, -(-total // 4))  # at least 4 cells, so that small runs spread too
    cells = [{"function": FUNCTION, "dim": dim, "seed": SEED, "total": total, "start": start,
              "stop": stop, "method": METHOD, "options": options}
             for start, stop in sweeps.chunks(total, chunk)]
    with sweeps.executor(workers, scheduler) as executor:
        records = run_cells(run_chunk, cells, out=out, workers=executor, desc=NAME)
        where = executor.describe()
    fun = np.concatenate([record["fun"] for record in records])
    status = np.concatenate([record["status"] for record in records])
    away = np.concatenate([record["away"] for record in records])
    usable = status != 3
    best = min((record for record in records), key=lambda record: record["best_fun"])
    gaps = fun[usable] - tf.fmin
    quantiles = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    summary = {
        "experiment": NAME, "quick": quick, "machine": machine(), "executor": where,
        "function": FUNCTION, "dim": dim, "domain": list(tf.domain), "fmin": tf.fmin,
        "starts": total, "seed": SEED, "chunk": chunk, "cells": len(cells),
        "method": METHOD, "options": options, "target_gap": TARGET_GAP,
        "best": {"fun": best["best_fun"], "gap": best["best_fun"] - tf.fmin,
                 "x": best["best_x"], "start_index": best["best_index"],
                 "distance_to_global": tf.nearest_minimizer_distance(best["best_x"])},
        "found_global": int((gaps < TARGET_GAP).sum()),
        "status_counts": {str(code): int(count)
                          for code, count in zip(*np.unique(status, return_counts=True))},
        "final_gap_quantiles": {f"{q:g}": float(np.quantile(gaps, q)) for q in quantiles},
        "coordinates_away_from_0": np.bincount(away, minlength=dim + 1).tolist(),
    }
    if plots:
        save_plot(gaps, away, summary, out / "multistart.png")
    return conclude(out, summary, started)


def save_plot(gaps, away, summary, path):
    """Two panels: the final f - f* of every start (histogram) and how many of its coordinates
    ended away from 0."""
    figure = Figure(figsize=(10.0, 3.8), layout="constrained")
    values_ax, away_ax = figure.subplots(1, 2)
    values_ax.hist(gaps, bins=60, color="tab:blue")
    values_ax.axvline(summary["best"]["gap"], color="tab:red", linestyle="--",
                      label=f"best: {summary['best']['gap']:.3g}")
    values_ax.set_xlabel("final f - f*")
    values_ax.set_ylabel("starts")
    values_ax.set_title("Where the starts end: f - f*", fontsize="medium")
    values_ax.legend()
    dim = summary["dim"]
    away_ax.bar(np.arange(dim + 1), np.bincount(away, minlength=dim + 1), color="tab:orange")
    away_ax.set_xticks(np.arange(dim + 1))
    away_ax.set_xlabel("coordinates with |x_i| > 0.5 at the end")
    away_ax.set_ylabel("starts")
    away_ax.set_title("Coordinates outside the global minimum's basin", fontsize="medium")
    for ax in (values_ax, away_ax):
        ax.grid(True, alpha=0.3)
    figure.suptitle(f"{summary['starts']:,} starts of {summary['method']} "
                    f"(lr {summary['options']['lr']:g}, {summary['options']['maxiter']} steps) on "
                    f"{dim}-D Rastrigin, uniform on [{summary['domain'][0]:g}, "
                    f"{summary['domain'][1]:g}]^{dim}{quick_note(summary['quick'])}",
                    fontsize="medium")
    plot.save_figure(figure, path, palette=True)


def main(argv=None):
    """Command-line entry point: ``adamnb experiment multistart [--starts N] [--dim N]
    [--quick] [--out DIR] [--workers N | --scheduler ADDRESS]``."""
    parser = experiment_parser(
        NAME, f"Multi-start search: {STARTS:,} random starts of Adam on {DIM}-D Rastrigin, in "
              f"chunks of {CHUNK:,} (adamnb.minimize_batch) spread over the workers; the best "
              "minimum found and the distribution of the end points. Writes summary.json and "
              "multistart.png.",
        f"{QUICK_STARTS:,} starts, {QUICK_OPTIONS['maxiter']} steps", FOLDER)
    parser.add_argument("--starts", type=positive_int, default=None,
                        help=f"number of starts (default {STARTS:,}; {QUICK_STARTS:,} with "
                             "--quick)")
    parser.add_argument("--dim", type=positive_int, default=DIM, help=f"dimension (default {DIM})")
    args = parse_arguments(parser, argv)
    return report_run(args, run, report, starts=args.starts, dim=args.dim)


def report(summary):
    """The results in words (what the command prints)."""
    best = summary["best"]
    return "\n".join((
        f"{summary['starts']:,} starts of {summary['method']} on {summary['dim']}-D "
        f"{summary['function']} ({summary['executor']}, {summary['cells']} chunks):",
        f"  best f - f* = {best['gap']:.6g} at distance {best['distance_to_global']:.3g} from "
        f"the global minimum (start {best['start_index']}); {summary['found_global']} starts "
        f"reached f - f* < {summary['target_gap']:g}",
        "  final f - f* quantiles: " + ", ".join(
            f"{q}: {v:.3g}" for q, v in summary["final_gap_quantiles"].items()),
        "  coordinates away from 0 at the end (0..n): "
        + " ".join(map(str, summary["coordinates_away_from_0"]))))


if __name__ == "__main__":
    sys.exit(main())
