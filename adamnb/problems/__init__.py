"""Classic optimization test problems: :mod:`adamnb.problems.functions` (numba-jitted value and
gradient, domains, minima, standard starts) and :mod:`adamnb.problems.cuda_functions` (the same
problems as CUDA kernels over device arrays)."""

from adamnb.problems import functions
from adamnb.problems.functions import FUNCTIONS, TestFunction, get

__all__ = ["functions", "FUNCTIONS", "TestFunction", "get"]
