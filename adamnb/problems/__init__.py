"""Classic optimization test problems: :mod:`adamnb.problems.functions` (numba-jitted value and
gradient, domains, minima, standard starts) and :mod:`adamnb.problems.cuda_functions` (the same
problems as CUDA kernels over device arrays, loaded on first use)."""

import importlib

from adamnb.problems import functions
from adamnb.problems.functions import FUNCTIONS, TestFunction, get

__all__ = ["functions", "cuda_functions", "FUNCTIONS", "TestFunction", "get"]


def __getattr__(name):
    if name == "cuda_functions":  # imports nothing of numba.cuda until its functions run
        return importlib.import_module("adamnb.problems.cuda_functions")
    raise AttributeError(f"module 'adamnb.problems' has no attribute {name!r}")
