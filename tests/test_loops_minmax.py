"""The select forms of Python's max and min (adamnb.backends.elements.maximum, minimum) that the
serial kernels of AMSGrad, AdaMax, ADOPT and Rprop call so that their loops vectorise: the same
values as the builtins, NaN and signed zeros included, compiled and as plain Python."""

import itertools
import math

import numba
import numpy as np
import pytest

from adamnb.backends.elements import maximum, minimum

VALUES = (-math.inf, -2.5, -0.0, 0.0, 1e-300, 3.0, math.inf, math.nan)


@numba.njit
def _compiled(a, b):
    return maximum(a, b), minimum(a, b)


@pytest.mark.parametrize("a, b", list(itertools.product(VALUES, VALUES)))
def test_maximum_and_minimum_are_pythons_max_and_min(a, b):
    for got in (_compiled(a, b), (maximum(a, b), minimum(a, b))):
        for value, expected in zip(got, (max(a, b), min(a, b))):
            assert np.array([value]).tobytes() == np.array([expected]).tobytes()
