"""The experiments: one script per experiment, each composing the adamnb library.

Run one with ``adamnb experiment NAME [--quick] [--out DIR]`` (``adamnb experiment --help`` lists
them) or as ``python -m adamnb.experiments.NAME``. Each script has a ``main(argv)`` that the ``adamnb``
command calls, and a ``run(...)`` that returns its summary, for tests.

This package holds the little the scripts share: output files written atomically, and a progress
bar that shows on a terminal and stays quiet in logs and CI.
"""

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

import numba
import numpy as np
from tqdm import tqdm

from adamnb._io import atomic_write

__all__ = ["machine", "RESULTS", "write_text", "write_json", "progress", "json_ready", "experiment_parser"]

#: Where the committed outputs live: results/ at the repository's root.
RESULTS = Path(__file__).resolve().parents[2] / "results"


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
    """A tqdm progress bar on stderr that is shown only when stderr is a terminal."""
    kwargs.setdefault("disable", not sys.stderr.isatty())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)


def experiment_parser(name, description, quick_help, default_out,
                      plots_help="write summary.json only"):
    """The command line every experiment shares: ``--quick``, ``--out DIR`` and ``--no-plots``.

    An experiment adds its own options to the returned parser.
    """
    parser = argparse.ArgumentParser(prog=f"adamnb experiment {name}", description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    shown = Path(default_out)
    if shown.is_relative_to(RESULTS.parent):
        shown = shown.relative_to(RESULTS.parent)
    parser.add_argument("--out", type=Path, default=default_out,
                        help=f"output folder (default: {shown} in the repository)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help=plots_help)
    return parser


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
