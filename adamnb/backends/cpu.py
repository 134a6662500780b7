"""CPU kernels: a rule's element math over whole vectors, in place, serial or threaded.

Every kernel here is generated from one element function, never written per rule:

* :func:`cpu_kernel` -- ``kernel(x, g, state, c)``: one loop ``x[i] = element(x[i], g[i], state,
  i, c)``, the optimizer classes' step.
* :func:`fused_kernel` -- ``kernel(x, g, state, table, column, previous, lower, upper)``: the
  host driver's step, :func:`adamnb.backends.elements.fused_update` per element (save the
  previous iterate, update, project onto the bounds) in one pass.
* :func:`stationarity_norm` -- the convergence measure of every CPU driver: the infinity-norm of
  the (projected) gradient, NaN when any element of ``g`` is not finite.

Each is compiled serially (``range``) or across threads (``prange``); elements are independent, so
both give the same bits. A kernel is compiled once per dtype: the per-step scalars ``c`` arrive as
a tuple of x's dtype (:class:`adamnb.optim.CoefficientStream`) and the arrays keep theirs, so
nothing recompiles after the first step and float32 work is never promoted to float64.

Kernels are cached on disk by numba. The closure captures the element (a ``register_jitable``
function, pickled by reference) and the loop kind, which makes the cache entry of every
(rule, loop kind, dtype) distinct and stable across processes.
"""

import numba
import numpy as np
from numba.np.unsafe.ndarray import to_fixed_tuple

from adamnb.backends.elements import fold_max, fused_update, project, stationarity
from adamnb.backends.jit import elementwise, jit

__all__ = ["PARALLEL_THRESHOLD", "cpu_kernel", "fused_kernel", "fused_update_of",
           "stationarity_norm", "stationarity_norm_serial", "stationarity_norm_parallel",
           "project_vector",
           "use_parallel", "cast_coefficients"]

#: Vectors at least this long use the threaded kernels when the caller leaves the choice to us;
#: below it the cost of waking the thread pool exceeds the work.
PARALLEL_THRESHOLD = 1 << 16
#: Elements per chunk of the threaded norm: each thread folds whole chunks, then one thread folds
#: the chunks' results, so the result does not depend on the number of threads.
_NORM_CHUNK = 1 << 14

_kernels = {}


def _build_cpu_kernel(element, parallel, cache=True):
    loop = numba.prange if parallel else range

    @jit(parallel=parallel, cache=cache)
    def kernel(x, g, state, c):
        for i in loop(x.size):
            x[i] = element(x[i], g[i], state, i, c)

    return kernel


def _build_fused_kernel(update, n_coefficients, parallel):
    loop = numba.prange if parallel else range

    @jit(parallel=parallel)
    def kernel(x, g, state, table, column, previous, lower, upper):
        c = to_fixed_tuple(table[:, column], n_coefficients)
        bounded = lower.size > 0
        for i in loop(x.size):
            x[i] = update(x, g, state, i, c, previous, lower, upper, bounded)

    return kernel


def cpu_kernel(rule, parallel):
    """The serial or threaded kernel ``kernel(x, g, state, c)`` of ``rule``."""
    key = ("step", rule.element, bool(parallel))
    if key not in _kernels:
        _kernels[key] = _build_cpu_kernel(rule.element, bool(parallel))
    return _kernels[key]


def fused_update_of(rule):
    """``rule``'s :func:`adamnb.backends.elements.fused_update` for the CPU, inlinable in any
    ``@njit`` loop (the compiled drivers call it)."""
    key = ("update", rule.element)
    if key not in _kernels:
        _kernels[key] = elementwise(fused_update(rule.element, project))
    return _kernels[key]


def fused_kernel(rule, parallel):
    """The host driver's step ``kernel(x, g, state, table, column, previous, lower, upper)`` of
    ``rule``, with the scalars of column ``column`` of ``table`` (a block of
    :meth:`adamnb.optim.CoefficientStream.columns`).

    In one pass: ``previous[:] = x``, the rule's update of every element and, when ``lower`` is
    not empty, the projection onto ``[lower, upper]``.
    """
    key = ("fused", rule.element, bool(parallel))
    if key not in _kernels:
        _kernels[key] = _build_fused_kernel(fused_update_of(rule), rule.n_coefficients,
                                            bool(parallel))
    return _kernels[key]


@elementwise
def _stationarity_term(x, g, lower, upper, i, bounded):
    if bounded:
        return stationarity(x[i], g[i], lower[i], upper[i], True)
    return stationarity(x[i], g[i], g[i], g[i], False)


@jit
def stationarity_norm_serial(x, g, lower, upper):
    bounded = lower.size > 0
    norm = _stationarity_term(x, g, lower, upper, 0, bounded)
    for i in range(1, g.size):
        norm = fold_max(norm, _stationarity_term(x, g, lower, upper, i, bounded))
    return norm


@jit(parallel=True)
def stationarity_norm_parallel(x, g, lower, upper):
    bounded = lower.size > 0
    chunks = (g.size + _NORM_CHUNK - 1) // _NORM_CHUNK
    partial = np.empty(chunks, dtype=g.dtype)
    for k in numba.prange(chunks):
        start = k * _NORM_CHUNK
        norm = _stationarity_term(x, g, lower, upper, start, bounded)
        for i in range(start + 1, min(g.size, start + _NORM_CHUNK)):
            norm = fold_max(norm, _stationarity_term(x, g, lower, upper, i, bounded))
        partial[k] = norm
    norm = partial[0]
    for k in range(1, chunks):
        norm = fold_max(norm, partial[k])
    return norm


def stationarity_norm(x, g, lower, upper, parallel=False):
    """The convergence measure at ``x``: ``max_i |g_i|``, or with bounds (``lower`` not empty)
    the projected gradient's ``max_i |P(x_i - g_i) - x_i|``, in g's dtype; NaN when any ``g_i``
    is NaN or infinite, wherever it is (:mod:`adamnb.backends.elements`)."""
    if parallel:
        return stationarity_norm_parallel(x, g, lower, upper)
    return stationarity_norm_serial(x, g, lower, upper)


@jit
def project_vector(x, lower, upper):
    """Project ``x`` onto ``[lower, upper]`` in place (the drivers' projection of ``x0``)."""
    for i in range(x.size):
        x[i] = project(x[i], lower[i], upper[i])


def use_parallel(parallel, size):
    """Resolve a ``parallel`` option (True, False or None for automatic) for ``size`` elements."""
    if parallel is None:
        return size >= PARALLEL_THRESHOLD
    return bool(parallel)


def cast_coefficients(coefficients, dtype):
    """The per-step scalars as a tuple of ``dtype`` scalars (rounded once, as torch does)."""
    scalar = np.dtype(dtype).type
    return tuple(scalar(value) for value in coefficients)
