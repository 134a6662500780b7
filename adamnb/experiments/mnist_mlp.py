"""Kingma & Ba (2014), Figure 2(a): a dropout MLP on MNIST, five optimizers.

The paper (section 6.2) trains a multilayer network with two fully connected hidden layers of 1000
ReLU units, dropout regularisation and minibatches of 128, with Adam, AdaGrad, RMSProp, SGD with
Nesterov momentum and AdaDelta, and plots the training cost on a log scale against epochs (up to
200). Expected: Adam lowest.

Here: :class:`adamnb.nn.MLP` 784-1000-1000-10 with dropout 0.5 on both hidden layers,
Glorot-uniform weights, each optimizer trained by the explicit loop (``adamnb.nn.training.train``)
with the same initial weights, minibatch order and dropout masks. The paper picked step sizes from
a grid; a grid search of this network does not fit a 2-core budget, so each method gets a common
setting fixed in advance (:data:`METHODS`, not tuned on these runs). The training cost is the mean
objective over each epoch's minibatches (with dropout), as the paper's plot.

The default run (:data:`EPOCHS` epochs per method) takes about 30 minutes on 2 cores;
``--paper`` runs the paper's 200 epochs (about 2 hours there), ``--epochs N`` any number;
``--device cuda`` trains on a GPU with :mod:`adamnb.nn.cuda_models` (numba.cuda kernels).

Outputs under ``./results/mnist_mlp/`` (``.../quick/`` with ``--quick``; or ``--out DIR``):
``figure2a.png``, ``accuracy.png``, ``table.md`` and ``summary.json`` (per-epoch histories). Each
optimizer's training is one cell of a sweep (:mod:`adamnb.sweep`); with ``--device cuda`` they
run one after the other in this process (one GPU) unless ``--workers`` says otherwise.

Run: ``adamnb experiment mnist-mlp [--quick] [--epochs N | --paper] [--device cpu|cuda]
[--data DIR] [--out DIR] [--workers N | --scheduler ADDRESS]``.
"""

import statistics
import sys
import time
from pathlib import Path

import adamnb
from adamnb.experiments import (
    default_out,
    experiment_parser,
    finish,
    machine,
    parse_arguments,
    quick_note,
    run_cells,
    write_json,
    write_text,
)
from adamnb.experiments._mnist import (
    add_options,
    bar,
    blas_threads,
    history_summary,
    load,
    plot_curves,
    run_and_report,
)
from adamnb.nn import MLP
from adamnb.nn.training import train

NAME = "mnist-mlp"
FOLDER = "mnist_mlp"
SIZES, DROPOUT, BATCH, SEED = (784, 1000, 1000, 10), 0.5, 128, 0
EPOCHS, PAPER_EPOCHS, QUICK_EPOCHS = 70, 200, 2

#: label -> (optimizer class, options), fixed before the runs (see the module notes).
METHODS = {
    "Adam": (adamnb.Adam, {"lr": 1e-3}),
    "AdaGrad": (adamnb.Adagrad, {"lr": 1e-2}),
    "RMSProp": (adamnb.RMSprop, {"lr": 1e-3, "alpha": 0.9}),
    "SGD Nesterov": (adamnb.SGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
    "AdaDelta": (adamnb.Adadelta, {"lr": 1.0, "rho": 0.95, "eps": 1e-6}),
}


def train_one(optimizer_class, options, data, epochs, device):
    X, y, X_test, y_test = data
    model = MLP(SIZES, dropout=DROPOUT, seed=SEED)
    params = model.init(SEED)
    if device == "cuda":
        from adamnb.backends import cuda
        from adamnb.nn import cuda_models as cuda_nn
        optimizer = optimizer_class(**options, backend="cuda")
        return cuda_nn.train_cuda(model, cuda.to_device(params), optimizer, X, y, epochs=epochs,
                                  batch_size=BATCH, X_test=X_test, y_test=y_test, seed=SEED)
    optimizer = optimizer_class(**options, backend="cpu")
    return train(model, params, optimizer, X, y, epochs=epochs, batch_size=BATCH,
                 X_test=X_test, y_test=y_test, seed=SEED, progress=bar())


def train_cell(cell):
    """One sweep cell ``{"method", "epochs", "device", "quick", "data"}`` (method: a label of
    :data:`METHODS`): the run's history summary."""
    optimizer_class, options = METHODS[cell["method"]]
    with blas_threads():
        history = train_one(optimizer_class, options, load(cell["data"], cell["quick"]),
                            cell["epochs"], cell["device"])
    return {"options": options, **history_summary(history)}


def run(out=None, quick=False, plots=True, epochs=None, data_dir=None, device="cpu",
        workers=None, scheduler=None):
    """Train with every method; write the table, summary and plots; return the summary.

    ``workers`` and ``scheduler`` as in :func:`adamnb.sweep.sweep`; on ``device="cuda"`` the
    default is this process.
    """
    started = time.perf_counter()
    out = Path(out) if out is not None else default_out(FOLDER, quick)
    epochs = epochs if epochs is not None else (QUICK_EPOCHS if quick else EPOCHS)
    if device == "cuda" and workers is None and scheduler is None:
        workers = 1
    data = None if data_dir is None else str(data_dir)
    _, y, _, y_test = load(data, quick)  # here first: a data problem shows before any run
    cells = [{"method": label, "epochs": epochs, "device": device, "quick": quick, "data": data}
             for label in METHODS]
    records = run_cells(train_cell, cells, out=out, workers=workers, scheduler=scheduler,
                        desc=NAME)
    results = {cell["method"]: record for cell, record in zip(cells, records)}
    for label, r in results.items():
        print(f"  {label:13s} training cost {r['final_train_loss']:.4f}  test accuracy "
              f"{r['final_test_accuracy']:.4f}  {r['train_seconds']:.0f} s", flush=True)
    summary = {
        "experiment": NAME, "quick": quick, "device": device, "machine": machine(),
        "model": f"MLP {'-'.join(map(str, SIZES))}, ReLU, dropout {DROPOUT} on hidden layers",
        "batch_size": BATCH, "epochs": epochs, "train_rows": len(y),
        "test_rows": len(y_test), "results": results,
    }
    write_text(out / "table.md", table(summary))
    if plots:
        curves = {label: r["history"] for label, r in results.items()}
        title = f"MLP {'-'.join(map(str, SIZES))} with dropout on MNIST, batch {BATCH}"
        plot_curves(curves, out / "figure2a.png", title=title, log=True, quick=quick)
        plot_curves(curves, out / "accuracy.png", title=title, field="test_accuracy",
                    ylabel="test accuracy", ylim=(0.95, 1.0) if not quick else None,
                    quick=quick)
    summary["time_s"] = time.perf_counter() - started
    write_json(out / "summary.json", summary)
    finish(out)
    return summary


def table(summary):
    lines = [f"# Kingma & Ba (2014) Figure 2(a): dropout MLP, {summary['epochs']} epochs"
             f"{quick_note(summary['quick'])}", "",
             f"{summary['model']}; batch {summary['batch_size']}; {summary['train_rows']} "
             f"training / {summary['test_rows']} test images; device {summary['device']}; "
             f"machine: {summary['machine']}. Time is training only, all epochs.", "",
             "| method | options | final training cost | test accuracy (final) | best test "
             "accuracy (epoch) | time (s) | median epoch (s) |", "|---|---|---|---|---|---|---|"]
    for label, r in summary["results"].items():
        options = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        lines.append(f"| {label} | {options} | {r['final_train_loss']:.4f} | "
                     f"{r['final_test_accuracy']:.4f} | {r['best_test_accuracy']:.4f} "
                     f"({r['best_test_accuracy_epoch']}) | {r['train_seconds']:.0f} | "
                     f"{statistics.median(r['history']['seconds']):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = experiment_parser(
        NAME, "Kingma & Ba (2014) Figure 2(a): MLP 784-1000-1000-10 with dropout on MNIST, "
              "Adam vs AdaGrad, RMSProp, SGD-Nesterov and AdaDelta; writes figure2a.png, "
              "accuracy.png, table.md and summary.json.",
        f"{QUICK_EPOCHS} epochs on a subset of MNIST, for CI", FOLDER)
    add_options(parser, f"{EPOCHS}, about 30 minutes on 2 cores")
    parser.add_argument("--paper", action="store_true",
                        help=f"the paper's {PAPER_EPOCHS} epochs (instead of --epochs)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="train on the CPU (default) or a CUDA GPU")
    args = parse_arguments(parser, argv)
    if args.paper:
        if args.epochs is not None:
            parser.error("--paper sets the epochs; give --paper or --epochs, not both")
        args.epochs = PAPER_EPOCHS
    if args.device == "cuda":
        from adamnb.backends import cuda
        if not cuda.is_available():
            parser.error("--device cuda: no CUDA GPU is available (numba.cuda.is_available() is "
                         "False); install the NVIDIA driver and adamnb[cuda]")
    return run_and_report(args, run, table, device=args.device)


if __name__ == "__main__":
    sys.exit(main())
