"""What the MNIST experiments share: loading the data, the runs, the plot and the table.

Data
    :func:`adamnb.nn.datasets.load_mnist` finds the files (``--data DIR``, else ``ADAMNB_DATA``, else
    the per-user cache, downloading there when missing). ``--quick`` trains on the first
    :data:`QUICK_TRAIN` training images and evaluates on the first :data:`QUICK_TEST` test images,
    for CI. The main process loads the data once before the runs start (so that a missing or
    damaged file is reported at once, and a download happens once); each worker process then
    reads the files itself, once (on a Dask cluster, every worker needs the files or the
    download: set ``ADAMNB_DATA`` there).

Threads
    Every run does its matrix products on :data:`BLAS_THREADS` BLAS thread(s), set with
    threadpoolctl, whatever the executor: OpenBLAS's sums depend on how many threads share a
    product, so a fixed count is what gives the same bits in this process, in local worker
    processes and on a Dask cluster (whose workers default to one thread). The runs of an
    experiment go side by side instead, one per core.
"""

import functools
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter
from threadpoolctl import threadpool_limits

from adamnb import plot
from adamnb import sweep as sweeps
from adamnb.experiments import markdown_table, positive_int, quick_note, report_run
from adamnb.nn.datasets import load_mnist
from adamnb.nn.training import train

__all__ = ["QUICK_TRAIN", "QUICK_TEST", "add_options", "add_device_option", "check_device",
           "train_mlp", "run_and_report", "load", "plot_curves", "new_axes", "save_axes",
           "history_summary", "bar", "blas_threads", "BLAS_THREADS", "cost_or_inf",
           "lowest_cost_alpha", "alpha_table"]

QUICK_TRAIN, QUICK_TEST = 6000, 2000
#: Accuracies labelled on a logit axis.
LOGIT_TICKS = (0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
#: Finer ticks for a logit axis that spans little (e.g. 0.96 to 0.99, where the coarse ticks
#: leave one label).
LOGIT_FINE_TICKS = (0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.9925, 0.995, 0.9975)
#: BLAS threads of every run (see the module notes).
BLAS_THREADS = 1


def add_options(parser, default_epochs):
    """``--epochs N`` and ``--data DIR``, the options every MNIST experiment adds."""
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"default {default_epochs}")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of the four MNIST IDX files (default: $ADAMNB_DATA, else the "
                             "per-user cache, downloading there if missing)")
    return parser


def add_device_option(parser):
    """``--device cpu|cuda``, for the experiments that train the MLP on a GPU too."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="train on the CPU (default) or a CUDA GPU")
    return parser


def check_device(parser, args):
    """Stop with a usage error when ``--device cuda`` is asked for and no GPU is available."""
    if args.device == "cuda":
        from adamnb.backends import cuda
        if not cuda.is_available():
            parser.error("--device cuda: no CUDA GPU is available (numba.cuda.is_available() is "
                         "False); install the NVIDIA driver and adamnb[cuda]")


def train_mlp(model, params, optimizer, data, epochs, batch_size, device, seed,
              evaluate_train=False):
    """Train the MLP ``model`` from ``params`` with ``optimizer`` on ``data`` = (X, y, X_test,
    y_test): :func:`adamnb.nn.train` on the CPU, :func:`adamnb.nn.cuda_models.train_cuda` on
    the GPU (``device="cuda"``: the optimizer's state and the parameters on the device); the
    History."""
    X, y, X_test, y_test = data
    if device == "cuda":
        from adamnb.backends import cuda
        from adamnb.nn import cuda_models as cuda_nn
        return cuda_nn.train_cuda(model, cuda.to_device(params), optimizer, X, y, epochs=epochs,
                                  batch_size=batch_size, X_test=X_test, y_test=y_test, seed=seed,
                                  evaluate_train=evaluate_train)
    return train(model, params, optimizer, X, y, epochs=epochs, batch_size=batch_size,
                 X_test=X_test, y_test=y_test, seed=seed, progress=bar(),
                 evaluate_train=evaluate_train)


def run_and_report(args, run, table, **options):
    """Run the experiment with the parsed command line, print its table; exit status 0."""
    return report_run(args, run, table, epochs=args.epochs, data_dir=args.data, **options)


@functools.lru_cache(maxsize=2)
def load(data_dir=None, quick=False):
    """(X_train, y_train, X_test, y_test): all of MNIST, or its quick subset; read once per
    process (``data_dir`` a str or None, as a sweep cell holds it)."""
    data = load_mnist(data_dir)
    if not quick:
        return tuple(data)
    return (data.X_train[:QUICK_TRAIN], data.y_train[:QUICK_TRAIN],
            data.X_test[:QUICK_TEST], data.y_test[:QUICK_TEST])


def blas_threads():
    """A context in which BLAS runs on :data:`BLAS_THREADS` threads (one run's setting)."""
    return threadpool_limits(limits=BLAS_THREADS, user_api="blas")


def bar():
    """The training loops' progress option: their bar in this process, none in a sweep's worker
    (bars of several processes on one terminal would overwrite each other)."""
    return False if sweeps.in_worker() else None


def cost_or_inf(value):
    """A recorded cost for ranking runs: ``value``, or infinity where it is None or NaN (a run
    that diverged ranks last)."""
    return value if value is not None and value == value else math.inf


def lowest_cost_alpha(by_alpha):
    """Of ``{alpha: run record}``, the alpha whose run ends at the lowest training cost (a run
    that diverged ranks last)."""
    return min(by_alpha, key=lambda alpha: cost_or_inf(by_alpha[alpha]["final_train_loss"]))


def alpha_table(summary, title, notes, cost_heading, columns):
    """``table.md`` of a grid over alpha: the heading ``title`` (marked for a quick run), the
    paragraph ``notes`` (both ``str.format`` templates filled from ``summary``), then one row per
    (method, alpha) of ``summary["runs"]``: the method, the alpha (bold:
    ``summary["best_alpha"]``'s), the final training cost under ``cost_heading`` ("diverged"
    where there is none), then one cell per item of ``columns``, a mapping of heading to
    ``cell(run)``."""
    rows = []
    for label, by_alpha in summary["runs"].items():
        for alpha, run in by_alpha.items():
            bold = "**" if float(alpha) == summary["best_alpha"][label] else ""
            cost = cost_or_inf(run["final_train_loss"])
            rows.append([label, f"{bold}{alpha}{bold}",
                         "diverged" if cost == math.inf else f"{cost:.4f}",
                         *(cell(run) for cell in columns.values())])
    lines = [f"# {title.format_map(summary)}{quick_note(summary['quick'])}", "",
             notes.format_map(summary), ""]
    lines += markdown_table(["method", "alpha", cost_heading, *columns], rows)
    return "\n".join(lines) + "\n"


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
                ylim=None, quick=False, band=False, marks=None, marks_label=None, logit=False,
                marker=None, legend_outside=False):
    """One line per label: ``field`` of its history (a dict of per-epoch lists) against epochs;
    with ``band``, the range between its ``field + "_min"`` and ``field + "_max"`` lists shaded;
    ``marks`` ``{label: (epoch, value)}`` draws a star in the label's colour (a published figure,
    named by ``marks_label`` in the legend); ``logit`` puts an accuracy on a logit axis (0.9, 0.99,
    0.999 equally spaced); ``marker`` (a matplotlib marker) marks each epoch's point, for runs of
    few epochs; ``legend_outside`` puts the legend right of the axes, for curves that leave no
    corner free."""
    figure, ax = new_axes(legend_outside)
    for label, history in curves.items():
        values = [v if v is not None and math.isfinite(v) else np.nan for v in history[field]]
        (line,) = ax.plot(history["epoch"], values, label=label, linewidth=1.6, marker=marker)
        if band:
            ax.fill_between(history["epoch"], history[field + "_min"], history[field + "_max"],
                            color=line.get_color(), alpha=0.18, linewidth=0)
        if marks and label in marks:
            ax.plot(*marks[label], marker="*", markersize=13, color=line.get_color(),
                    markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
    if marks:
        ax.plot([], [], marker="*", markersize=11, color="0.6", markeredgecolor="black",
                markeredgewidth=0.6, linestyle="none", label=marks_label)
    if log:
        ax.set_yscale("log")
    if logit:
        ax.set_yscale("logit")
        low, high = ax.get_ylim()
        ticks = [t for t in LOGIT_TICKS if low <= t <= high]
        if len(ticks) < 3:
            ticks = [t for t in LOGIT_FINE_TICKS if low <= t <= high]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.yaxis.set_minor_formatter(NullFormatter())
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iterations over the entire dataset (epochs)")
    ax.set_ylabel(ylabel)
    save_axes(figure, ax, path, title + quick_note(quick), legend_outside)


def new_axes(legend_outside=False):
    """(figure, axes) of the experiments' line plots; wider with the legend outside."""
    figure = Figure(figsize=(8.0 if legend_outside else 6.4, 4.4), layout="constrained")
    return figure, figure.subplots()


def save_axes(figure, ax, path, title, legend_outside=False):
    """Title, grid and legend (right of the axes with ``legend_outside``, for curves that leave
    no corner free), then the figure saved to ``path``."""
    if legend_outside:  # a figure title: the axes' title would run under the legend
        figure.suptitle(title, fontsize="medium")
    else:
        ax.set_title(title, fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    if legend_outside:
        figure.legend(loc="outside right center")
    else:
        ax.legend()
    plot.save_figure(figure, path, palette=True)
