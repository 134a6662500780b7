"""What the three MNIST experiments share: loading the data, the runs, the plot and the table.

Data
    :func:`adamnb.nn.datasets.load_mnist` finds the files (``--data DIR``, else ``ADAMNB_DATA``, else
    the per-user cache, downloading there when missing). ``--quick`` trains on the first
    :data:`QUICK_TRAIN` training images and evaluates on the first :data:`QUICK_TEST` test images,
    for CI.
"""

import argparse
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from adamnb import plot
from adamnb.nn.datasets import load_mnist

__all__ = ["QUICK_TRAIN", "QUICK_TEST", "add_options", "run_and_report", "load", "plot_curves",
           "history_summary"]

QUICK_TRAIN, QUICK_TEST = 6000, 2000


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_options(parser, default_epochs):
    """``--epochs N`` and ``--data DIR``, the options every MNIST experiment adds."""
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help=f"default {default_epochs}")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of the four MNIST IDX files (default: $ADAMNB_DATA, else the "
                             "per-user cache, downloading there if missing)")
    return parser


def run_and_report(args, run, table, **options):
    """Run the experiment with the parsed command line, print its table; exit status 0."""
    summary = run(args.out, quick=args.quick, plots=args.plots, epochs=args.epochs,
                  data_dir=args.data, **options)
    print(table(summary))
    print(f"Wrote {args.out} in {summary['time_s']:.0f} s")
    return 0


def load(data_dir=None, quick=False):
    """(X_train, y_train, X_test, y_test): all of MNIST, or its quick subset."""
    data = load_mnist(data_dir)
    if not quick:
        return tuple(data)
    return (data.X_train[:QUICK_TRAIN], data.y_train[:QUICK_TRAIN],
            data.X_test[:QUICK_TEST], data.y_test[:QUICK_TEST])


def history_summary(history):
    """The per-epoch lists of a History, plus its final and best test figures."""
    records = history.to_dict()
    accuracies = [a for a in records.get("test_accuracy", []) if a is not None]
    return {
        "epochs": len(history),
        "final_train_loss": history[-1]["train_loss"],
        "final_test_loss": history[-1]["test_loss"],
        "final_test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": max(accuracies) if accuracies else None,
        "best_test_accuracy_epoch": (1 + int(np.argmax(accuracies))) if accuracies else None,
        "train_seconds": history.total_seconds,
        "history": records,
    }


def plot_curves(curves, path, title, ylabel="training cost", field="train_loss", log=False,
                ylim=None):
    """One line per label: ``field`` of its history against epochs."""
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = figure.subplots()
    for label, history in curves.items():
        values = [v if v is not None and math.isfinite(v) else np.nan for v in history[field]]
        ax.plot(history["epoch"], values, label=label, linewidth=1.6)
    if log:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("iterations over the entire dataset (epochs)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    plot.save_figure(figure, path, palette=True)
