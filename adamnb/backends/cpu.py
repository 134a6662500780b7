"""Kernels that apply an update rule's element math to whole vectors, in place.

Each kernel is generated from the rule's single ``element`` function (:mod:`adamnb.optim.rules`): one
loop ``x[i] = element(x[i], g[i], state, i, c)`` over flat 1-D arrays, compiled serially or with
``prange`` across threads. Elements are independent, so both kernels give the same bits. Each
kernel is compiled once per dtype: the per-step scalars ``c`` arrive as a tuple of x's dtype, and the
arrays keep their dtype, so nothing recompiles after the first step and float32 work is never
promoted to float64.

Kernels are cached on disk by numba. The closure captures the element (a ``register_jitable``
function, pickled by reference) and the loop kind (``range`` or ``prange``), which is what makes the
cache entry of every (rule, loop kind, dtype) distinct and stable across processes.
"""

import numba
import numpy as np

from adamnb.backends.jit import jit

#: Vectors at least this long use the parallel kernel when the caller leaves the choice to us;
#: below it the cost of waking the thread pool exceeds the work.
PARALLEL_THRESHOLD = 1 << 16

_cpu_kernels = {}


def _build_cpu_kernel(element, parallel, cache=True):
    loop = numba.prange if parallel else range

    @jit(parallel=parallel, cache=cache)
    def kernel(x, g, state, c):
        for i in loop(x.size):
            x[i] = element(x[i], g[i], state, i, c)

    return kernel


def cpu_kernel(rule, parallel):
    """The serial or parallel CPU kernel ``kernel(x, g, state, c)`` of ``rule``."""
    key = (rule.element, bool(parallel))
    if key not in _cpu_kernels:
        _cpu_kernels[key] = _build_cpu_kernel(rule.element, bool(parallel))
    return _cpu_kernels[key]


def use_parallel(parallel, size):
    """Resolve a ``parallel`` option (True, False or None for automatic) for ``size`` elements."""
    if parallel is None:
        return size >= PARALLEL_THRESHOLD
    return bool(parallel)


def cast_coefficients(coefficients, dtype):
    """The per-step scalars as a tuple of ``dtype`` scalars (rounded once, as torch does)."""
    scalar = np.dtype(dtype).type
    return tuple(scalar(value) for value in coefficients)
