"""Kingma & Ba (2014), Figure 1: L2-regularised logistic regression on MNIST.

The paper (section 6.1) trains multi-class logistic regression on the 784-pixel images with
minibatches of 128 and the step size :math:`\\alpha_t = \\alpha/\\sqrt{t}`, comparing Adam with
SGD with Nesterov momentum and AdaGrad, each with its step size :math:`\\alpha` chosen from a small
grid, and plots the training cost against epochs up to 45. Expected: Adam converges about as fast
as SGD with Nesterov momentum, both below AdaGrad, at a training cost near 0.26-0.28.

Here every run goes through ``adamnb.minimize`` (``adamnb.nn.training.train_minimize``: the
minibatches are ``minimize``'s ``args`` stream, ``lr`` is ``adamnb.optim.schedules.InverseSqrt(alpha)``,
and t counts update steps). For each method the curve shown is the grid value with the lowest
final training cost. The paper does not state its L2 weight; this uses
:math:`\\lambda = 10^{-4}` (objective: mean cross-entropy plus :math:`\\frac{\\lambda}{2}\\lVert
W\\rVert^2`). The training cost is the mean objective over each epoch's minibatches. SGD's
Nesterov momentum is 0.9; Adam's betas are the paper's defaults (0.9, 0.999).

Outputs under ``./results/mnist_logistic/`` (``.../quick/`` with ``--quick``; or ``--out DIR``):
``figure1.png`` (best runs), ``grid.png`` (every run), ``table.md`` and ``summary.json``
(per-epoch histories of every run). Every (method, alpha) run is one cell of a sweep
(:mod:`adamnb.sweep`).

Run: ``adamnb experiment mnist-logistic [--quick] [--epochs N] [--data DIR] [--out DIR]
[--workers N | --scheduler ADDRESS]``.
"""

import sys
import time

from adamnb.experiments import (conclude, default_out, experiment_parser, machine,
                                parse_arguments, run_cells)
from adamnb.experiments._mnist import (add_options, alpha_table, bar, blas_threads,
                                       history_summary, load, lowest_cost_alpha, plot_curves,
                                       run_and_report)
from adamnb.nn import SoftmaxRegression
from adamnb.nn.training import train_minimize
from adamnb.optim.schedules import InverseSqrt

NAME = "mnist-logistic"
FOLDER = "mnist_logistic"
#: What ``adamnb experiment mnist-logistic --help`` says the experiment does.
DESCRIPTION = ("Kingma & Ba (2014) Figure 1: L2-regularised logistic regression on MNIST, Adam vs "
               "SGD-Nesterov vs AdaGrad with step alpha/sqrt(t), alpha from a grid; writes "
               "figure1.png, grid.png, table.md and summary.json.")
L2, BATCH, EPOCHS, QUICK_EPOCHS, SEED = 1e-4, 128, 45, 3, 0

#: method -> (minimize method, fixed options, grid of alpha); the step size is alpha / sqrt(t).
#: Each grid is wide enough that its best value lies inside it (checked on the committed run).
METHODS = {
    "Adam": ("adam", {}, (3e-3, 1e-2, 3e-2, 0.1, 0.3)),
    "SGD Nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}, (0.3, 1.0, 3.0, 10.0, 30.0)),
    "AdaGrad": ("adagrad", {}, (0.03, 0.1, 0.3, 1.0, 3.0)),
}

#: table.md's title and the paragraph under it (templates filled from summary.json's keys).
TITLE = "Kingma & Ba (2014) Figure 1: logistic regression, {epochs} epochs"
NOTES = ("{train_rows} training / {test_rows} test images, batch {batch_size}, L2 {l2:g}, step "
         "size alpha/sqrt(t); machine: {machine}. Bold: the alpha shown in figure1.png (lowest "
         "final training cost).")


def train_cell(cell):
    """One sweep cell ``{"method", "alpha", "epochs", "quick", "data"}`` (method: a label of
    :data:`METHODS`): the run's status, step count and history summary."""
    X, y, X_test, y_test = load(cell["data"], cell["quick"])
    method, fixed, _ = METHODS[cell["method"]]
    model = SoftmaxRegression(l2=L2)
    with blas_threads():
        result, history = train_minimize(
            model, model.init(SEED), method, X, y, epochs=cell["epochs"], batch_size=BATCH,
            options={**fixed, "lr": InverseSqrt(cell["alpha"])}, X_test=X_test,
            y_test=y_test, seed=SEED, progress=bar())
    return {"status": int(result.status), "nit": int(result.nit), **history_summary(history)}


def run(out=None, quick=False, plots=True, epochs=None, data_dir=None, workers=None,
        scheduler=None):
    """Every method at every grid value; writes table, summary and plots; returns the summary.

    ``workers`` and ``scheduler`` as in :func:`adamnb.sweep.sweep`.
    """
    started = time.perf_counter()
    out = default_out(FOLDER, quick, out)
    epochs = epochs if epochs is not None else (QUICK_EPOCHS if quick else EPOCHS)
    data = None if data_dir is None else str(data_dir)
    _, y, _, y_test = load(data, quick)  # here first: a data problem shows before any run
    cells = [{"method": label, "alpha": alpha, "epochs": epochs, "quick": quick, "data": data}
             for label, (_, _, grid) in METHODS.items()
             for alpha in (grid[1:3] if quick else grid)]
    records = run_cells(train_cell, cells, out=out, workers=workers, scheduler=scheduler,
                        desc=NAME)
    runs, best, curves, everything = {label: {} for label in METHODS}, {}, {}, {}
    for cell, record in zip(cells, records):
        label, alpha = cell["method"], cell["alpha"]
        runs[label][alpha] = record
        everything[f"{label}, alpha {alpha:g}"] = record["history"]
        print(f"  {label:13s} alpha {alpha:<6g} training cost {record['final_train_loss']:.4f}"
              f"  test accuracy {record['final_test_accuracy']:.4f}", flush=True)
    for label in METHODS:
        alpha = lowest_cost_alpha(runs[label])
        best[label] = alpha
        curves[f"{label} (alpha {alpha:g}/sqrt(t))"] = everything[f"{label}, alpha {alpha:g}"]
    summary = {
        "experiment": NAME, "quick": quick, "machine": machine(),
        "model": "softmax regression 784-10", "l2": L2, "batch_size": BATCH, "epochs": epochs,
        "train_rows": len(y), "test_rows": len(y_test), "step_size": "alpha / sqrt(t)",
        "methods": {label: {"method": m, "options": fixed, "grid": list(g)}
                    for label, (m, fixed, g) in METHODS.items()},
        "best_alpha": best,
        "runs": {label: {f"{a:g}": r for a, r in by_alpha.items()}
                 for label, by_alpha in runs.items()},
    }
    if plots:
        title = (f"Logistic regression on MNIST (L2 {L2:g}, batch {BATCH}, step alpha/sqrt(t))")
        plot_curves(curves, out / "figure1.png", title=title, ylim=(0.2, 0.7),  # the paper's axis
                    quick=quick)
        plot_curves(everything, out / "grid.png", title=title + ": every grid value", log=True,
                    quick=quick)
    return conclude(out, summary, started, table)


def table(summary):
    return alpha_table(summary, TITLE, NOTES, "final training cost", {
        "test loss": lambda run: f"{run['final_test_loss']:.4f}",
        "test accuracy": lambda run: f"{run['final_test_accuracy']:.4f}",
        "time (s)": lambda run: f"{run['train_seconds']:.2f}"})


def main(argv=None):
    parser = experiment_parser(NAME, DESCRIPTION, f"{QUICK_EPOCHS} epochs, two grid values, a "
                               "subset of MNIST, for CI", FOLDER)
    return run_and_report(parse_arguments(add_options(parser, EPOCHS), argv), run, table)


if __name__ == "__main__":
    sys.exit(main())
