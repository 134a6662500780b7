"""``minimize_batch``: many independent starts of one problem, run in parallel.

Every start runs the same compiled loop as a single ``minimize`` on a jitted objective
(:mod:`adamnb.optimize._compiled`), one start per thread iteration (``prange``), so each start's result equals,
bit for bit, that of its own single-start run. The per-step scalars are shared: one coefficient
table serves every start, since the hyperparameters and the schedule are common.
"""

import numba
import numpy as np

from adamnb.backends import cpu
from adamnb.backends.jit import jit
from adamnb.optim import rules
from adamnb.optimize._common import as_bounds, build_result, prepare
from adamnb.optimize._compiled import (CONVERGED, NOT_FINITE, block_length, compiled_loop,
                                       is_jitted)

__all__ = ["minimize_batch"]

_RUNNING = -1
_batched_loops = {}


def _build_batched_loop(loop):
    @jit(parallel=True, cache=False)
    def batched_loop(args, X, F, G, norms, states, table, lower, upper, gtol, status, counts):
        empty_history = np.empty(0)
        for j in numba.prange(X.shape[0]):
            if status[j] != _RUNNING:
                continue
            previous = np.empty_like(X[j])
            point = np.empty_like(X[j])
            spare = np.empty_like(G[j])
            outcome, f, norm = loop(args, X[j], F[j], G[j], spare, point, norms[j], states[j],
                                    table, previous, lower, upper, gtol, empty_history,
                                    X[j:j, :], counts[j])
            F[j] = f
            norms[j] = norm
            if outcome == CONVERGED:
                status[j] = 0
            elif outcome == NOT_FINITE:
                status[j] = 3

    return batched_loop


def _batched_loop(rule, fun, jac, bounded):
    loop = compiled_loop(rule, fun, jac, bounded)
    if loop not in _batched_loops:
        _batched_loops[loop] = _build_batched_loop(loop)
    return _batched_loops[loop]


def _build_evaluate_all(combined):
    # `combined` is a closure constant so that numba types only the branch taken.
    @jit(parallel=True, cache=False)
    def evaluate_all(fun, jac, args, X, F, G, norms, lower, upper, shape_ok):
        for j in numba.prange(X.shape[0]):
            point = X[j].copy()
            if combined:
                f, g = fun(point, *args)
            else:
                f = fun(point, *args)
                g = jac(X[j].copy(), *args)
            shape_ok[j] = g.shape == X[j].shape
            if shape_ok[j]:
                F[j] = f
                for i in range(g.size):
                    G[j, i] = g[i]
                norms[j] = cpu.stationarity_norm_serial(X[j], G[j], lower, upper)

    return evaluate_all


_EVALUATE_ALL = {combined: _build_evaluate_all(combined) for combined in (False, True)}


def minimize_batch(fun, x0, args=(), method="adam", jac=True, bounds=None, tol=None,
                   options=None):
    """Run independent minimizations from each row of ``x0``, in parallel on CPU threads.

    The batched sibling of :func:`adamnb.minimize`, for multi-start global search: the same method,
    options and bounds for every start. ``fun`` and ``jac`` must be numba-jitted (``@numba.njit``)
    functions of one start's 1-D ``x`` (``jac=True``: ``fun`` returns ``(f, g)``), as the test
    functions in :mod:`adamnb.problems.functions` are. Each start's result equals, bit for bit, that of
    ``adamnb.minimize(fun, x0[j], ...)``.

    Parameters
    ----------
    fun, jac : numba-jitted callables, or jac=True
    x0 : array_like, shape (k, n)
        One start per row (float32 stays float32, anything else becomes float64). Not modified.
    args : tuple
        Extra arguments for ``fun`` and ``jac``, the same for every start.
    method : str
        As in :func:`adamnb.minimize`.
    bounds, tol, options
        As in :func:`adamnb.minimize` (``maxiter``, ``gtol`` and the method's hyperparameters;
        ``return_all`` is not supported here).

    Returns
    -------
    OptimizeResult
        Arrays over the starts: ``x`` (k, n), ``fun`` (k,), ``jac`` (k, n), ``nit``, ``nfev``,
        ``njev``, ``status`` and ``success`` (k,), ``message`` (a list); ``best``, the index of the
        start with the lowest final ``fun`` among those without status 3.

    Examples
    --------
    >>> import numpy as np, adamnb
    >>> from adamnb.problems.functions import get
    >>> rastrigin = get("rastrigin", n=2)
    >>> starts = np.random.default_rng(0).uniform(-5.12, 5.12, size=(1000, 2))
    >>> res = adamnb.minimize_batch(rastrigin.value_and_grad, starts, jac=True,
    ...                             options={"lr": 0.05, "maxiter": 2000})
    >>> bool(res.fun[res.best] < 1e-8)
    True
    """
    rule = rules.get_rule(method)
    options = dict(options or {})
    if tol is not None:
        options.setdefault("gtol", tol)
    combined = jac is True
    if not is_jitted(fun) or not (combined or is_jitted(jac)):
        raise ValueError("minimize_batch needs numba-jitted fun and jac (or fun returning (f, g) "
                         "with jac=True); for Python objectives call adamnb.minimize per start")
    run = prepare(rule, args, options)
    if run.record:
        raise ValueError("minimize_batch does not support return_all")
    if run.stochastic:
        raise ValueError("minimize_batch takes a fixed args tuple, not an iterator")

    X = np.array(x0, copy=True)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"x0 must have shape (k, n) with k, n >= 1, got {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"x0 must be real numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32 if X.dtype == np.float32 else np.float64)
    if not np.isfinite(X).all():
        raise ValueError("x0 must be finite")
    k, n = X.shape
    bound_arrays = as_bounds(bounds, n, X.dtype)
    lower, upper = bound_arrays if bound_arrays is not None else (X[0, :0], X[0, :0])
    if bound_arrays is not None:
        for row in X:
            cpu.project_vector(row, lower, upper)

    states = rule.state_vectors(run.options, n, X.dtype, starts=k)
    F, norms = np.empty(k), np.empty(k, dtype=X.dtype)
    G = np.empty_like(X)
    shape_ok = np.zeros(k, dtype=np.bool_)
    _EVALUATE_ALL[combined](fun, fun if combined else jac, run.args, X, F, G, norms, lower, upper,
                            shape_ok)
    if not shape_ok.all():
        raise ValueError("The gradient's shape differs from x's; jac must return one derivative "
                         "per element of x")
    counts = np.zeros((k, 3), dtype=np.int64)
    counts[:, 1:] = 1
    status = np.full(k, _RUNNING, dtype=np.int64)
    status[~(np.isfinite(F) & np.isfinite(norms))] = 3

    loop = _batched_loop(rule, fun, jac, bound_arrays is not None)
    stream = run.stream(X.dtype)
    t = 1
    while t <= run.maxiter and (status == _RUNNING).any():
        table = stream.columns(t, block_length(t, run.gtol, record=False))
        loop(run.args, X, F, G, norms, states, table, lower, upper, run.gtol, status, counts)
        t += table.shape[1]
    running = status == _RUNNING
    converged = running & (norms <= run.gtol) if run.gtol > 0 else np.zeros(k, bool)
    status[running] = np.where(converged[running], 0, 1)

    usable = np.flatnonzero(status != 3)
    best = int(usable[np.argmin(F[usable])]) if usable.size else -1
    result = build_result(run, X, F, G, counts[:, 0].copy(), counts[:, 1].copy(),
                          counts[:, 2].copy(), status)
    result.best = best
    return result
