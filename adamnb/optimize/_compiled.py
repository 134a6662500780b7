"""Compiled drivers for ``minimize``: a fused step for the Python path, and whole loops.

Both are generated, like the kernels, from a rule's one ``element`` function. The per-step scalars
come from :meth:`adamnb.optim.rules.UpdateRule.coefficient_columns`: a table with one row per
coefficient and one column per step, already in x's dtype (so float32 work stays float32, rounded
exactly as the kernels' scalars are). Both drivers read the same table, so they take the same
steps, to the bit.

``fused_step`` does, in one call and one pass: the gradient's infinity-norm (NaN-propagating) and
the gtol test, the update of every element, the bounds projection and the copy of the previous
iterate that status 3 needs. The Python path of ``minimize`` calls it once per step, so the
driver's own per-step work is a handful of Python operations around it.

``compiled_loop`` runs whole blocks of steps, objective and gradient included, when both are numba
functions: no Python at all between steps. On a small problem a step then costs about what the
update's own chain of dependent operations costs (the next x needs the gradient at this x, which
needs this x; for Adam on 2-D Rosenbrock, the gradient, the moments, a square root and two
divisions one after the other: some 30 ns), and the loop keeps everything else off that chain:

* No allocation per step. The objective is called through one of four gradient protocols
  (:func:`gradient_protocol`): the two of scipy (``fun`` returning ``(f, g)`` with ``jac=True``,
  or ``fun`` and ``jac``), which allocate a new gradient array per call, and their allocation-free
  forms, used when the jitted function carries an ``into`` attribute: a jitted
  ``into(x, g_out, *args)`` that writes the same gradient into ``g_out`` (and returns f). The
  functions of :mod:`adamnb.problems.functions` carry one.
* Two gradient buffers, swapped after each successful step: the new gradient is written into the
  spare one, so the last finite gradient survives a non-finite one (status 3) without a copy per
  step; the caller's buffer holds the gradient at x on return.
* One loop compiled per objective, with the objective a compile-time constant: no function
  arguments for numba to type at each call (some 7 microseconds each). The bounds projection and
  the recording of iterates are calls to functions of their own, taken only when used: written out
  in the loop, their code, even untaken, costs a third of a step.
* The infinity-norm and the finiteness test read the gradient in x's dtype, as the Python path
  does, so both stop at the same step.

What remains of a step's cost is outside the loop: the coefficient table, computed with NumPy on
the host from the rule's one definition of its scalars (for Adam two powers per step, ``beta1**t``
and ``beta2**t``), and the Python around each call. ``experiments/bench_loops.py`` measures each
part.
"""

import math

import numba
from numba.np.unsafe.ndarray import to_fixed_tuple

from adamnb.backends.jit import jit

#: Outcomes of a step or a block of steps.
STEPPED, CONVERGED, NOT_FINITE, BLOCK_DONE = 0, 1, 3, 4

_fused_steps = {}
_compiled_loops = {}


@jit
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
    def fused_step(x, g, state, table, step, previous, lower, upper, gtol):
        norm = _infinity_norm(g)
        if not math.isfinite(norm):
            return NOT_FINITE
        if gtol > 0 and norm <= gtol:
            return CONVERGED
        c = to_fixed_tuple(table[:, step], n_coefficients)
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
    """``fused_step(x, g, state, table, step, previous, lower, upper, gtol) -> outcome``."""
    key = rule.element
    if key not in _fused_steps:
        _fused_steps[key] = _build_fused_step(rule.element, rule.n_coefficients)
    return _fused_steps[key]


# --- Gradient protocols: evaluate(fun, jac, args, x, g_out) -> f, the gradient at x in g_out ----

@numba.njit(error_model="numpy")
def _store_gradient(g, g_out):
    if g.shape != g_out.shape:
        raise ValueError("The gradient's shape differs from x's; jac must return one derivative "
                         "per element of x")
    for i in range(g_out.size):
        g_out[i] = g[i]  # rounded to x's dtype, as the Python path rounds it


@numba.njit(error_model="numpy")
def _value_and_grad(fun, jac, args, x, g_out):
    f, g = fun(x, *args)
    _store_gradient(g, g_out)
    return f


@numba.njit(error_model="numpy")
def _fun_and_jac(fun, jac, args, x, g_out):
    f = fun(x, *args)
    _store_gradient(jac(x, *args), g_out)
    return f


@numba.njit(error_model="numpy")
def _value_and_grad_into(fun, jac, args, x, g_out):
    return fun(x, g_out, *args)


@numba.njit(error_model="numpy")
def _fun_and_jac_into(fun, jac, args, x, g_out):
    f = fun(x, *args)
    jac(x, g_out, *args)
    return f


_EVALUATE = {"value_and_grad": _value_and_grad, "fun_and_jac": _fun_and_jac,
             "value_and_grad_into": _value_and_grad_into, "fun_and_jac_into": _fun_and_jac_into}


def gradient_protocol(fun, jac):
    """How the compiled loop calls a jitted objective: ``(protocol, fun, jac)``, the name of the
    protocol and the two functions it calls.

    ``jac`` is True (``fun`` returns ``(f, g)``) or a jitted ``jac(x, *args)``. Where the function
    that yields the gradient has a jitted ``into`` attribute, the loop calls that instead:
    ``fun.into(x, g_out, *args) -> f`` for ``jac=True``, else ``fun(x, *args)`` and
    ``jac.into(x, g_out, *args)`` (whose return value is ignored).
    """
    if jac is True:
        into = getattr(fun, "into", None)
        if is_jitted(into):
            return "value_and_grad_into", into, into
        return "value_and_grad", fun, fun
    into = getattr(jac, "into", None)
    if is_jitted(into):
        return "fun_and_jac_into", fun, into
    return "fun_and_jac", fun, jac


@numba.njit(error_model="numpy")
def _project(x, lower, upper):
    for i in range(x.size):
        x[i] = min(max(x[i], lower[i]), upper[i])


@numba.njit(error_model="numpy")
def _record(history, vectors, step, f, x):
    history[step] = f
    for i in range(x.size):
        vectors[step, i] = x[i]


def _build_compiled_loop(element, n_coefficients, evaluate, fun, jac):
    # The objective and its protocol are closure constants: numba compiles one loop per objective
    # with them inlined (as it would specialise on them as arguments, but a call then spends no
    # microseconds typing function arguments). The bounds projection and the recording are calls
    # to small functions of their own: written out in the loop, their code, even untaken, would
    # cost a third of a small problem's step.
    @numba.njit(error_model="numpy")
    def compiled_loop(args, x, f, g, spare, state, table, previous, lower, upper, gtol, history,
                      vectors, counts):
        """Run up to table.shape[1] steps from (x, f, g). counts = [nit, nfev, njev] is updated.

        ``g`` holds the gradient at x, in x's dtype, on entry and on return; ``spare`` is a buffer
        like it. Empty ``lower`` and ``upper`` mean no bounds; a non-empty ``history`` (and
        ``vectors``) receives f (and x) after every step. Returns (outcome, f); on NOT_FINITE, x, f
        and g are the last finite iterate's.
        """
        bounded = lower.size > 0
        record = history.size > 0
        current, other = g, spare
        norm = _infinity_norm(g)
        outcome = BLOCK_DONE
        evaluations = 0
        for step in range(table.shape[1]):
            if gtol > 0 and norm <= gtol:
                outcome = CONVERGED
                break
            c = to_fixed_tuple(table[:, step], n_coefficients)
            for i in range(x.size):
                previous[i] = x[i]
                x[i] = element(x[i], current[i], state, i, c)
            if bounded:
                _project(x, lower, upper)
            f_new = evaluate(fun, jac, args, x, other)
            evaluations += 1
            norm = _infinity_norm(other)
            if not (math.isfinite(f_new) and math.isfinite(norm)):
                x[:] = previous
                outcome = NOT_FINITE
                break
            f = float(f_new)
            current, other = other, current
            if record:
                _record(history, vectors, step, f, x)
        swaps = evaluations - 1 if outcome == NOT_FINITE else evaluations
        if swaps % 2 == 1:
            g[:] = current
        counts[0] += evaluations  # one step, one evaluation of f and of g
        counts[1] += evaluations
        counts[2] += evaluations
        return outcome, f

    return compiled_loop


def compiled_loop(rule, fun, jac):
    """The whole-loop driver of ``rule`` for the jitted objective ``fun`` with ``jac`` (True or a
    jitted gradient), called as :func:`gradient_protocol` says; see the module docstring.

    ``compiled_loop(args, x, f, g, spare, state, table, previous, lower, upper, gtol, history,
    vectors, counts) -> (outcome, f)``.
    """
    protocol, fun, jac = gradient_protocol(fun, jac)
    key = (rule.element, protocol, fun, jac)
    if key not in _compiled_loops:
        _compiled_loops[key] = _build_compiled_loop(rule.element, rule.n_coefficients,
                                                    _EVALUATE[protocol], fun, jac)
    return _compiled_loops[key]


def is_jitted(function):
    """True for numba CPU dispatchers (``@njit`` functions), which the compiled loop can call."""
    return isinstance(function, numba.core.registry.CPUDispatcher)
