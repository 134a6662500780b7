"""Compiled drivers for ``minimize``: a fused step for the Python path, and whole loops.

Both are generated, like the kernels, from a rule's one ``element`` function. The per-step scalars
come as rows of the table of :meth:`adamnb.rules.UpdateRule.coefficient_table`, cast once per block
to x's dtype (so float32 work stays float32, rounded exactly as the kernels' scalars are).

``fused_step`` does, in one call and one pass: the gradient's infinity-norm (NaN-propagating) and
the gtol test, the update of every element, the bounds projection and the copy of the previous
iterate that status 3 needs. The Python path of ``minimize`` calls it once per step, so the
driver's own per-step work is a handful of Python operations around it.

``compiled_loop`` runs whole blocks of steps, objective and gradient included, when both are numba
functions: no Python at all between steps.
"""

import math

import numba
from numba.np.unsafe.ndarray import to_fixed_tuple

from adamnb._jit import jit

#: Outcomes of a step or a block of steps.
STEPPED, CONVERGED, NOT_FINITE, BLOCK_DONE = 0, 1, 3, 4

_fused_steps = {}
_compiled_loops = {}


@jit(inline="always")
def _infinity_norm(g):
    """max |g_i|, NaN if any g_i is NaN (so one test catches non-finite gradients)."""
    norm = abs(g[0]) * 0
    for i in range(g.size):
        a = abs(g[i])
        if not a <= norm:  # true for a > norm and for NaN
            norm = a
    return norm


def _build_fused_step(element, n_coefficients):
    @jit
    def fused_step(x, g, state, table, row, previous, lower, upper, gtol):
        norm = _infinity_norm(g)
        if not math.isfinite(norm):
            return NOT_FINITE
        if gtol > 0 and norm <= gtol:
            return CONVERGED
        c = to_fixed_tuple(table[row], n_coefficients)
        bounded = lower.size > 0
        for i in range(x.size):
            previous[i] = x[i]
            value = element(x[i], g[i], state, i, c)
            if bounded:
                value = min(max(value, lower[i]), upper[i])
            x[i] = value
        return STEPPED

    return fused_step


def fused_step(rule):
    """``fused_step(x, g, state, table, row, previous, lower, upper, gtol) -> outcome``."""
    key = rule.element
    if key not in _fused_steps:
        _fused_steps[key] = _build_fused_step(rule.element, rule.n_coefficients)
    return _fused_steps[key]


def _build_compiled_loop(element, n_coefficients, combined):
    # `combined` is a closure constant: numba prunes the branch not taken before typing, so fun
    # may return (f, g) in one mode and a scalar in the other.
    @numba.njit(error_model="numpy")
    def compiled_loop(fun, jac, args, x, f, g, state, table, previous, lower, upper, gtol,
                      history, vectors, counts):
        """Run up to len(table) steps from (x, f, g). counts = [nit, nfev, njev] is updated.

        ``g`` is a buffer of x's dtype that holds the gradient at x throughout. Returns
        (outcome, f); on NOT_FINITE, x, f and g are the last finite iterate's.
        """
        bounded = lower.size > 0
        record = history.size > 0
        norm = _infinity_norm(g)
        for row in range(table.shape[0]):
            if gtol > 0 and norm <= gtol:
                return CONVERGED, f
            c = to_fixed_tuple(table[row], n_coefficients)
            for i in range(x.size):
                previous[i] = x[i]
                value = element(x[i], g[i], state, i, c)
                if bounded:
                    value = min(max(value, lower[i]), upper[i])
                x[i] = value
            if combined:
                f_new, g_new = fun(x, *args)
                counts[2] += 1
            else:
                f_new = fun(x, *args)
                g_new = jac(x, *args)
                counts[2] += 1
            counts[1] += 1
            counts[0] += 1
            if g_new.shape != x.shape:
                raise ValueError("The gradient's shape differs from x's; jac must return one "
                                 "derivative per element of x")
            norm = _infinity_norm(g_new)
            if not (math.isfinite(f_new) and math.isfinite(norm)):
                x[:] = previous
                return NOT_FINITE, f
            f = float(f_new)
            g[:] = g_new
            if record:
                history[row] = f
                vectors[row] = x
        return BLOCK_DONE, f

    return compiled_loop


def compiled_loop(rule, combined):
    """The whole-loop driver of ``rule`` for jitted objectives (see module docstring)."""
    key = (rule.element, bool(combined))
    if key not in _compiled_loops:
        _compiled_loops[key] = _build_compiled_loop(rule.element, rule.n_coefficients, combined)
    return _compiled_loops[key]


def is_jitted(function):
    """True for numba CPU dispatchers (``@njit`` functions), which the compiled loop can call."""
    return isinstance(function, numba.core.registry.CPUDispatcher)
