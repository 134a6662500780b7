"""The ``adamnb`` command (also ``python -m adamnb``).

::

    adamnb methods [METHOD]               the methods and their default hyperparameters
    adamnb minimize FUNCTION [options]    minimize a test function and print the OptimizeResult
    adamnb experiment NAME [--quick]      run one of the experiments in adamnb.experiments

Every command has ``--help``; a wrong method, function or experiment name is an error that lists
the right ones. Problems with the outputs (``--out``, ``--plot``) are found before any work
starts. Errors the command can explain (bad input, unreadable data, an unwritable output, runs
that failed) end it with one line ``adamnb: error: ...`` and exit status 1 (2 for a wrong
command line), never a traceback; Ctrl-C ends it with status 130, leaving no partial file.
Negative numbers work as option values: ``--x0 -1.5,2`` as well as ``--x0=-1.5,2``.

The experiments are modules of the installed package (:mod:`adamnb.experiments`), so the command
works after a plain ``pip install``. :data:`EXPERIMENTS` maps each command name to its module;
adding an experiment is one entry there and one module with a ``main(argv)`` function.
"""

import argparse
import ast
import json
import math
import importlib
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import OptimizeResult, OptimizeWarning

import adamnb
from adamnb._io import OutputError, check_output_file
from adamnb.optim import rules
from adamnb.problems import functions
from adamnb.sweep import SweepError

__all__ = ["main", "EXPERIMENTS", "Experiment", "load_experiment", "ArgumentParser",
           "join_negative_values"]

#: ``adamnb minimize`` shows a progress bar for runs at least this long (and only on a terminal):
#: shorter ones finish before a bar would be worth reading, and the bar's per-step callback would
#: take minimize off its compiled fast path.
PROGRESS_MIN_STEPS = 100_000


@dataclass(frozen=True)
class Experiment:
    """An experiment the command can run: its module's name in adamnb.experiments, a one-line summary."""

    module: str
    summary: str


#: The experiments by command name, in the order ``adamnb experiment --help`` lists them.
EXPERIMENTS = {
    "test-functions": Experiment(
        "test_functions",
        "every method on the classic 2-D test functions: table, convergence and trajectory plots"),
    "reddi": Experiment(
        "reddi_counterexample",
        "Reddi, Kale & Kumar (2018): Adam drifts to the worst point of an online problem, "
        "AMSGrad does not"),
    "bias-correction": Experiment(
        "bias_correction",
        "Kingma & Ba (2014) section 6.4: Adam with and without bias correction, beta2 near 1"),
    "mnist-keras": Experiment(
        "mnist_keras",
        "the Keras MNIST optimizer comparison (10 epochs, batch 64, Keras defaults) on the "
        "article's CNN, three seeds"),
    "mnist-logistic": Experiment(
        "mnist_logistic",
        "Kingma & Ba (2014) Figure 1: logistic regression on MNIST, Adam vs SGD-Nesterov vs "
        "AdaGrad"),
    "mnist-mlp": Experiment(
        "mnist_mlp",
        "Kingma & Ba (2014) Figure 2(a): dropout MLP 784-1000-1000-10 on MNIST, five "
        "optimizers at step sizes a grid search selects (--device cuda for a GPU)"),
    "muon": Experiment(
        "muon",
        "Muon for the weight matrices with AdamW for the biases, against AdamW alone: the MLP "
        "784-512-512-10 on MNIST (torch's recommended split, parameter groups)"),
    "multistart": Experiment(
        "multistart",
        "multi-start search at scale: 100,000 starts of Adam on 10-D Rastrigin in chunks over "
        "the workers (minimize_batch); best minimum and the end points' distribution"),
}


def load_experiment(name):
    """The module of experiment ``name`` (a key of :data:`EXPERIMENTS`), imported."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid names are: "
                         f"{', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"adamnb.experiments.{EXPERIMENTS[name].module}")


# --- negative numbers as option values ------------------------------------------------------------

#: A token that is a number or a comma-separated list of numbers and starts with a minus sign:
#: argparse takes "-1.5,2" for an option (its own test accepts only "-1" and "-1.5").
_NEGATIVE_VALUES = re.compile(r"-(\d|\.\d|inf\b|nan\b)[\w.+\-]*(\s*,\s*[\w.+\-]*)*",
                              re.IGNORECASE)


def join_negative_values(argv, options):
    """``argv`` with ``OPTION -1.5,2`` written ``OPTION=-1.5,2`` for each option in ``options``.

    Parameters
    ----------
    argv : list of str
    options : set of str
        The option strings that take exactly one value.

    Returns
    -------
    list of str
    """
    joined, index = [], 0
    while index < len(argv):
        token = argv[index]
        if (token in options and index + 1 < len(argv)
                and _NEGATIVE_VALUES.fullmatch(argv[index + 1])):
            joined.append(f"{token}={argv[index + 1]}")
            index += 2
        else:
            joined.append(token)
            index += 1
    return joined


def _valued_options(parser):
    """The option strings of ``parser`` and its subcommands that take exactly one value."""
    found = set()
    for action in parser._actions:
        if action.option_strings and action.nargs is None:
            found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= _valued_options(subparser)
    return found


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, taking negative numbers as option values (``--x0 -1.5,2``)."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(join_negative_values(args, _valued_options(self)),
                                        namespace)


# --- adamnb methods -------------------------------------------------------------------------------

def _format_value(value):
    return repr(value) if isinstance(value, (bool, str, type(None))) else f"{value:g}"


def _methods(args, parser):
    if args.method:
        print(adamnb.show_options(args.method, disp=False), end="")
        return 0
    width = max(map(len, rules.RULES))
    print("Methods of adamnb.minimize(fun, x0, method=NAME, options={...}) with their defaults "
          "(those of the library each follows)\nand their sources; `adamnb methods NAME` shows "
          "one in full.\n")
    for name, rule in rules.RULES.items():
        defaults = ", ".join(f"{key}={_format_value(value)}"
                             for key, value in rule.defaults.items())
        print(f"{name:<{width}}  {rule.summary}")
        print(f"{'':<{width}}  {defaults}")
        print(f"{'':<{width}}  source: {rule.source}")
    return 0


# --- adamnb minimize ------------------------------------------------------------------------------

def _option(text):
    """``KEY=VALUE`` with VALUE a Python literal (0.9, True, 1e-3), true/false in any case (as
    shells and config files write booleans), or else the string itself."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    value = value.strip()
    if value.lower() in ("true", "false"):
        return key.strip(), value.lower() == "true"
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key.strip(), parsed


def _whole_number(text):
    """An integer option's value: ``1000``, or a float that is a whole number (``1e3``)."""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number == int(number)):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(number)


def _vector(text):
    try:
        return np.array([float(item) for item in text.replace(",", " ").split()])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") \
            from None


def _printable(result):
    """The result without its per-step histories, which would fill the terminal."""
    return OptimizeResult({key: value for key, value in result.items()
                           if key not in ("allvecs", "fun_history")})


def _json_result(result):
    """The result's scalar fields and arrays as JSON-ready values (floats at full precision)."""
    data = {}
    for key, value in _printable(result).items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, (np.generic,)):
            value = value.item()
        data[key] = _finite_or_null(value)
    return data


def _finite_or_null(value):
    """NaN and inf as None: JSON has no such numbers (Python's Infinity and NaN are not JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite_or_null(item) for item in value]
    return value


def _progress_callback(maxiter):
    """A callback advancing a tqdm bar, and the bar, when stderr is a terminal and the run long."""
    if not sys.stderr.isatty() or maxiter < PROGRESS_MIN_STEPS:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=maxiter, unit="step", leave=False, file=sys.stderr)
    return (lambda xk: bar.update(1)), bar


def _plot_formats():
    from matplotlib.figure import Figure  # matplotlib only when a plot is asked for
    return set(Figure().canvas.get_supported_filetypes())


def _minimize(args, parser):
    if args.plot is not None:
        try:  # before the run, which may be long
            check_output_file(args.plot, "--plot", suffixes=_plot_formats())
        except OutputError as error:
            parser.error(str(error))
    try:
        tf = functions.get(args.function, n=args.dim)
    except ValueError as error:
        parser.error(str(error))
    x0 = tf.x0 if args.x0 is None else args.x0
    if x0.shape != tf.x0.shape:
        parser.error(f"--x0 has {x0.size} numbers but {args.function} is {tf.n}-dimensional here")
    options = dict(args.option)
    for name in ("lr", "maxiter", "gtol"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    options["return_all"] = bool(args.plot)
    callback, bar = _progress_callback(options.get("maxiter", 1000))
    try:
        with warnings.catch_warnings():
            # On the command line an unknown option is a typo: fail, naming the valid ones.
            warnings.simplefilter("error", OptimizeWarning)
            result = adamnb.minimize(tf.fun, x0, method=args.method, jac=tf.grad,
                                     callback=callback, options=options)
    except (ValueError, TypeError, OptimizeWarning) as error:
        parser.error(str(error))
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(_json_result(result)))
        return 0
    shown = {key: value for key, value in options.items() if key != "return_all"}
    start = ", ".join(f"{value:g}" for value in x0)
    print(f"adamnb.minimize({args.function}, x0=[{start}], method={args.method!r}, "
          f"options={shown})")
    print(_printable(result))
    print(f"\nf - f* = {result.fun - tf.fmin:.3e}; distance to the nearest known minimum = "
          f"{tf.nearest_minimizer_distance(result.x):.3e}")
    if args.plot:
        path = _save_run_plot(tf, result, args)
        print(f"Wrote {path}")
    return 0


def _save_run_plot(tf, result, args):
    from adamnb import plot  # matplotlib only when a plot is asked for

    label = f"{args.method}" + (f", lr {args.lr:g}" if args.lr is not None else "")
    two_d = tf.n == 2
    figure, axes = plot.panel_grid(2 if two_d else 1, ncols=2, panel_size=(5.0, 4.0))
    if two_d:
        xlim, ylim = plot.trajectory_window([result.allvecs], tf.minimizers, tf.domain)
        plot.plot_contour(tf.fun, xlim, ylim, axes[0], fmin=tf.fmin)
        plot.plot_trajectory(result, axes[0], label=label, minimizers=tf.minimizers, color="C0")
        axes[0].set_xlabel("x1")
        axes[0].set_ylabel("x2")
        axes[0].set_title(f"{args.function}: path over log-spaced contours of f - f*\n"
                          "(o start, x end, * minimum)", fontsize="medium")
        axes[0].legend(fontsize="small", loc="upper left")
    plot.plot_convergence({label: result}, fmin=tf.fmin, ax=axes[-1], target=1e-6,
                          title=f"{args.function}: f - f* per step")
    return plot.save_figure(figure, args.plot)


# --- adamnb experiment ----------------------------------------------------------------------------

def _experiment(args, parser):
    return load_experiment(args.name).main(args.args) or 0


# --- the parser -----------------------------------------------------------------------------------

def build_parser():
    """The argument parser of the ``adamnb`` command, with its three subcommands."""
    parser = ArgumentParser(
        prog="adamnb",
        description="The Adam family of optimizers as Numba kernels, behind "
                    "scipy.optimize.minimize's contract.",
        epilog="Start with `adamnb experiment test-functions`: every method on the classic test "
               "functions, as a table and plots.")
    parser.add_argument("--version", action="version", version=f"adamnb {adamnb.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    methods = commands.add_parser(
        "methods", help="list the methods, their default hyperparameters and sources",
        description="List the methods of adamnb.minimize with their default hyperparameters "
                    "(those of torch.optim or optax, whichever defines the method) and their "
                    "sources, or show one method's options in full.")
    methods.add_argument("method", nargs="?", type=str.lower, choices=adamnb.METHODS,
                         metavar="METHOD", help=f"one of: {', '.join(adamnb.METHODS)}")
    methods.set_defaults(handler=_methods, command_parser=methods)

    run = commands.add_parser(
        "minimize", help="minimize a test function and print the OptimizeResult",
        description="Minimize one of adamnb's test functions from its standard start with "
                    "adamnb.minimize and print the scipy OptimizeResult.",
        epilog="Example: adamnb minimize rosenbrock --method adam --lr 0.01 --maxiter 5000 "
               "--plot rosenbrock.png")
    run.add_argument("function", type=str.lower, choices=list(functions.FUNCTIONS),
                     metavar="FUNCTION",
                     help=f"one of: {', '.join(functions.FUNCTIONS)}")
    run.add_argument("--method", default="adam", type=str.lower, choices=adamnb.METHODS,
                     metavar="METHOD", help=f"default adam; one of: {', '.join(adamnb.METHODS)}")
    run.add_argument("--lr", type=float, help="learning rate (default: the method's)")
    run.add_argument("--maxiter", type=_whole_number,
                     help="number of update steps (default 1000; 1e4 is taken)")
    run.add_argument("--gtol", type=float,
                     help="stop once the gradient's infinity-norm is at most this (default 1e-5)")
    run.add_argument("--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                     help="another option of the method, e.g. --option beta2=0.99 or "
                          "--option amsgrad=true (repeatable; `adamnb methods METHOD` lists "
                          "them)")
    run.add_argument("--dim", type=_whole_number,
                     help="dimension, for the scalable functions (default 2)")
    run.add_argument("--x0", type=_vector, help="start, e.g. --x0 -1.5,2 (default: the "
                                                "function's standard start)")
    run.add_argument("--json", action="store_true",
                     help="print the result as one JSON object (full precision), nothing else; "
                          "NaN and inf, which JSON has no numbers for, are written as null")
    run.add_argument("--plot", type=Path, metavar="PATH",
                     help="save a figure of the run (path over the contour for 2-D functions, "
                          "and f - f* per step), e.g. out.png")
    run.set_defaults(handler=_minimize, command_parser=run)

    names = "\n".join(f"  {name:<16}  {entry.summary}" for name, entry in EXPERIMENTS.items())
    experiment = commands.add_parser(
        "experiment", help="run an experiment (writes under ./results/)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one of adamnb's experiments. Options after NAME go to the "
                    "experiment; every experiment takes --quick (a short version, for CI, "
                    "written to results/NAME/quick), --out DIR (default: results/NAME under the "
                    "current directory), --workers N (local processes; default one per core) "
                    "and --scheduler ADDRESS (a Dask cluster). An interrupted run resumes when "
                    "the same command runs again.",
        epilog=f"experiments:\n{names}\n\n`adamnb experiment NAME --help` shows an experiment's "
               "options.")
    experiment.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME",
                            help=f"one of: {', '.join(EXPERIMENTS)}")
    experiment.add_argument("args", nargs=argparse.REMAINDER, metavar="...",
                            help="the experiment's own options, e.g. --quick --out DIR "
                                 "--workers N")
    experiment.set_defaults(handler=_experiment, command_parser=experiment)
    return parser


def _fail(message, status):
    print(f"adamnb: error: {message}", file=sys.stderr, flush=True)
    return status


def main(argv=None):
    """Run the ``adamnb`` command with ``argv`` (default: ``sys.argv[1:]``); the exit status.

    Errors the user can act on (bad values, unreadable data, unwritable outputs, failed runs)
    are one line on stderr and status 1; Ctrl-C is status 130 (the shell's for SIGINT).
    """
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args, args.command_parser)
    except KeyboardInterrupt as interrupt:
        return _fail(str(interrupt) or "interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`adamnb methods | head`): not an error worth a traceback. Point
        # stdout at devnull so that Python's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (OSError, OutputError, SweepError, ImportError) as error:
        # Data that cannot be read (DatasetError is an OSError), outputs that cannot be written,
        # runs that failed, a missing optional package: the user's to fix, said in one line.
        return _fail(" ".join(str(error).split()), 1)
