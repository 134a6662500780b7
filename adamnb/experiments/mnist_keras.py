"""The optimizer comparison of a well-known Keras MNIST article, rerun with its own CNN.

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

(Adadelta and Adagrad also ran there.) The model (:func:`adamnb.nn.keras_mnist_cnn`, the
default ``--model cnn``) is the article's: Conv2D 32 filters 3x3, ReLU, on 28x28x1 -> MaxPooling
2x2 -> Dropout 0.25 -> Flatten -> Dense 256, ReLU -> Dropout 0.5 -> Dense 10, softmax;
categorical cross-entropy; Glorot-uniform kernels and zero biases; the training set reshuffled
every epoch; the 10,000 test images as validation data. ``--model mlp`` runs Keras's
``mnist_mlp`` example instead (784-512-512-10, dropout 0.2), as an earlier version of this
experiment did. Every optimizer is trained from :data:`SEEDS` (initial weights, dropout masks and
minibatch order all follow the seed), and the table gives the mean and spread over them.

Each optimizer runs with tf.keras 2.x's defaults (:data:`KERAS_DEFAULTS`, in adamnb's torch-style
option names) and Keras's formulas, which differ from torch's in two places, both expressed with
options of adamnb's rules:

* Adam: Keras's epsilon is Kingma & Ba's "epsilon hat", added to :math:`\\sqrt{v_t}` before the
  bias correction (``tf.raw_ops.ApplyAdam``): ``eps_hat=True``.
* RMSprop: TensorFlow's ``ApplyRMSProp`` divides by :math:`\\sqrt{v_t + \\epsilon}`, not
  :math:`\\sqrt{v_t} + \\epsilon`: ``eps_in_sqrt=True`` (optax's option of that name). At
  :math:`\\epsilon = 10^{-7}` this caps the step of a weight with a vanishing gradient history at
  about :math:`3000\\,\\eta |g|` instead of :math:`10^7 \\eta |g|`.

Adagrad (accumulator starting at 0.1, :math:`\\sqrt{\\cdot} + \\epsilon`), Adadelta and SGD
are the same in both libraries. The article's times come from its own (unstated) machine, so only
the ordering of the times is comparable, not their values.

Outputs under ``./results/mnist_cnn/`` (``./results/mnist_keras/`` with ``--model mlp``;
``.../quick/`` with ``--quick``; or ``--out DIR``): ``table.md``, ``summary.json`` (per optimizer
``val_accuracy``, ``val_loss`` and ``seconds`` per seed, and every run's per-epoch history),
``accuracy.png`` and ``loss.png`` (mean over the seeds, with their range shaded). Each
(optimizer, seed) training is one cell of a sweep (:mod:`adamnb.sweep`).

Run: ``adamnb experiment mnist-keras [--model cnn|mlp] [--quick] [--epochs N] [--data DIR]
[--out DIR] [--workers N | --scheduler ADDRESS]``.
"""

import statistics
import sys
import time
from pathlib import Path

import adamnb
from adamnb.experiments import (conclude, default_out, experiment_parser, machine, markdown_table,
                                parse_arguments, quick_note, run_cells)
from adamnb.experiments._mnist import (add_options, bar, blas_threads, history_summary, load,
                                       plot_curves, run_and_report)
from adamnb.nn import MLP, keras_mnist_cnn
from adamnb.nn.training import train

NAME = "mnist-keras"
#: Output folder of each model.
FOLDERS = {"cnn": "mnist_cnn", "mlp": "mnist_keras"}
#: Keras's mnist_mlp example (``--model mlp``).
SIZES, DROPOUT = (784, 512, 512, 10), 0.2
BATCH, EPOCHS, QUICK_EPOCHS = 64, 10, 2
#: Seeds of the full run (each gives its own initial weights, dropout masks and batch order);
#: ``--quick`` runs the first.
SEEDS = (0, 1, 2)
MODEL_TEXT = {
    "cnn": "the article's CNN: Conv2D 32 3x3 ReLU -> MaxPool 2x2 -> Dropout 0.25 -> Flatten -> "
           "Dense 256 ReLU -> Dropout 0.5 -> Dense 10 softmax (1,387,594 parameters), Glorot "
           "uniform",
    "mlp": f"Keras's mnist_mlp: MLP {'-'.join(map(str, SIZES))}, ReLU, dropout {DROPOUT}, "
           "Glorot uniform",
}

#: tf.keras 2.x's default hyperparameters of each optimizer, in adamnb's (torch's) option names,
#: with Keras's placement of epsilon (module notes).
KERAS_DEFAULTS = {
    "Adam": (adamnb.Adam, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7,
                           "eps_hat": True}),
    "RMSprop": (adamnb.RMSprop, {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7, "eps_in_sqrt": True}),
    "SGD": (adamnb.SGD, {"lr": 1e-2, "momentum": 0.0}),
    "Adadelta": (adamnb.Adadelta, {"lr": 1e-3, "rho": 0.95, "eps": 1e-7}),
    "Adagrad": (adamnb.Adagrad, {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 1e-7}),
}

#: The article's figures after 10 epochs: validation accuracy, validation loss, seconds.
ARTICLE = {"Adam": (0.9893, 0.0351, 625), "RMSprop": (0.9887, 0.0348, 609),
           "SGD": (0.9679, 0.1050, 528)}


def make_model(name, seed):
    """The model ``"cnn"`` or ``"mlp"`` whose dropout masks follow ``seed``."""
    if name == "cnn":
        return keras_mnist_cnn(seed=seed)
    return MLP(SIZES, dropout=DROPOUT, seed=seed)


def train_cell(cell):
    """One sweep cell ``{"model", "optimizer", "seed", "epochs", "quick", "data"}``: the run's
    history summary."""
    X, y, X_test, y_test = load(cell["data"], cell["quick"])
    optimizer_class, options = KERAS_DEFAULTS[cell["optimizer"]]
    model = make_model(cell["model"], cell["seed"])
    params = model.init(cell["seed"])
    optimizer = optimizer_class(**options, backend="cpu")
    with blas_threads():
        history = train(model, params, optimizer, X, y, epochs=cell["epochs"],
                        batch_size=BATCH, X_test=X_test, y_test=y_test, seed=cell["seed"],
                        progress=bar())
    return {"options": options, **history_summary(history)}


def _spread(values):
    """Mean, sample standard deviation (0 for one value), min and max."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def _mean_history(runs):
    """The per-epoch mean, min and max over the seeds' histories (as plot_curves takes them)."""
    fields = ("test_accuracy", "test_loss", "train_loss")
    epochs = min(len(run["history"]["epoch"]) for run in runs)
    out = {"epoch": runs[0]["history"]["epoch"][:epochs]}
    for field in fields:
        columns = list(zip(*(run["history"][field][:epochs] for run in runs)))
        out[field] = [statistics.fmean(c) for c in columns]
        out[field + "_min"] = [min(c) for c in columns]
        out[field + "_max"] = [max(c) for c in columns]
    return out


def run(out=None, quick=False, plots=True, epochs=None, data_dir=None, workers=None,
        scheduler=None, model="cnn", seeds=None):
    """Train the model with each optimizer from each seed; write the table, summary and plots;
    return the summary.

    ``model`` is ``"cnn"`` (the article's) or ``"mlp"``; ``seeds`` defaults to :data:`SEEDS`
    (its first only with ``quick``); ``workers`` and ``scheduler`` as in
    :func:`adamnb.sweep.sweep`.
    """
    if model not in FOLDERS:
        raise ValueError(f"Unknown model: {model!r}; expected one of {sorted(FOLDERS)}")
    started = time.perf_counter()
    out = default_out(FOLDERS[model], quick, out)
    epochs = epochs if epochs is not None else (QUICK_EPOCHS if quick else EPOCHS)
    seeds = tuple(seeds) if seeds is not None else (SEEDS[:1] if quick else SEEDS)
    data = None if data_dir is None else str(data_dir)
    _, y, _, y_test = load(data, quick)  # here first: a data problem shows before any run
    cells = [{"model": model, "optimizer": label, "seed": seed, "epochs": epochs, "quick": quick,
              "data": data} for label in KERAS_DEFAULTS for seed in seeds]
    records = run_cells(train_cell, cells, out=out, workers=workers, scheduler=scheduler,
                        desc=NAME)
    results = {}
    for label in KERAS_DEFAULTS:
        runs = [record for cell, record in zip(cells, records) if cell["optimizer"] == label]
        per_seed = {"val_accuracy": [r["final_test_accuracy"] for r in runs],
                    "val_loss": [r["final_test_loss"] for r in runs],
                    "seconds": [r["train_seconds"] for r in runs]}
        results[label] = {"options": runs[0]["options"], "seeds": list(seeds), **per_seed,
                          **{name + "_summary": _spread(values)
                             for name, values in per_seed.items()},
                          "median_epoch_seconds": statistics.median(
                              s for r in runs for s in r["history"]["seconds"]),
                          "runs": runs}
        acc, loss = results[label]["val_accuracy_summary"], results[label]["val_loss_summary"]
        print(f"  {label:9s} val. accuracy {acc['mean']:.4f} (+- {acc['std']:.4f})  val. loss "
              f"{loss['mean']:.4f} (+- {loss['std']:.4f})", flush=True)
    summary = {
        "experiment": NAME, "quick": quick, "machine": machine(), "model": MODEL_TEXT[model],
        "model_name": model, "batch_size": BATCH, "epochs": epochs, "seeds": list(seeds),
        "train_rows": len(y), "validation_rows": len(y_test),
        "article": {k: dict(zip(("val_accuracy", "val_loss", "seconds"), v))
                    for k, v in ARTICLE.items()},
        "results": results,
    }
    return conclude(out, summary, started, table, write_plots if plots else None)


def write_plots(summary, out):
    """``accuracy.png`` and ``loss.png`` in ``out`` from a summary (as ``summary.json`` holds
    it): the mean over the seeds per epoch, their range shaded, the article's figures starred."""
    curves = {label: _mean_history(result["runs"]) for label, result in summary["results"].items()}
    seeds, quick = summary["seeds"], summary["quick"]
    what = "the article's CNN" if summary["model_name"] == "cnn" else "Keras's mnist_mlp"
    title = (f"{what}, batch {summary['batch_size']}, Keras defaults; mean of {len(seeds)} seed"
             f"{'s' if len(seeds) > 1 else ''} (range shaded)")
    article = summary["article"]
    epochs = summary["epochs"]
    marks_label = f"the article, after {EPOCHS} epochs"
    # side by side around the last epoch: Adam's and RMSprop's figures nearly coincide
    shift = {label: 0.15 * (k - (len(article) - 1) / 2) for k, label in enumerate(article)}
    plot_curves(curves, Path(out) / "accuracy.png", field="test_accuracy",
                ylabel="validation (test) accuracy, logit axis", title=title, quick=quick,
                band=True, logit=True, marks_label=marks_label,
                marks={k: (EPOCHS + shift[k], v["val_accuracy"]) for k, v in article.items()}
                if epochs >= EPOCHS else None)
    plot_curves(curves, Path(out) / "loss.png", field="test_loss", log=True,
                ylabel="validation (test) loss", title=title, quick=quick, band=True,
                marks={k: (EPOCHS + shift[k], v["val_loss"]) for k, v in article.items()}
                if epochs >= EPOCHS else None, marks_label=marks_label, legend_outside=True)


def _mean_std(s, digits=4):
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def table(summary):
    seeds = summary["seeds"]
    lines = [f"# Keras MNIST optimizer comparison, rerun with adamnb ({summary['epochs']} epochs, "
             f"batch {summary['batch_size']}){quick_note(summary['quick'])}", "",
             f"Model: {summary['model']}; {summary['train_rows']} training and "
             f"{summary['validation_rows']} validation images; seeds {seeds} (mean ± sample "
             f"standard deviation over them, then the range); machine: {summary['machine']}.",
             "Time is training only (evaluation excluded), the mean over the seeds of each run's "
             "total; each run used one BLAS thread.", ""]
    rows = []
    for label, result in summary["results"].items():
        options = ", ".join(f"{k}={v:g}" if not isinstance(v, bool) else f"{k}={v}"
                            for k, v in result["options"].items())
        article = summary["article"].get(label)
        theirs = ([f"{article['val_accuracy']:.4f}", f"{article['val_loss']:.4f}",
                   f"{article['seconds']}"] if article else ["-"] * 3)
        acc, loss = result["val_accuracy_summary"], result["val_loss_summary"]
        rows.append([label, options, _mean_std(acc), f"{acc['min']:.4f}-{acc['max']:.4f}",
                     _mean_std(loss), f"{loss['min']:.4f}-{loss['max']:.4f}",
                     f"{result['seconds_summary']['mean']:.1f}",
                     f"{result['median_epoch_seconds']:.2f}", *theirs])
    lines += markdown_table(["optimizer", "Keras defaults", "val. accuracy", "(min-max)",
                             "val. loss", "(min-max)", "time (s)", "median epoch (s)",
                             "article: val. accuracy", "article: val. loss",
                             "article: time (s)"], rows)
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = experiment_parser(
        NAME, "The Keras MNIST optimizer comparison (10 epochs, batch 64, Keras's default "
              f"hyperparameters, seeds {list(SEEDS)}) rerun with the article's CNN; writes "
              "table.md, summary.json, accuracy.png and loss.png.",
        f"{QUICK_EPOCHS} epochs on a subset of MNIST from one seed, for CI", FOLDERS["cnn"],
        folder_of=lambda args: FOLDERS[args.model])
    parser.add_argument("--model", choices=sorted(FOLDERS), default="cnn",
                        help="the article's CNN (default) or Keras's mnist_mlp example (its "
                             "outputs in results/mnist_keras)")
    args = parse_arguments(add_options(parser, EPOCHS), argv)
    return run_and_report(args, run, table, model=args.model)


if __name__ == "__main__":
    sys.exit(main())
