"""Muon for the hidden layers, AdamW for the rest, against AdamW alone: an MLP on MNIST.

torch recommends Muon (Jordan et al., 2024; ``torch.optim.Muon``) for the 2-D weights of a
network and AdamW for everything else. Here the MLP 784-512-512-10 (ReLU, no dropout, float32)
is trained on MNIST with minibatches of 128 for :data:`EPOCHS` epochs by

* **AdamW**: ``adamnb.AdamW(model.param_groups(), lr=alpha, weight_decay=0.01)``, the biases
  in a group without weight decay (:meth:`adamnb.nn.Sequential.param_groups`);
* **Muon + AdamW**: ``adamnb.Muon(model.param_groups(lr=1e-3), lr=alpha, weight_decay=0.01)``:
  Muon (momentum 0.95, Nesterov, 5 Newton-Schulz steps, torch's defaults) updates the three
  weight matrices, seen with torch's ``nn.Linear`` shapes; the bias group runs AdamW (lr
  ``1e-3``, no weight decay), as torch's recommendation goes.

Each at a few step sizes :math:`\\alpha` (:data:`METHODS`); the plots show, for each method, the
one with the lowest final training cost (the mean loss over the epoch's minibatches), and the
table every run with its test accuracy and its training time. Same initialisation (seed 0) and
minibatch order for every run.

What it costs: Muon's Newton-Schulz iterations are matrix products of the weight matrices' size,
five per step, computed with NumPy's BLAS on the CPU (here on one thread per run) or in the GPU's
kernels with ``--device cuda``: on a CPU a Muon step costs several AdamW steps; the table's times
say how many on the machine named.

Outputs under ``./results/muon/`` (``.../quick/`` with ``--quick``; or ``--out DIR``):
``loss.png`` (training cost per epoch), ``accuracy.png`` (test accuracy per epoch), ``table.md``
and ``summary.json`` (per-epoch histories of every run). Every (method, alpha) run is one cell
of a sweep (:mod:`adamnb.sweep`).

Run: ``adamnb experiment muon [--quick] [--epochs N] [--data DIR] [--out DIR] [--device cpu|cuda]
[--workers N | --scheduler ADDRESS]``.
"""

import sys
import time

import adamnb
from adamnb.experiments import (conclude, default_out, experiment_parser, machine,
                                parse_arguments, run_cells)
from adamnb.experiments._mnist import (add_device_option, add_options, alpha_table,
                                       blas_threads, check_device, history_summary, load,
                                       lowest_cost_alpha, plot_curves, run_and_report, train_mlp)
from adamnb.nn import MLP

NAME = "muon"
FOLDER = "muon"
#: What ``adamnb experiment muon --help`` says the experiment does.
DESCRIPTION = ("Muon for the weight matrices with AdamW for the biases, against AdamW alone: the "
               "MLP 784-512-512-10 on MNIST; writes loss.png, accuracy.png, table.md and "
               "summary.json.")
SIZES, BATCH, EPOCHS, QUICK_EPOCHS, SEED = (784, 512, 512, 10), 128, 3, 1, 0
WEIGHT_DECAY, BIAS_LR = 0.01, 1e-3

#: method -> (optimizer class name, grid of alpha).
METHODS = {
    "AdamW": ("AdamW", (3e-4, 1e-3, 3e-3)),
    "Muon + AdamW": ("Muon", (0.003, 0.01, 0.03)),
}

#: table.md's title and the paragraph under it (templates filled from summary.json's keys).
TITLE = "Muon + AdamW against AdamW, {model}, {epochs} epochs"
NOTES = ("{train_rows} training / {test_rows} test images, batch {batch_size}, weight decay "
         "{weight_decay:g} on the weights (none on the biases; under Muon the biases run AdamW at "
         "lr {bias_group[lr]:g}); machine: {machine}; device {device}. Bold: the alpha plotted "
         "(lowest final training cost). Seconds per epoch: training only, one BLAS thread per "
         "run, two runs side by side.")


def make_optimizer(label, alpha, model, device="cpu"):
    """The run's optimizer: ``label``'s class on ``model``'s parameter groups (module notes),
    for parameters on ``device`` ("cpu" or "cuda")."""
    if METHODS[label][0] == "Muon":
        return adamnb.Muon(model.param_groups(lr=BIAS_LR), lr=alpha,
                           weight_decay=WEIGHT_DECAY, backend=device)
    return adamnb.AdamW(model.param_groups(), lr=alpha, weight_decay=WEIGHT_DECAY,
                        backend=device)


def train_cell(cell):
    """One sweep cell ``{"method", "alpha", "epochs", "quick", "data", "device"}``: the history
    summary."""
    device = cell.get("device", "cpu")
    model = MLP(SIZES)
    optimizer = make_optimizer(cell["method"], cell["alpha"], model, device)
    with blas_threads():
        history = train_mlp(model, model.init(SEED), optimizer,
                            load(cell["data"], cell["quick"]), cell["epochs"], BATCH, device, SEED)
    return history_summary(history)


def run(out=None, quick=False, plots=True, epochs=None, data_dir=None, device="cpu",
        workers=None, scheduler=None):
    """Both methods at each of their step sizes; writes table, summary and plots; returns the summary.

    ``workers`` and ``scheduler`` as in :func:`adamnb.sweep.sweep`; on ``device="cuda"`` the
    default is this process.
    """
    started = time.perf_counter()
    out = default_out(FOLDER, quick, out)
    epochs = epochs if epochs is not None else (QUICK_EPOCHS if quick else EPOCHS)
    if device == "cuda" and workers is None and scheduler is None:
        workers = 1
    data = None if data_dir is None else str(data_dir)
    _, y, _, y_test = load(data, quick)  # here first: a data problem shows before any run
    # Muon's runs first: they take the longest, so the short ones fill in beside them.
    cells = [{"method": label, "alpha": alpha, "epochs": epochs, "quick": quick, "data": data,
              "device": device}
             for label, (_, grid) in reversed(METHODS.items()) for alpha in grid]
    records = run_cells(train_cell, cells, out=out, workers=workers, scheduler=scheduler,
                        desc=NAME)
    runs, best, curves = {label: {} for label in METHODS}, {}, {}
    for cell, record in zip(cells, records):
        runs[cell["method"]][cell["alpha"]] = record
        print(f"  {cell['method']:13s} alpha {cell['alpha']:<6g} training cost "
              f"{record['final_train_loss']:.4f}  test accuracy "
              f"{record['final_test_accuracy']:.4f}", flush=True)
    for label, by_alpha in runs.items():
        alpha = lowest_cost_alpha(by_alpha)
        best[label] = alpha
        curves[f"{label} (alpha {alpha:g})"] = by_alpha[alpha]["history"]
    summary = {
        "experiment": NAME, "quick": quick, "machine": machine(), "device": device,
        "model": "MLP " + "-".join(map(str, SIZES)) + " (ReLU, no dropout, float32)",
        "batch_size": BATCH, "epochs": epochs, "train_rows": len(y), "test_rows": len(y_test),
        "weight_decay": WEIGHT_DECAY, "bias_group": {"method": "adamw", "lr": BIAS_LR,
                                                     "weight_decay": 0.0},
        "methods": {label: {"class": cls, "grid": list(grid)}
                    for label, (cls, grid) in METHODS.items()},
        "best_alpha": best,
        "runs": {label: {f"{a:g}": r for a, r in by_alpha.items()}
                 for label, by_alpha in runs.items()},
    }
    if plots:
        title = f"MLP {'-'.join(map(str, SIZES))} on MNIST, batch {BATCH}"
        plot_curves(curves, out / "loss.png", title=title + ": training cost", log=True,
                    quick=quick, marker="o")
        plot_curves(curves, out / "accuracy.png", title=title + ": test accuracy",
                    ylabel="test accuracy", field="test_accuracy", quick=quick, marker="o")
    return conclude(out, summary, started, table)


def table(summary):
    # (a summary written before the device option has no "device": it ran on the CPU)
    return alpha_table({"device": "cpu", **summary}, TITLE, NOTES, "training cost, last epoch", {
        "test accuracy": lambda run: f"{run['final_test_accuracy']:.4f}",
        "best test accuracy (epoch)":
            lambda run: f"{run['best_test_accuracy']:.4f} ({run['best_test_accuracy_epoch']})",
        "seconds per epoch": lambda run: f"{run['train_seconds'] / run['epochs']:.1f}"})


def main(argv=None):
    parser = experiment_parser(NAME, DESCRIPTION,
                               f"{QUICK_EPOCHS} epoch on a subset of MNIST, for CI", FOLDER)
    add_device_option(add_options(parser, EPOCHS))
    args = parse_arguments(parser, argv)
    check_device(parser, args)
    return run_and_report(args, run, table, device=args.device)


if __name__ == "__main__":
    sys.exit(main())
