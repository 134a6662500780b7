"""Kingma & Ba (2014), Figure 2(a): a dropout MLP on MNIST, five optimizers, each at the step
size a grid search selects.

The paper (section 6.2) trains a multilayer network with two fully connected hidden layers of 1000
ReLU units, dropout regularisation and minibatches of 128, with Adam, AdaGrad, RMSProp, SGD with
Nesterov momentum and AdaDelta, and plots the training cost on a log scale against epochs (up to
200; its curves lie between about 0.01 and 0.1). It states that each method's step size was
searched over a dense grid and the best setting reported. Expected: Adam lowest.

Model: :class:`adamnb.nn.MLP` 784-1000-1000-10, dropout 0.5 on both hidden layers,
Glorot-uniform weights; every run starts from the same weights, minibatch order and dropout masks
(seed 0). The other hyperparameters are fixed (:data:`METHODS`: Adam's paper defaults, RMSProp
with decay 0.9, Nesterov momentum 0.9, AdaDelta with rho 0.95 and eps 1e-6).

Protocol (stated in the table, not tuned toward an ordering):

1. **Grid.** For each method, :data:`GRID_POINTS` step sizes spaced by a factor
   :math:`\\sqrt{10}` (:data:`METHODS` gives the grid); each trains for
   :data:`SELECT_EPOCHS` epochs.
2. **Selection** by the training cost of the last of those epochs (the mean minibatch objective,
   with dropout: the quantity plotted). A run that diverges (non-finite cost) is never selected.
   If the best value lies at an edge of the grid, the grid is extended by one more value on that
   side, and so on (at most :data:`MAX_EXTENSIONS` times per method), so that the chosen value is
   inside the grid.
3. **Training** of the selected settings for :data:`EPOCHS` epochs (``--paper``: the paper's
   200; ``--epochs N`` any number), recording two training costs per epoch: the mean minibatch
   objective with dropout (``train_loss``), and the objective on the whole training set at the
   epoch's end without dropout (``train_cost``).

The paper does not say which training cost its figure shows; both are plotted.

Outputs under ``./results/mnist_mlp/`` (``.../quick/`` with ``--quick``; or ``--out DIR``):
``figure2a.png`` (minibatch cost with dropout, log axis), ``figure2a_no_dropout.png`` (whole
training set, no dropout), ``grid.png`` (selection cost against step size), ``accuracy.png``,
``table.md`` (the protocol, the grid and the final runs) and ``summary.json`` (every run's
per-epoch history). Every run is one cell of a sweep (:mod:`adamnb.sweep`); with ``--device cuda``
they run one after the other in this process (one GPU) unless ``--workers`` says otherwise.

Run: ``adamnb experiment mnist-mlp [--quick] [--epochs N | --paper] [--device cpu|cuda]
[--data DIR] [--out DIR] [--workers N | --scheduler ADDRESS]``.
"""

import math
import statistics
import sys
import time
from pathlib import Path

import adamnb
from adamnb.experiments import (conclude, default_out, experiment_parser, machine, markdown_table,
                                parse_arguments, positive_int, quick_note, run_cells)
from adamnb.experiments._mnist import (add_device_option, add_options, blas_threads,
                                       check_device, history_summary, load, new_axes,
                                       plot_curves, run_and_report, save_axes, train_mlp)
from adamnb.nn import MLP

NAME = "mnist-mlp"
FOLDER = "mnist_mlp"
SIZES, DROPOUT, BATCH, SEED = (784, 1000, 1000, 10), 0.5, 128, 0
EPOCHS, PAPER_EPOCHS, QUICK_EPOCHS = 20, 200, 2
#: Epochs of every grid run; the selection reads the training cost of the last.
SELECT_EPOCHS, QUICK_SELECT_EPOCHS = 3, 1
GRID_POINTS = 6
#: How many times a method's grid may grow by one value at the edge that holds its best.
MAX_EXTENSIONS = 3
def _value(half_decades):
    """10^(half_decades / 2) to 3 significant digits: 1e-3, 3.16e-3, 1e-2, ..."""
    return float(f"{10.0 ** (half_decades / 2):.3g}")


def _half_decades(value):
    return round(2 * math.log10(value))


def _grid(lowest):
    """GRID_POINTS values a factor sqrt(10) apart from ``lowest`` (a power of sqrt(10)) up."""
    start = _half_decades(lowest)
    return [_value(start + k) for k in range(GRID_POINTS)]


#: label -> (optimizer class, fixed options, the step-size grid). Grids span 10^2.5 around the
#: values usual for each method; the search extends them where needed (module notes).
METHODS = {
    "Adam": (adamnb.Adam, {}, _grid(3.16e-5)),
    "AdaGrad": (adamnb.Adagrad, {}, _grid(1e-3)),
    "RMSProp": (adamnb.RMSprop, {"alpha": 0.9}, _grid(1e-5)),
    "SGD Nesterov": (adamnb.SGD, {"momentum": 0.9, "nesterov": True}, _grid(1e-3)),
    "AdaDelta": (adamnb.Adadelta, {"rho": 0.95, "eps": 1e-6}, _grid(3.16e-2)),
}


def train_one(optimizer_class, options, data, epochs, device, evaluate_train):
    model = MLP(SIZES, dropout=DROPOUT, seed=SEED)
    optimizer = optimizer_class(**options, backend=device)
    return train_mlp(model, model.init(SEED), optimizer, data, epochs, BATCH, device, SEED,
                     evaluate_train)


def train_cell(cell):
    """One sweep cell ``{"phase", "method", "lr", "epochs", "device", "quick", "data"}``
    (method: a label of :data:`METHODS`; phase ``"grid"`` or ``"final"``, the final runs also
    recording the no-dropout training cost): the run's history summary."""
    optimizer_class, fixed, _ = METHODS[cell["method"]]
    options = {"lr": cell["lr"], **fixed}
    with blas_threads():
        history = train_one(optimizer_class, options, load(cell["data"], cell["quick"]),
                            cell["epochs"], cell["device"], cell["phase"] == "final")
    return {"options": options, **history_summary(history)}


def _selection_cost(record):
    """The grid run's training cost of its last epoch; inf if it diverged."""
    cost = record["final_train_loss"]
    return cost if cost is not None and math.isfinite(cost) else math.inf


def _next_values(grid, costs):
    """The value to add to a grid whose best cost lies at an edge (None if inside or none)."""
    values = sorted(grid)
    best = min(values, key=lambda lr: (costs[lr], lr))
    if not math.isfinite(costs[best]):
        return None
    if best == values[0]:
        return _value(_half_decades(values[0]) - 1)
    if best == values[-1]:
        return _value(_half_decades(values[-1]) + 1)
    return None


def search(base, select_epochs, run):
    """The grid search of every method: ``{label: {"grid": {lr: record}, "selected": lr,
    "extensions": n}}``, ``run`` being :func:`run_cells` bound to the output folder."""
    grids = {label: list(METHODS[label][2]) for label in METHODS}
    records = {label: {} for label in METHODS}
    extensions = dict.fromkeys(METHODS, 0)
    pending = {label: list(grid) for label, grid in grids.items()}
    while any(pending.values()):
        cells = [{**base, "phase": "grid", "method": label, "lr": lr, "epochs": select_epochs}
                 for label, values in pending.items() for lr in values]
        for cell, record in zip(cells, run(cells)):
            records[cell["method"]][cell["lr"]] = record
        pending = dict.fromkeys(METHODS, ())
        for label in METHODS:
            costs = {lr: _selection_cost(r) for lr, r in records[label].items()}
            extra = _next_values(records[label], costs)
            if extra is not None and extensions[label] < MAX_EXTENSIONS:
                extensions[label] += 1
                pending[label] = [extra]
    result = {}
    for label, runs in records.items():
        costs = {lr: _selection_cost(r) for lr, r in runs.items()}
        selected = min(costs, key=lambda lr: (costs[lr], lr))
        inside = min(costs) < selected < max(costs)
        result[label] = {"grid": dict(sorted(runs.items())), "selected": selected,
                         "selected_inside_grid": inside, "extensions": extensions[label]}
    return result


def run(out=None, quick=False, plots=True, epochs=None, data_dir=None, device="cpu",
        workers=None, scheduler=None, select_epochs=None):
    """Search every method's step size, train the selected settings; write the table, summary
    and plots; return the summary.

    ``workers`` and ``scheduler`` as in :func:`adamnb.sweep.sweep`; on ``device="cuda"`` the
    default is this process.
    """
    started = time.perf_counter()
    out = default_out(FOLDER, quick, out)
    epochs = epochs if epochs is not None else (QUICK_EPOCHS if quick else EPOCHS)
    select_epochs = select_epochs or (QUICK_SELECT_EPOCHS if quick else SELECT_EPOCHS)
    if device == "cuda" and workers is None and scheduler is None:
        workers = 1
    data = None if data_dir is None else str(data_dir)
    _, y, _, y_test = load(data, quick)  # here first: a data problem shows before any run
    base = {"device": device, "quick": quick, "data": data}

    def run_some(cells):
        return run_cells(train_cell, cells, out=out, workers=workers, scheduler=scheduler,
                         desc=NAME)

    grid = search(base, select_epochs, run_some)
    for label, g in grid.items():
        print(f"  {label:13s} selected lr {g['selected']:g} from "
              f"{', '.join(f'{lr:g}' for lr in g['grid'])}", flush=True)
    cells = [{**base, "phase": "final", "method": label, "lr": g["selected"], "epochs": epochs}
             for label, g in grid.items()]
    results = {cell["method"]: record for cell, record in zip(cells, run_some(cells))}
    for label, r in results.items():
        print(f"  {label:13s} training cost {r['final_train_loss']:.4f} (no dropout "
              f"{r['history']['train_cost'][-1]:.4f})  test accuracy "
              f"{r['final_test_accuracy']:.4f}  {r['train_seconds']:.0f} s", flush=True)
    summary = {
        "experiment": NAME, "quick": quick, "device": device, "machine": machine(),
        "model": f"MLP {'-'.join(map(str, SIZES))}, ReLU, dropout {DROPOUT} on hidden layers",
        "batch_size": BATCH, "epochs": epochs, "select_epochs": select_epochs,
        "train_rows": len(y), "test_rows": len(y_test),
        "protocol": protocol_text(select_epochs, epochs),
        "grid": {label: {"selected": g["selected"],
                         "selected_inside_grid": g["selected_inside_grid"],
                         "extensions": g["extensions"],
                         "selection_cost": {f"{lr:g}": _finite(_selection_cost(r))
                                            for lr, r in g["grid"].items()}}
                 for label, g in grid.items()},
        "grid_runs": {label: {f"{lr:g}": r for lr, r in g["grid"].items()}
                      for label, g in grid.items()},
        "results": results,
    }
    return conclude(out, summary, started, table, write_plots if plots else None)


def write_plots(summary, out):
    """``figure2a.png``, ``figure2a_no_dropout.png``, ``accuracy.png`` and ``grid.png`` in
    ``out`` from a summary (as ``summary.json`` holds it)."""
    out, quick = Path(out), summary["quick"]
    curves = {f"{label} (lr {r['options']['lr']:g})": r["history"]
              for label, r in summary["results"].items()}
    title = f"MLP {'-'.join(map(str, SIZES))} with dropout on MNIST, batch {BATCH}"
    plot_curves(curves, out / "figure2a.png", log=True, quick=quick,
                title=title + "\nminibatch training cost (with dropout)")
    plot_curves(curves, out / "figure2a_no_dropout.png", log=True, quick=quick,
                field="train_cost", ylabel="training cost, whole set, no dropout",
                title=title + "\nwhole training set at each epoch's end, no dropout")
    plot_curves(curves, out / "accuracy.png", title=title, field="test_accuracy",
                ylabel="test accuracy, logit axis", logit=True, quick=quick)
    plot_grid(summary, out / "grid.png")


def _finite(value):
    return value if math.isfinite(value) else None


def protocol_text(select_epochs, epochs):
    return (f"each method's step size from a grid of {GRID_POINTS} values a factor sqrt(10) "
            f"apart, extended at an edge that holds the best (at most {MAX_EXTENSIONS} times); "
            f"selected by the minibatch training cost (with dropout) of epoch {select_epochs}; "
            f"the selected settings then trained for {epochs} epochs")


def plot_grid(summary, path):
    """Selection cost against step size, one line per method, the selected value marked."""
    figure, ax = new_axes(legend_outside=True)  # the U-shaped curves fill every corner
    for label, g in summary["grid"].items():
        points = [(float(lr), c) for lr, c in g["selection_cost"].items() if c is not None]
        lrs, costs = zip(*sorted(points))
        (line,) = ax.plot(lrs, costs, marker="o", markersize=4, label=label, linewidth=1.4)
        ax.plot([g["selected"]], [g["selection_cost"][f"{g['selected']:g}"]], marker="*",
                markersize=13, color=line.get_color(), linestyle="none")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step size (lr)")
    ax.set_ylabel(f"training cost after {summary['select_epochs']} epoch"
                  f"{'s' if summary['select_epochs'] > 1 else ''}")
    save_axes(figure, ax, path, "Step-size search (star: selected; diverged runs left out)"
              + quick_note(summary["quick"]), legend_outside=True)


def table(summary):
    lines = [f"# Kingma & Ba (2014) Figure 2(a): dropout MLP, {summary['epochs']} epochs"
             f"{quick_note(summary['quick'])}", "",
             f"{summary['model']}; batch {summary['batch_size']}; {summary['train_rows']} "
             f"training / {summary['test_rows']} test images; device {summary['device']}; "
             f"machine: {summary['machine']}. Time is training only, all epochs.", "",
             f"Protocol: {summary['protocol']}.", "",
             "## Step-size search", "",
             f"Training cost (minibatch mean, with dropout) after {summary['select_epochs']} "
             "epoch(s); **bold**: selected; -: diverged.", ""]
    searched = []
    for label, g in summary["grid"].items():
        cells = []
        for lr, cost in g["selection_cost"].items():
            text = f"{lr}: {'-' if cost is None else f'{cost:.4f}'}"
            cells.append(f"**{text}**" if float(lr) == g["selected"] else text)
        searched.append([label, "; ".join(cells), f"{g['selected']:g}",
                         "yes" if g["selected_inside_grid"] else "no"])
    lines += markdown_table(["method", "lr: cost", "selected", "inside the grid"], searched)
    lines += ["", "## The selected settings", ""]
    lines += markdown_table(
        ["method", "options", "final training cost (minibatch, dropout)",
         "final training cost (whole set, no dropout)", "test accuracy (final)",
         "best test accuracy (epoch)", "time (s)", "median epoch (s)"],
        ([label, ", ".join(f"{k}={v}" for k, v in r["options"].items()),
          f"{r['final_train_loss']:.4f}", f"{r['history']['train_cost'][-1]:.4f}",
          f"{r['final_test_accuracy']:.4f}",
          f"{r['best_test_accuracy']:.4f} ({r['best_test_accuracy_epoch']})",
          f"{r['train_seconds']:.0f}", f"{statistics.median(r['history']['seconds']):.2f}"]
         for label, r in summary["results"].items()))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = experiment_parser(
        NAME, "Kingma & Ba (2014) Figure 2(a): MLP 784-1000-1000-10 with dropout on MNIST, "
              "Adam vs AdaGrad, RMSProp, SGD-Nesterov and AdaDelta, each at the step size a "
              "grid search selects; writes figure2a.png, figure2a_no_dropout.png, grid.png, "
              "accuracy.png, table.md and summary.json.",
        f"{QUICK_SELECT_EPOCHS}-epoch grid and {QUICK_EPOCHS} epochs on a subset of MNIST, "
        "for CI", FOLDER)
    add_options(parser, f"{EPOCHS}, after a {SELECT_EPOCHS}-epoch grid search; about an hour on "
                        "2 cores")
    parser.add_argument("--paper", action="store_true",
                        help=f"the paper's {PAPER_EPOCHS} epochs (instead of --epochs)")
    parser.add_argument("--select-epochs", type=positive_int, default=None, metavar="N",
                        help=f"epochs of each grid run (default {SELECT_EPOCHS})")
    add_device_option(parser)
    args = parse_arguments(parser, argv)
    if args.paper:
        if args.epochs is not None:
            parser.error("--paper sets the epochs; give --paper or --epochs, not both")
        args.epochs = PAPER_EPOCHS
    check_device(parser, args)
    return run_and_report(args, run, table, device=args.device, select_epochs=args.select_epochs)


if __name__ == "__main__":
    sys.exit(main())
