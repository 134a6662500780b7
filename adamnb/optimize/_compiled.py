"""The compiled driver: whole blocks of steps in one numba loop, for jitted objectives.

When ``fun`` and the gradient are numba functions, with no callback, a fixed ``args`` tuple, no
finite differences and a schedule that depends on the step alone, :func:`adamnb.minimize` runs
blocks of steps in :func:`compiled_loop`: the iteration of :mod:`adamnb.optimize._common`, step
for step and bit for bit, with no Python between steps. It is generated, like every kernel, from
the rule's one ``element`` (through :func:`adamnb.backends.elements.fused_update`) and reads the
per-step scalars from the same :class:`adamnb.optim.CoefficientStream` as the host driver.

On a small problem a step then costs about what the update's own chain of dependent operations
costs (the next x needs the gradient at this x, which needs this x; for Adam on 2-D Rosenbrock,
the gradient, the moments, a square root and two divisions one after the other: some 30 ns), and
the loop keeps everything else off that chain:

* No allocation per step. The objective is called through one of four gradient protocols
  (:func:`gradient_protocol`): the two of scipy (``fun`` returning ``(f, g)`` with ``jac=True``,
  or ``fun`` and ``jac``), which allocate a new gradient array per call, and their allocation-free
  forms, used when the jitted function carries an ``into`` attribute: a jitted
  ``into(x, g_out, *args)`` that writes the same gradient into ``g_out`` (and returns f). The
  functions of :mod:`adamnb.problems.functions` carry one.
* Two gradient buffers, swapped after each successful step: the new gradient is written into the
  spare one, so the last finite gradient survives a non-finite one (status 3) without a copy.
* The objective gets ``point``, a private copy of the iterate written in the same pass as the
  update: a user's function that changes its argument cannot change the run.
* One loop compiled per (objective, bounded or not): the objective and the bounds flag are
  compile-time constants, so numba types no function arguments at each call (some 7
  microseconds each) and an unbounded run carries no projection code.

What remains of a step's cost is outside the loop: the block of per-step scalars, computed with
NumPy on the host (for Adam two powers per step, ``beta1**t`` and ``beta2**t``), and the Python
around each call. ``benchmarks/bench_loops.py`` measures each part.
"""

import math

import numba
import numpy as np
from numba.np.unsafe.ndarray import to_fixed_tuple

from adamnb.backends import cpu
from adamnb.backends.cpu import stationarity_norm_serial
from adamnb.backends.jit import jit

#: Outcomes of a block of steps.
CONVERGED, NOT_FINITE, BLOCK_DONE = 1, 3, 4

_compiled_loops = {}


# --- Gradient protocols: evaluate(fun, jac, args, x, g_out) -> f, the gradient at x in g_out ----

@jit(cache=False)
def _store_gradient(g, g_out):
    if g.shape != g_out.shape:
        raise ValueError("The gradient's shape differs from x's; jac must return one derivative "
                         "per element of x")
    for i in range(g_out.size):
        g_out[i] = g[i]  # rounded to x's dtype, as the Python path rounds it


@jit(cache=False)
def _value_and_grad(fun, jac, args, x, g_out):
    f, g = fun(x, *args)
    _store_gradient(g, g_out)
    return f


@jit(cache=False)
def _fun_and_jac(fun, jac, args, x, g_out):
    f = fun(x, *args)
    _store_gradient(jac(x, *args), g_out)
    return f


@jit(cache=False)
def _value_and_grad_into(fun, jac, args, x, g_out):
    return fun(x, g_out, *args)


@jit(cache=False)
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


@jit
def _record(history, vectors, step, f, x):
    history[step] = f
    for i in range(x.size):
        vectors[step, i] = x[i]


def _build_compiled_loop(update, n_coefficients, evaluate, fun, jac, bounded):
    # The objective, its protocol and the bounds flag are closure constants (see the module
    # notes); recording is a call to a function of its own, taken only when asked for.
    @jit(cache=False)
    def compiled_loop(args, x, f, g, spare, point, norm, state, table, previous, lower, upper,
                      gtol, history, vectors, counts):
        """Run up to table.shape[1] steps from (x, f, g) with convergence measure ``norm``.

        counts = [nit, nfev, njev] is updated. ``g`` holds the gradient at x on entry and on
        return; ``spare`` and ``point`` are buffers like x. A non-empty ``history`` (and
        ``vectors``) receives f (and x) after every step. Returns (outcome, f, norm); on
        NOT_FINITE, x, f and g are the last finite iterate's.
        """
        record = history.size > 0
        current, other = g, spare
        outcome = BLOCK_DONE
        evaluations = 0
        for step in range(table.shape[1]):
            if gtol > 0 and norm <= gtol:
                outcome = CONVERGED
                break
            c = to_fixed_tuple(table[:, step], n_coefficients)
            for i in range(x.size):
                value = update(x, current, state, i, c, previous, lower, upper, bounded)
                x[i] = value
                point[i] = value
            f_new = evaluate(fun, jac, args, point, other)
            evaluations += 1
            norm_new = stationarity_norm_serial(x, other, lower, upper)
            if not (math.isfinite(f_new) and math.isfinite(norm_new)):
                x[:] = previous
                outcome = NOT_FINITE
                break
            f, norm = float(f_new), norm_new
            current, other = other, current
            if record:
                _record(history, vectors, step, f, x)
        swaps = evaluations - 1 if outcome == NOT_FINITE else evaluations
        if swaps % 2 == 1:
            g[:] = current
        counts[0] += evaluations  # one step, one evaluation of f and of g
        counts[1] += evaluations
        counts[2] += evaluations
        return outcome, f, norm

    return compiled_loop


def compiled_loop(rule, fun, jac, bounded):
    """The whole-loop driver of ``rule`` for the jitted objective ``fun`` with ``jac`` (True or a
    jitted gradient), called as :func:`gradient_protocol` says; see the module docstring.

    ``compiled_loop(args, x, f, g, spare, point, norm, state, table, previous, lower, upper, gtol,
    history, vectors, counts) -> (outcome, f, norm)``; ``bounded`` says whether ``lower`` and
    ``upper`` are given (a loop is compiled for each case).
    """
    protocol, fun, jac = gradient_protocol(fun, jac)
    key = (rule.element, protocol, fun, jac, bool(bounded))
    if key not in _compiled_loops:
        _compiled_loops[key] = _build_compiled_loop(cpu.fused_update_of(rule),
                                                    rule.n_coefficients, _EVALUATE[protocol],
                                                    fun, jac, bool(bounded))
    return _compiled_loops[key]


def is_jitted(function):
    """True for numba CPU dispatchers (``@njit`` functions), which the compiled loop can call."""
    return isinstance(function, numba.core.registry.CPUDispatcher)


def block_length(t, gtol, record):
    """Steps per block of the compiled loop from step ``t``.

    Each block costs some 15 microseconds of Python around it (the block's scalars, the call into
    the loop), so blocks are long: 32768 steps when the run cannot stop early (gtol = 0: only a
    failure stops it), else 4096 doubling with the steps done, so that a run that converges early
    computes few scalars past its last step. With ``record`` (return_all) the block's iterates
    are stored too: 4096 steps at a time.
    """
    if record:
        return 4096
    return 1 << 15 if gtol == 0 else min(1 << 15, max(4096, t - 1))


def can_compile(run, fun, jac, notify, objective):
    """Whether the run can take the compiled loop: jitted ``fun`` and gradient (no finite
    differences), no callback, fixed ``args`` and a schedule of the step alone."""
    pure = getattr(run.schedule, "pure", False)
    return (notify is None and not run.stochastic and objective.fd_scheme is None and pure
            and is_jitted(fun) and (jac is True or is_jitted(jac)))


def iterate_compiled(run, fun, jac, x, f, g, spare, norm, state, lower, upper, counts, allvecs,
                     fun_history):
    """The iteration of :func:`adamnb.optimize._common.iterate` in compiled blocks.

    ``counts`` is ``[nit, nfev, njev]`` (an int64 array) and is updated. Returns
    ``(status, nit, f, g)``.
    """
    loop = compiled_loop(run.rule, fun, jac, bounded=lower.size > 0)
    stream = run.stream(x.dtype)
    previous, point = np.empty_like(x), np.empty_like(x)
    args = tuple(run.args)
    record = allvecs is not None
    while True:
        t = int(counts[0]) + 1
        if run.gtol > 0 and norm <= run.gtol:
            return 0, t - 1, f, g
        if t > run.maxiter:
            return 1, t - 1, f, g
        table = stream.columns(t, block_length(t, run.gtol, record))
        steps = table.shape[1] if record else 0
        history = np.empty(steps)
        vectors = np.empty((steps, x.size), dtype=x.dtype)
        outcome, f, norm = loop(args, x, f, g, spare, point, norm, state, table, previous, lower,
                                upper, run.gtol, history, vectors, counts)
        if record:
            done = int(counts[0]) - (t - 1) - (outcome == NOT_FINITE)
            allvecs.extend(vectors[:done].copy())
            fun_history.extend(history[:done].tolist())
        if outcome == CONVERGED:
            return 0, int(counts[0]), f, g
        if outcome == NOT_FINITE:
            return 3, int(counts[0]), f, g
