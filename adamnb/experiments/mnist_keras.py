"""The optimizer comparison of a well-known Keras MNIST article, rerun with a NumPy MLP.

The article trains one Keras model on MNIST for 10 epochs at batch size 64 with each optimizer at
Keras's default settings and reports, after the 10th epoch, the validation accuracy, validation
loss and total training time:

=========  ==========  ==========  =====
optimizer  val. acc.   val. loss   time
=========  ==========  ==========  =====
Adam       0.9893      0.0351      625 s
RMSprop    0.9887      0.0348      609 s
SGD        0.9679      0.1050      528 s
=========  ==========  ==========  =====

(Adadelta and Adagrad also ran there.) Here the model is Keras's own ``mnist_mlp`` example:
784-512-512-10, ReLU, dropout 0.2 after each hidden layer, Glorot-uniform weights and zero
biases, softmax cross-entropy; the 10,000 test images serve as the validation set, as in Keras's
examples. Each optimizer runs with Keras's current (TF 2 / Keras 3) defaults, mapped to adamnb's
torch-style options in :data:`KERAS_DEFAULTS`. Keras adds epsilon to :math:`\\sqrt{v_t}` before
the bias correction of the step size (its "epsilon hat"), torch and adamnb after; at
:math:`\\epsilon = 10^{-7}` the difference is below the noise of a run. The article's times come
from its own (unstated, likely GPU-less laptop) machine and a convolutional Keras model, so only the
ordering of the times is comparable, not their values.

Outputs under ``./results/mnist_keras/`` (``.../quick/`` with ``--quick``; or ``--out DIR``):
``table.md``, ``summary.json`` (with per-epoch histories), ``accuracy.png`` and ``loss.png``. Each
optimizer's training is one cell of a sweep (:mod:`adamnb.sweep`).

Run: ``adamnb experiment mnist-keras [--quick] [--epochs N] [--data DIR] [--out DIR] [--workers N
| --scheduler ADDRESS]``.
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

NAME = "mnist-keras"
FOLDER = "mnist_keras"
SIZES, DROPOUT, BATCH, EPOCHS, QUICK_EPOCHS = (784, 512, 512, 10), 0.2, 64, 10, 2
SEED = 0

#: Keras's default hyperparameters of each optimizer, in adamnb's (torch's) option names.
KERAS_DEFAULTS = {
    "Adam": (adamnb.Adam, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7}),
    "RMSprop": (adamnb.RMSprop, {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7}),
    "SGD": (adamnb.SGD, {"lr": 1e-2, "momentum": 0.0}),
    "Adadelta": (adamnb.Adadelta, {"lr": 1e-3, "rho": 0.95, "eps": 1e-7}),
    "Adagrad": (adamnb.Adagrad, {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7}),
}

#: The article's figures after 10 epochs: validation accuracy, validation loss, seconds.
ARTICLE = {"Adam": (0.9893, 0.0351, 625), "RMSprop": (0.9887, 0.0348, 609),
           "SGD": (0.9679, 0.1050, 528)}


def train_cell(cell):
    """One sweep cell ``{"optimizer", "epochs", "quick", "data"}``: the run's history summary."""
    X, y, X_test, y_test = load(cell["data"], cell["quick"])
    optimizer_class, options = KERAS_DEFAULTS[cell["optimizer"]]
    model = MLP(SIZES, dropout=DROPOUT, seed=SEED)
    params = model.init(SEED)
    optimizer = optimizer_class(**options, backend="cpu")
    with blas_threads():
        history = train(model, params, optimizer, X, y, epochs=cell["epochs"],
                        batch_size=BATCH, X_test=X_test, y_test=y_test, seed=SEED,
                        progress=bar())
    return {"options": options, **history_summary(history)}


def run(out=None, quick=False, plots=True, epochs=None, data_dir=None, workers=None,
        scheduler=None):
    """Train the MLP with each optimizer; write the table, summary and plots; the summary.

    ``workers`` and ``scheduler`` as in :func:`adamnb.sweep.sweep`.
    """
    started = time.perf_counter()
    out = Path(out) if out is not None else default_out(FOLDER, quick)
    epochs = epochs if epochs is not None else (QUICK_EPOCHS if quick else EPOCHS)
    data = None if data_dir is None else str(data_dir)
    _, y, _, y_test = load(data, quick)  # here first: a data problem shows before any run
    cells = [{"optimizer": label, "epochs": epochs, "quick": quick, "data": data}
             for label in KERAS_DEFAULTS]
    records = run_cells(train_cell, cells, out=out, workers=workers, scheduler=scheduler,
                        desc=NAME)
    results = {cell["optimizer"]: record for cell, record in zip(cells, records)}
    for label, result in results.items():
        print(f"  {label:9s} val. accuracy {result['final_test_accuracy']:.4f}  val. loss "
              f"{result['final_test_loss']:.4f}  {result['train_seconds']:.1f} s", flush=True)
    summary = {
        "experiment": NAME, "quick": quick, "machine": machine(),
        "model": f"MLP {'-'.join(map(str, SIZES))}, ReLU, dropout {DROPOUT}, Glorot uniform",
        "batch_size": BATCH, "epochs": epochs, "train_rows": len(y), "validation_rows": len(y_test),
        "article": {k: dict(zip(("val_accuracy", "val_loss", "seconds"), v))
                    for k, v in ARTICLE.items()},
        "results": results,
    }
    write_text(out / "table.md", table(summary))
    if plots:
        curves = {label: result["history"] for label, result in results.items()}
        title = f"NumPy MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, Keras defaults"
        plot_curves(curves, out / "accuracy.png", field="test_accuracy",
                    ylabel="validation (test) accuracy", title=title, quick=quick)
        plot_curves(curves, out / "loss.png", field="test_loss", log=True,
                    ylabel="validation (test) loss", title=title, quick=quick)
    summary["time_s"] = time.perf_counter() - started
    write_json(out / "summary.json", summary)
    finish(out)
    return summary


def table(summary):
    lines = [f"# Keras MNIST optimizer comparison, rerun with adamnb ({summary['epochs']} epochs, "
             f"batch {summary['batch_size']}){quick_note(summary['quick'])}", "",
             f"Model: {summary['model']}; {summary['train_rows']} training and "
             f"{summary['validation_rows']} validation images; machine: {summary['machine']}.",
             "Time is training only (evaluation excluded): the sum over the epochs, and the median "
             "epoch (steadier on a shared machine).", "",
             "| optimizer | Keras defaults | val. accuracy | val. loss | time (s) | median epoch (s) "
             "| article: val. accuracy | article: val. loss | article: time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, result in summary["results"].items():
        options = ", ".join(f"{k}={v:g}" for k, v in result["options"].items())
        article = summary["article"].get(label)
        theirs = (f"{article['val_accuracy']:.4f} | {article['val_loss']:.4f} | "
                  f"{article['seconds']}" if article else "- | - | -")
        lines.append(f"| {label} | {options} | {result['final_test_accuracy']:.4f} | "
                     f"{result['final_test_loss']:.4f} | {result['train_seconds']:.1f} | "
                     f"{statistics.median(result['history']['seconds']):.2f} | {theirs} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = experiment_parser(
        NAME, "The Keras MNIST optimizer comparison (10 epochs, batch 64, Keras's default "
              "hyperparameters) rerun with a NumPy MLP; writes table.md, summary.json, "
              "accuracy.png and loss.png.",
        f"{QUICK_EPOCHS} epochs on a subset of MNIST, for CI", FOLDER)
    return run_and_report(parse_arguments(add_options(parser, EPOCHS), argv), run, table)


if __name__ == "__main__":
    sys.exit(main())
