"""Small jitted objectives written the ways users write them, shared by the test files of the
compiled drivers: a gradient returned as a new array, or written into a given buffer (the
``into`` protocol of ``adamnb.minimize``'s Notes), with or without a helper that allocates.
The quadratic f(x) = x0^2 + 2 x1^2 (gradient (2 x0, 4 x1))."""

import numba
import numpy as np


@numba.njit
def gradient_as_new_array(x):
    return np.array([2.0 * x[0], 4.0 * x[1]])


@numba.njit
def into_calling_an_allocating_helper(x, g_out):
    g = gradient_as_new_array(x)  # a new array each call, freed by numba's runtime
    g_out[0] = g[0]
    g_out[1] = g[1]
    return x[0] * x[0] + 2.0 * x[1] * x[1]


@numba.njit
def into_allocation_free(x, g_out):
    g_out[0] = 2.0 * x[0]
    g_out[1] = 4.0 * x[1]
    return x[0] * x[0] + 2.0 * x[1] * x[1]


def with_into(into):
    @numba.njit
    def value_and_grad(x):
        g = np.empty_like(x)
        return into(x, g), g

    value_and_grad.into = into
    return value_and_grad
