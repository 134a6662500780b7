"""The experiments: one module per experiment, each composing the adamnb library.

Run one with ``adamnb experiment NAME [--quick] [--out DIR] [--workers N | --scheduler ADDRESS]``
(``adamnb experiment --help`` lists them) or as ``python -m adamnb.experiments.NAME``. Each module
has a ``main(argv)`` that the ``adamnb`` command calls, and a ``run(...)`` that returns its
summary, for tests.

Where the outputs go
    ``./results/<experiment>/`` under the current directory, or ``--out DIR``. A ``--quick`` run
    (its tables and figures say "quick run") never writes over a full run's outputs: where
    ``./results/<experiment>/`` holds a full run's ``summary.json`` it writes to
    ``./results/<experiment>/quick/`` instead. The repository's committed results are full runs
    made from the repository's root, so quick runs there land in the ``quick`` folders, which git
    ignores. The output folder is checked before any work starts.

How they run
    Every experiment is a sweep (:mod:`adamnb.sweep`) over its independent runs: on one local
    process per core by default, ``--workers N`` processes (1: this process), or a Dask cluster
    (``--scheduler tcp://HOST:8786``). Finished runs are kept in ``OUT/.sweep/`` until the
    experiment's outputs are written, so that an interrupted run (Ctrl-C) resumes where it
    stopped when the same command runs again. Progress shows as a bar on a terminal and as one
    line per finished run otherwise.

This package holds what the modules share: the command line, output files written atomically,
the sweep with its store, and the machine's description.
"""

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np
from tqdm import tqdm

from adamnb import sweep as sweeps
from adamnb._io import OutputError, atomic_write, check_output_folder
from adamnb.cli import ArgumentParser

__all__ = ["machine", "markdown_table", "write_text", "write_json", "progress", "json_ready",
           "experiment_parser", "parse_arguments", "default_out", "run_cells", "quick_note",
           "STORE", "conclude", "report_run", "finish", "positive_int"]

#: The folder, inside an experiment's output folder, that keeps finished runs until the outputs
#: are written (what a resumed run reads back).
STORE = ".sweep"


def default_out(folder, quick=False, out=None):
    """Where an experiment writes: ``out`` when given, else its default folder.

    Parameters
    ----------
    folder : str
        The experiment's folder name (``"test_functions"``).
    quick : bool
        A quick run goes to a ``quick`` folder inside when ``results/<folder>`` holds a full
        run's ``summary.json``, so that it never writes over it.
    out : str or Path, optional
        The folder the caller chose (returned as a Path).

    Returns
    -------
    Path
        ``out``, or ``results/<folder>`` (or ``results/<folder>/quick``), relative to the current
        directory.
    """
    if out is not None:
        return Path(out)
    out = Path("results") / folder
    return out / "quick" if quick and _holds_full_run(out) else out


def _holds_full_run(folder):
    try:
        return json.loads((folder / "summary.json").read_text()).get("quick") is not True
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # unreadable: treat it as something not to write over


def quick_note(quick):
    """What titles and table headings append for a quick run: " (quick run)", else ""."""
    return " (quick run)" if quick else ""


def markdown_table(header, rows, align=None):
    """The lines of a Markdown (GitHub-flavoured) table.

    Parameters
    ----------
    header : sequence of str
        The column titles.
    rows : iterable of sequences of str
        The cells of each row, already formatted, one per column.
    align : str, optional
        One letter per column, ``"l"`` (the default for every column) or ``"r"`` (right-aligned,
        for numbers).

    Returns
    -------
    list of str
        The header line, the alignment line and one line per row, without newlines.

    Raises
    ------
    ValueError
        ``align`` or a row has another number of columns than ``header``, or ``align`` holds
        another letter than ``l`` and ``r``.
    """
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align must be one 'l' or 'r' per column ({len(header)}), got {align!r}")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "".join("---:|" if side == "r" else "---|" for side in align)]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells in a table of {len(header)} columns: "
                             f"{row!r}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename).

    A reader never sees a half-written file, and an interrupted run leaves the previous output
    intact. The folder is created if needed.
    """
    with atomic_write(path, "w", encoding="utf-8") as stream:
        stream.write(text)
    return Path(path)


def json_ready(value):
    """``value`` with NumPy scalars and arrays made plain, and non-finite floats made None.

    JSON has no NaN or infinity; None (null) says "no number" honestly where ``json.dumps`` would
    otherwise write the non-standard ``NaN``.
    """
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, data):
    """Write ``data`` as indented JSON to ``path`` atomically (see :func:`write_text`)."""
    return write_text(path, json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n")


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on stderr, shown only on a terminal and never in a sweep's workers."""
    kwargs.setdefault("disable", not sys.stderr.isatty() or sweeps.in_worker())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)


def _integer(text):
    """``int(text)``, or argparse's error naming the text (not a function's name)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text):
    """argparse type: a positive integer."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _workers(text):
    value = _integer(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"expected a positive number of processes, or -1 for "
                                         f"one per core, got {text}")
    return value


def experiment_parser(name, description, quick_help, folder,
                      plots_help="write summary.json only", folder_of=None):
    """The command line every experiment shares.

    ``--quick``, ``--out DIR`` (default ``./results/<folder>``, ``.../quick`` with ``--quick``),
    ``--no-plots``, ``--workers N`` and ``--scheduler ADDRESS``. An experiment adds its own
    options to the returned parser and parses with :func:`parse_arguments`; ``folder_of``, when
    given, picks the folder from the parsed arguments instead (``folder`` is then its default,
    named in the help).
    """
    parser = ArgumentParser(prog=f"adamnb experiment {name}", description=description)
    parser.add_argument("--quick", action="store_true",
                        help=f"{quick_help}; writes to results/{folder}/quick where "
                             f"results/{folder} holds a full run, unless --out")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default: results/{folder} under the current "
                             f"directory, results/{folder}/quick with --quick)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help=plots_help)
    parser.add_argument("--workers", type=_workers, default=None, metavar="N",
                        help="local worker processes (default: one per core; 1: run in this "
                             "process; -1: one per core)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run on a Dask cluster instead, e.g. tcp://HOST:8786 (needs "
                             "pip install \"adamnb[distributed]\")")
    parser.set_defaults(folder=folder, folder_of=folder_of)
    return parser


def parse_arguments(parser, argv):
    """Parse ``argv``; fill in the output folder and check it, and the executor's options.

    Every problem is reported before any work starts, as the command's one-line error.
    """
    args = parser.parse_args(argv)
    if args.out is None:
        folder = args.folder if args.folder_of is None else args.folder_of(args)
        args.out = default_out(folder, args.quick)
    try:
        check_output_folder(args.out, "--out")
    except OutputError as error:
        parser.error(str(error))
    if args.scheduler is not None:
        if args.workers is not None:
            parser.error("give --workers or --scheduler, not both")
        try:
            sweeps.require_distributed()
        except ImportError as error:
            parser.error(f"--scheduler: {error}")
    return args


def run_cells(fn, cells, *, out, desc, workers=None, scheduler=None, store=True):
    """Run ``fn`` on every cell (``workers`` and ``scheduler`` as in :func:`adamnb.sweep.sweep`,
    an executor to share between sweeps included); the records, in the cells' order.

    Finished cells are kept in ``out/.sweep`` (with ``store``), so that the same command resumes
    an interrupted run; the experiment removes the folder (:func:`finish`) once its outputs are
    written.

    Raises
    ------
    adamnb.sweep.SweepError
        Some cells failed; the message names each with its error. The finished ones stay in
        the store for the next run.
    """
    folder = Path(out) / STORE
    result = sweeps.sweep(fn, cells, workers=workers, scheduler=scheduler,
                          store=folder if store else None, desc=desc)
    result.check(f"; the finished runs are kept in {folder} for the next run" if store else "")
    return result.records


def conclude(out, summary, started, table=None, plots=None):
    """The end of every experiment's run: ``table.md`` written from ``table(summary)`` and the
    figures drawn by ``plots(summary, out)`` (each where given), the run's seconds (since
    ``started``, a ``time.perf_counter()`` value) into ``summary``, ``summary.json`` written
    (last, so its presence says the run finished), the finished runs' store removed
    (:func:`finish`). Returns ``summary``."""
    if table is not None:
        write_text(Path(out) / "table.md", table(summary))
    if plots is not None:
        plots(summary, out)
    summary["time_s"] = time.perf_counter() - started
    write_json(Path(out) / "summary.json", summary)
    finish(out)
    return summary


def command(name, folder, run, report, description, quick_help):
    """``main(argv)`` of an experiment that takes only the options every experiment shares
    (:func:`experiment_parser`): parse ``argv``, then :func:`report_run`."""
    def main(argv=None):
        parser = experiment_parser(name, description, quick_help, folder)
        return report_run(parse_arguments(parser, argv), run, report)

    main.__doc__ = (f"Command-line entry point: ``adamnb experiment {name} [--quick] [--out DIR] "
                    "[--no-plots] [--workers N | --scheduler ADDRESS]``.")
    return main


def report_run(args, run, report, **options):
    """An experiment's command, after :func:`parse_arguments`: ``run`` with the parsed command
    line (and ``options``), then ``report(summary)`` (its results in words) and where they were
    written; returns the exit status 0."""
    summary = run(args.out, quick=args.quick, plots=args.plots, workers=args.workers,
                  scheduler=args.scheduler, **options)
    print(report(summary))
    print(f"Wrote {args.out} in {summary['time_s']:.1f} s")
    return 0


def finish(out):
    """Remove ``out/.sweep``: the outputs are written, the finished runs are no longer needed.

    Parameters
    ----------
    out : str or Path
        The experiment's output folder.
    """
    sweeps.Store(Path(out) / STORE).clear()


def machine():
    """The machine in one line (cores, CPU model, versions, numba threads), for every reported time."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, numba {numba.__version__}, "
            f"NumPy {np.__version__}, {numba.config.NUMBA_NUM_THREADS} numba threads "
            f"({numba.threading_layer() if _threads_started() else 'pool not started'})")


def _threads_started():
    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False
