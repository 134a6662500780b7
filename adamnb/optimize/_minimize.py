"""``minimize``: the update rules behind scipy.optimize.minimize's contract.

The driver follows scipy's shape: one registry of method names, a dispatcher that normalises the
inputs once and hands each method ``(fun, x0, args, jac, callback, **options)``, every method
rejecting unknown options with an ``OptimizeWarning``, and every exit built from one table of status
messages. Each method is also a callable (``adamnb.adam``, ...) that scipy's own ``minimize``
accepts as a custom method.
"""

import collections.abc
import inspect
import math
import sys
import warnings

import numpy as np
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning

from adamnb.backends import cpu as kernels
from adamnb.backends import cuda as cuda_backend
from adamnb.optim import rules
from adamnb.optim.schedules import as_schedule, schedule_values
from adamnb.optimize import _compiled as _loops
from adamnb.optimize._device import minimize_on_device

__all__ = ["minimize", "show_options", "METHODS"]

#: The method names minimize accepts (case-insensitive), one per update rule.
METHODS = tuple(rules.RULES)

#: Driver options every method accepts, beside its rule's hyperparameters.
DRIVER_OPTIONS = {
    "maxiter": (1000, "number of update steps"),
    "gtol": (1e-5, "stop, successfully, once the gradient's infinity-norm is at most gtol "
                   "(0 disables; the default is 0 when args is a minibatch iterator)"),
    "disp": (False, "print a convergence message"),
    "return_all": (False, "also return allvecs, the iterate after every step, and the per-step "
                          "objective values in fun_history"),
    "parallel": (None, "use the multi-threaded kernel (True/False; None decides by size)"),
    "eps": (None, "finite-difference step scale for jac '2-point'/'3-point' (see below)"),
}

STATUS_MESSAGES = {
    0: "Optimization terminated successfully: the gradient's infinity-norm is at most gtol.",
    1: "Maximum number of iterations has been exceeded.",
    3: "NaN or inf met in the objective or its gradient; the last finite iterate is returned.",
    99: "`callback` raised `StopIteration`.",
}

_FD_SCHEMES = ("2-point", "3-point")


def _as_x0(x0):
    """Validated float copy of x0 (never the caller's array): float32 kept, others float64."""
    x = np.atleast_1d(np.asarray(x0))
    if x.ndim != 1:
        raise ValueError(f"'x0' must only have one dimension, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("'x0' is empty; it needs at least one parameter")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"'x0' must be real numbers, got dtype {x.dtype}")
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    x = np.array(x, dtype=dtype, copy=True)
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x))
        raise ValueError(f"'x0' must be finite; x0[{bad[0]}] = {x[bad[0]]} "
                         f"({bad.size} non-finite value(s))")
    return x


def _as_bounds(bounds, n, dtype):
    """(lower, upper) arrays of length n from a Bounds or (min, max) pairs, or None."""
    if bounds is None:
        return None
    if isinstance(bounds, Bounds):
        try:
            lower = np.broadcast_to(np.asarray(bounds.lb, dtype=float), (n,))
            upper = np.broadcast_to(np.asarray(bounds.ub, dtype=float), (n,))
        except ValueError:
            raise ValueError(f"bounds must have length {n}, like x0 (or be scalars); got lb of "
                             f"shape {np.shape(bounds.lb)} and ub of shape "
                             f"{np.shape(bounds.ub)}") from None
    else:
        try:
            pairs = list(bounds)
        except TypeError:
            raise ValueError("bounds must be a scipy.optimize.Bounds or a sequence of "
                             "(min, max) pairs") from None
        if len(pairs) != n:
            raise ValueError(f"bounds has {len(pairs)} (min, max) pair(s) but x0 has {n} "
                             "element(s); give one pair per element")
        try:
            lower = np.array([-np.inf if p[0] is None else p[0] for p in pairs], dtype=float)
            upper = np.array([np.inf if p[1] is None else p[1] for p in pairs], dtype=float)
            if any(len(p) != 2 for p in pairs):
                raise TypeError
        except (TypeError, IndexError):
            raise ValueError("bounds must be (min, max) pairs, with None for unbounded") from None
    if lower.shape != (n,) or upper.shape != (n,):
        raise ValueError(f"bounds must have length {n}, like x0")
    if np.isnan(lower).any() or np.isnan(upper).any():
        raise ValueError("bounds must not contain NaN (use None or +-inf for unbounded)")
    bad = np.flatnonzero(lower > upper)
    if bad.size:
        i = bad[0]
        raise ValueError(f"bounds are inconsistent: lower bound {lower[i]} > upper bound "
                         f"{upper[i]} at index {i}")
    if np.isinf(lower).all() and np.isinf(upper).all() and (lower < 0).all() and (upper > 0).all():
        return None
    return lower.astype(dtype), upper.astype(dtype)


class _Objective:
    """fun and jac behind one call, ``value_and_grad(x, args) -> (f, g)``, counting evaluations.

    ``jac`` is None/'2-point'/'3-point' (finite differences), True (``fun`` returns ``(f, g)``) or a
    callable ``jac(x, *args)``. Finite differences use the step
    ``h_i = eps * max(1, |x_i|)`` with eps = sqrt(machine epsilon) for '2-point' (forward
    differences, backward where x + h leaves the bounds) and eps = cbrt(machine epsilon) for
    '3-point' (central differences, one-sided next to a bound); machine epsilon is x's dtype's, and
    the option ``eps`` overrides the scale.
    """

    def __init__(self, fun, jac, x, bounds, fd_eps):
        self.fun, self.jac = fun, jac
        self.nfev = self.njev = 0
        self.dtype = x.dtype
        self.shape = x.shape
        self.bounds = bounds
        if jac is None:
            jac = "2-point"
        if isinstance(jac, str):
            if jac not in _FD_SCHEMES:
                raise ValueError(f"jac must be callable, True, None, '2-point' or '3-point'; "
                                 f"got {jac!r}")
            power = 0.5 if jac == "2-point" else 1.0 / 3.0
            self.fd_scheme = jac
            self.fd_eps = fd_eps if fd_eps is not None else np.finfo(x.dtype).eps ** power
        elif jac is True or callable(jac):
            self.fd_scheme = None
        else:
            raise ValueError(f"jac must be callable, True, None, '2-point' or '3-point'; "
                             f"got {jac!r}")

    def _scalar(self, value):
        if type(value) is float:  # the common case, checked first for a lean per-step path
            return value
        f = np.asarray(value)
        if f.size != 1 or f.ndim > 1:
            raise ValueError("The user-provided objective function must return a scalar value, "
                             f"got an array of shape {f.shape}")
        if f.dtype.kind not in "biuf":
            raise ValueError(f"The objective function returned {value!r}; expected a real number")
        return float(f.reshape(()))

    def _gradient(self, value):
        if type(value) is np.ndarray and value.dtype is self.dtype and value.shape == self.shape \
                and value.flags.c_contiguous:
            return value
        g = np.asarray(value, dtype=self.dtype)
        if g.shape != self.shape:
            raise ValueError(f"The gradient has shape {g.shape} but x has shape {self.shape}; "
                             "jac must return one derivative per element of x")
        return np.ascontiguousarray(g)

    def value(self, x, args):
        self.nfev += 1
        return self._scalar(self.fun(x, *args))

    def __call__(self, x, args):
        if self.jac is True:
            self.nfev += 1
            self.njev += 1
            result = self.fun(x, *args)
            if not isinstance(result, tuple) or len(result) != 2:
                raise ValueError("with jac=True, fun must return a tuple (f, g)")
            return self._scalar(result[0]), self._gradient(result[1])
        f = self.value(x, args)
        if self.fd_scheme is None:
            self.njev += 1
            return f, self._gradient(self.jac(x, *args))
        return f, self._finite_difference(x, f, args)

    def _finite_difference(self, x, f0, args):
        h = self.fd_eps * np.maximum(1.0, np.abs(x))
        g = np.empty_like(x)
        point = x.copy()
        lower, upper = self.bounds if self.bounds is not None else (None, None)
        for i in range(x.size):
            forward, backward = x[i] + h[i], x[i] - h[i]
            fits_forward = upper is None or forward <= upper[i]
            fits_backward = lower is None or backward >= lower[i]
            if self.fd_scheme == "3-point" and fits_forward and fits_backward:
                point[i] = forward
                f_plus = self.value(point, args)
                point[i] = backward
                f_minus = self.value(point, args)
                g[i] = (f_plus - f_minus) / (forward - backward)
            else:
                step = forward if fits_forward else backward
                point[i] = step
                g[i] = (self.value(point, args) - f0) / (step - x[i])
            point[i] = x[i]
        return g


def _wrap_callback(callback, copy=np.copy):
    """scipy's two callback styles: callback(intermediate_result) by that name, else callback(xk).

    Either way the callback gets ``copy(x)``, never the iterate the driver keeps updating.
    """
    if callback is None:
        return None
    if not callable(callback):
        raise ValueError(f"callback must be callable, got {callback!r}")
    try:
        parameters = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        parameters = set()
    if parameters == {"intermediate_result"}:
        return lambda x, f: callback(intermediate_result=OptimizeResult(x=copy(x), fun=f))
    return lambda x, f: callback(copy(x))


def _caller_stacklevel():
    """The ``stacklevel`` that points a warning at the first frame outside adamnb.

    Call it in the function that warns: the drivers reach that function at different depths
    (``minimize``, ``minimize_batch``, the method callables, the device driver).
    """
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("adamnb"):
        level += 1
        frame = frame.f_back
    return level


def _split_options(rule, options):
    """Separate driver options from the rule's hyperparameters; warn on unknown names."""
    hyperparameter_names = {hp.name for hp in rule.hyperparameters}
    driver = {name: default for name, (default, _) in DRIVER_OPTIONS.items()}
    hyperparameters = {}
    for name, value in options.items():
        if name in DRIVER_OPTIONS:
            driver[name] = value
        elif name in hyperparameter_names or name in rule.fixed:
            hyperparameters[name] = value
        elif name == "tol":  # scipy passes tol this way to custom methods
            continue
        else:
            warnings.warn(f"Unknown solver option: {name} (method {rule.name!r} accepts "
                          f"{', '.join(sorted(hyperparameter_names | set(DRIVER_OPTIONS)))})",
                          OptimizeWarning, stacklevel=_caller_stacklevel())
    return driver, hyperparameters


def _check_driver_options(driver):
    maxiter = driver["maxiter"]
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise ValueError(f"Invalid maxiter: {maxiter!r}; expected an integer >= 0")
    gtol = driver["gtol"]
    if isinstance(gtol, bool) or not isinstance(gtol, (int, float, np.floating)) \
            or not gtol >= 0:
        raise ValueError(f"Invalid gtol: {gtol!r}; expected a number >= 0")
    if driver["eps"] is not None and not (isinstance(driver["eps"], (int, float))
                                          and driver["eps"] > 0):
        raise ValueError(f"Invalid eps: {driver['eps']!r}; expected a number > 0")


class _Run:
    """The per-step scalars of one run, computed a block of steps at a time."""

    #: Steps per table on the Python path.
    BLOCK = 512

    def __init__(self, rule, options, schedule, maxiter, dtype):
        self.rule, self.options, self.schedule, self.maxiter = rule, options, schedule, maxiter
        self.dtype = dtype
        self.scalars = dict(rule.scalar_state)
        self.first = 1  # step number of the table's first column

    def compiled_block(self, t, gtol, record):
        """Steps per table of the compiled loop from step t.

        Each block costs some 15 microseconds of Python around it (the table's NumPy calls, the
        call into the loop), so blocks are long: 32768 steps at once when the run cannot stop
        early (gtol = 0: only a failure stops it), else 4096 doubling with the steps done, so
        that a run that converges early computes few coefficients ahead of its last step. With
        ``record`` (return_all) the block's iterates are stored too: 4096 steps at a time.
        """
        if record:
            return 4096
        return 1 << 15 if gtol == 0 else min(1 << 15, max(4096, t - 1))

    def table(self, t, block=BLOCK):
        """The coefficients of steps t, t+1, ... (at most ``block``, never past maxiter), one
        column per step, in x's dtype (:meth:`adamnb.optim.rules.UpdateRule.coefficient_columns`)."""
        steps = np.arange(t, min(t + block, self.maxiter + 1), dtype=np.int64)
        table, self.scalars = self.rule.coefficient_columns(
            self.options, steps, schedule_values(self.schedule, steps), self.scalars, self.dtype)
        self.first = t
        return table


def _python_path(run, objective, step_args, next_batch, x, f, g, state, lower, upper, gtol,
                 record, allvecs, fun_history, notify, parallel):
    """One Python iteration per step around a fused compiled step (or, for long vectors, the
    threaded kernel); returns (status, nit, f, g)."""
    rule = run.rule
    threaded = kernels.use_parallel(parallel, x.size) and x.size >= kernels.PARALLEL_THRESHOLD
    fused = _loops.fused_step(rule)
    kernel = kernels.cpu_kernel(rule, True) if threaded else None
    bounded = lower.size > 0
    previous = np.empty_like(x)
    f_previous, g_previous = f, g
    table = None
    nit = 0
    while True:
        t = nit + 1
        if t > run.maxiter:
            norm = np.abs(g).max()
            if not math.isfinite(norm):
                x[:] = previous
                return 3, nit, f_previous, g_previous
            return (0 if gtol > 0 and norm <= gtol else 1), nit, f, g
        if table is None or t - run.first >= table.shape[1]:
            table = run.table(t)
        column = t - run.first
        if threaded:
            norm = np.abs(g).max()
            outcome = (_loops.NOT_FINITE if not math.isfinite(norm) else
                       _loops.CONVERGED if gtol > 0 and norm <= gtol else _loops.STEPPED)
            if outcome == _loops.STEPPED:
                np.copyto(previous, x)
                kernel(x, g, state, kernels.cast_coefficients(table[:, column], x.dtype))
                if bounded:
                    np.clip(x, lower, upper, out=x)
        else:
            outcome = fused(x, g, state, table, column, previous, lower, upper, gtol)
        if outcome == _loops.CONVERGED:
            return 0, nit, f, g
        if outcome == _loops.NOT_FINITE:  # the gradient of the last step was not finite
            x[:] = previous
            return 3, nit, f_previous, g_previous
        f_previous, g_previous = f, g
        nit = t
        if next_batch is not None:
            step_args = next_batch()
        f, g = objective(x, step_args)
        if not math.isfinite(f):
            x[:] = previous
            return 3, nit, f_previous, g_previous
        if record:
            allvecs.append(x.copy())
            fun_history.append(f)
        if notify is not None:
            try:
                notify(x, f)
            except StopIteration:
                return 99, nit, f, g


def _compiled_path(run, fun, jac, args, x, f, g, state, lower, upper, gtol, record, allvecs,
                   fun_history, objective):
    """Whole blocks of steps in one compiled loop; returns (status, nit, f, g)."""
    loop = _loops.compiled_loop(run.rule, fun, jac)
    counts = np.array([0, objective.nfev, objective.njev], dtype=np.int64)
    previous = np.empty_like(x)
    g = np.array(g, dtype=x.dtype)
    spare = np.empty_like(g)
    args = tuple(args)
    status = None
    while status is None:
        t = int(counts[0]) + 1
        if t > run.maxiter:
            status = 0 if gtol > 0 and np.abs(g).max() <= gtol else 1
            break
        table = run.table(t, block=run.compiled_block(t, gtol, record))
        steps = table.shape[1] if record else 0
        history = np.empty(steps)
        vectors = np.empty((steps, x.size), dtype=x.dtype)
        outcome, f = loop(args, x, f, g, spare, state, table, previous, lower, upper, gtol,
                          history, vectors, counts)
        if record:
            done = int(counts[0]) - (t - 1) - (outcome == _loops.NOT_FINITE)
            allvecs.extend(vectors[:done].copy())
            fun_history.extend(history[:done].tolist())
        if outcome == _loops.CONVERGED:
            status = 0
        elif outcome == _loops.NOT_FINITE:
            status = 3
    objective.nfev, objective.njev = int(counts[1]), int(counts[2])
    return status, int(counts[0]), f, g


def _minimize_rule(rule, fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
                   constraints=(), callback=None, **options):
    """Run ``rule`` on ``fun`` from ``x0``: the body of every method callable."""
    if cuda_backend.is_device_array(x0):  # x stays on the GPU: adamnb.optimize._device
        return minimize_on_device(rule, fun, x0, args=args, jac=jac, hess=hess, hessp=hessp,
                                  bounds=bounds, constraints=constraints, callback=callback,
                                  **options)
    for name, given in (("hess", hess), ("hessp", hessp)):
        if given is not None:
            warnings.warn(f"Method {rule.name} does not use Hessian information ({name}).",
                          RuntimeWarning, stacklevel=_caller_stacklevel())
    if constraints is not None and np.any(constraints):
        warnings.warn(f"Method {rule.name} cannot handle constraints.", RuntimeWarning,
                      stacklevel=_caller_stacklevel())
    stochastic = isinstance(args, collections.abc.Iterator)
    if not stochastic and not isinstance(args, tuple):
        args = (args,)
    driver, hyperparameters = _split_options(rule, options)
    if "tol" in options and "gtol" not in options and options["tol"] is not None:
        driver["gtol"] = options["tol"]
    elif stochastic and "gtol" not in options:
        driver["gtol"] = 0.0
    _check_driver_options(driver)
    hp = rule.validate(hyperparameters)
    schedule = as_schedule(hp["lr"])

    x = _as_x0(x0)
    bound_arrays = _as_bounds(bounds, x.size, x.dtype)
    if bound_arrays is not None:
        np.clip(x, *bound_arrays, out=x)
    objective = _Objective(fun, jac, x, bound_arrays, driver["eps"])
    notify = _wrap_callback(callback)
    state = rule.state_vectors(hp, x.size, x.dtype)
    run = _Run(rule, hp, schedule, int(driver["maxiter"]), x.dtype)
    gtol = float(driver["gtol"])
    record = bool(driver["return_all"])
    lower, upper = bound_arrays if bound_arrays is not None else (x[:0], x[:0])

    def batch():
        try:
            return tuple(next(args))
        except StopIteration:
            raise ValueError("the args iterator was exhausted before maxiter steps; use an "
                             "endless iterator such as adamnb.minibatches(...)") from None

    step_args = batch() if stochastic else args
    f, g = objective(x, step_args)
    allvecs, fun_history = [x.copy()], [f]
    if not (np.isfinite(f) and np.isfinite(g).all()):
        status, nit = 3, 0
    elif (notify is None and not stochastic and objective.fd_scheme is None
          and _loops.is_jitted(fun) and (jac is True or _loops.is_jitted(jac))):
        status, nit, f, g = _compiled_path(run, fun, jac, args, x, f, g, state, lower, upper,
                                           gtol, record, allvecs, fun_history, objective)
    else:
        status, nit, f, g = _python_path(run, objective, step_args, batch if stochastic else None,
                                         x, f, g, state, lower, upper, gtol, record, allvecs,
                                         fun_history, notify, driver["parallel"])

    result = OptimizeResult(x=x, fun=f, jac=g, nit=nit, nfev=objective.nfev, njev=objective.njev,
                            status=status, success=status == 0,
                            message=STATUS_MESSAGES[status])
    if record:
        result.allvecs = allvecs
        result.fun_history = np.array(fun_history)
    if driver["disp"]:
        print(f"{'Optimization terminated successfully.' if status == 0 else 'Warning: ' + result.message}\n"
              f"         Current function value: {f:.6g}\n"
              f"         Iterations: {nit}\n"
              f"         Function evaluations: {objective.nfev}\n"
              f"         Gradient evaluations: {objective.njev}")
    return result


def _method_callable(rule):
    def method(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None, constraints=(),
               callback=None, **options):
        return _minimize_rule(rule, fun, x0, args=args, jac=jac, hess=hess, hessp=hessp,
                              bounds=bounds, constraints=constraints, callback=callback, **options)

    method.__name__ = method.__qualname__ = rule.name
    method.__module__ = "adamnb"
    method.__doc__ = (f"Minimize a scalar function with {rule.summary}.\n\n"
                      f"Usable as ``adamnb.minimize(fun, x0, method='{rule.name}', ...)`` and as a "
                      f"custom method of scipy:\n``scipy.optimize.minimize(fun, x0, "
                      f"method=adamnb.{rule.name}, jac=..., options={{...}})``.\n\n"
                      + _options_text(rule))
    return method


def minimize(fun, x0, args=(), method="adam", jac=None, hess=None, hessp=None, bounds=None,
             constraints=(), tol=None, callback=None, options=None):
    """Minimize a scalar function of one or more variables with a first-order update rule.

    The signature, arguments and result are those of ``scipy.optimize.minimize``.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``, with ``x`` a 1-D array of x0's dtype (float32 stays float32;
        anything else becomes float64).
    x0 : array_like, shape (n,)
        Initial guess. Never modified. A CUDA device array (numba's, or any object with
        ``__cuda_array_interface__``) runs the whole minimization on the GPU
        (:func:`adamnb.optimize._device.minimize_on_device`): ``fun`` then takes and returns
        device arrays (``jac=True`` or a callable ``jac``), x stays on the device, only scalars
        come back per step, and ``res.x`` is a device array.
    args : tuple or iterator, optional
        Extra arguments passed to ``fun`` and ``jac``. An *iterator* (for example
        :func:`adamnb.minibatches`) makes the objective stochastic: every step draws the next
        element, a tuple, and passes it as the extra arguments of that step's ``fun`` and ``jac``
        (so the reported ``fun`` is the last minibatch's value, and ``gtol`` defaults to 0).
    method : str or callable, default "adam"
        One of :data:`METHODS` (case-insensitive): 'sgd', 'adagrad', 'rmsprop', 'adadelta', 'adam',
        'amsgrad', 'adamw', 'adamax', 'nadam', 'radam'; or a callable called as scipy calls custom
        methods.
    jac : callable, True, '2-point', '3-point' or None, optional
        The gradient: ``jac(x, *args)``; True if ``fun`` returns ``(f, g)``; otherwise finite
        differences ('2-point' forward, the default, or '3-point' central), with the step
        ``h_i = eps * max(1, |x_i|)``, eps the square (2-point) or cube (3-point) root of x's machine
        epsilon unless the option ``eps`` sets it; one-sided next to a bound.
    hess, hessp : optional
        Not used by these methods (a RuntimeWarning says so, as in scipy).
    bounds : scipy.optimize.Bounds or sequence of (min, max), optional
        Box constraints (None for unbounded), enforced by projection after every step; x0 is
        projected first.
    constraints : optional
        Not supported (a RuntimeWarning says so).
    tol : float, optional
        Sets ``gtol``.
    callback : callable, optional
        ``callback(intermediate_result)`` (an OptimizeResult with ``x`` and ``fun``) if its only
        parameter has that name, else ``callback(xk)`` with a copy of the iterate; called after
        every step. Raising ``StopIteration`` ends the run with status 99.
    options : dict, optional
        The method's hyperparameters (:func:`show_options`) and ``maxiter`` (number of update
        steps, default 1000), ``gtol`` (default 1e-5), ``disp``, ``return_all``, ``parallel``,
        ``eps``. Unknown options warn with ``scipy.optimize.OptimizeWarning``.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x``, ``fun`` and ``jac`` at the final iterate, ``nit`` (update steps), ``nfev``,
        ``njev``, ``status``, ``success`` and ``message``. Status 0: converged (gtol); 1: maxiter
        reached (``success`` is False, as in scipy); 3: NaN or inf met in f or its gradient (the
        last finite iterate is returned); 99: the callback raised StopIteration. With
        ``return_all``, also ``allvecs`` and ``fun_history``.

    Notes
    -----
    When ``fun`` and the gradient are numba-jitted functions (``@numba.njit``: ``fun`` with
    ``jac=True``, or ``fun`` and ``jac``), with no callback, a fixed ``args`` tuple and no finite
    differences, the whole loop runs compiled, with the same results, to the bit, as the loop in
    Python. Such a gradient function may carry an attribute ``into``: a jitted
    ``into(x, g_out, *args)`` that writes the same gradient into the array ``g_out`` (and returns
    the value of ``fun``), which the compiled loop then calls instead, allocating nothing per
    step. The functions of :mod:`adamnb.problems.functions` carry one::

        @numba.njit
        def loss_into(x, g_out):
            for i in range(x.size):
                g_out[i] = 2.0 * x[i]
            return float(x @ x)

        @numba.njit
        def loss(x):
            g = np.empty_like(x)
            return loss_into(x, g), g

        loss.into = loss_into
        adamnb.minimize(loss, x0, jac=True)

    Examples
    --------
    >>> import numpy as np, adamnb
    >>> from scipy.optimize import rosen, rosen_der
    >>> res = adamnb.minimize(rosen, [-1.2, 1.0], method="adam", jac=rosen_der,
    ...                       options={"lr": 0.02, "maxiter": 5000})
    >>> bool(np.allclose(res.x, [1, 1], atol=1e-3))
    True
    """
    options = dict(options or {})
    if tol is not None:
        options.setdefault("gtol", tol)
    if callable(method):
        if not cuda_backend.is_device_array(x0):  # a device array stays where it is
            # As scipy does before calling a custom method: an array x0, integers as floats.
            x0 = np.atleast_1d(np.asarray(x0))
            if x0.ndim != 1:
                raise ValueError(f"'x0' must only have one dimension, got shape {x0.shape}")
            if x0.dtype.kind in "biu":
                x0 = x0.astype(float)
        if not isinstance(args, (tuple, collections.abc.Iterator)):
            args = (args,)
        return method(fun, x0, args=args, jac=jac, hess=hess, hessp=hessp, bounds=bounds,
                      constraints=constraints, callback=callback, **options)
    if not isinstance(method, str):
        raise ValueError(f"method must be a string or a callable, got {method!r}")
    rule = rules.get_rule(method)
    return _minimize_rule(rule, fun, x0, args=args, jac=jac, hess=hess, hessp=hessp,
                          bounds=bounds, constraints=constraints, callback=callback, **options)


def _options_text(rule):
    title = f"Options for method {rule.name!r}"
    lines = [title, "-" * len(title), "Hyperparameters (torch.optim's names and defaults):"]
    for hp in rule.hyperparameters:
        default = rule.fixed.get(hp.name, hp.default)
        pinned = " (fixed by this method)" if hp.name in rule.fixed else ""
        lines.append(f"    {hp.name} = {default!r}{pinned}: {hp.doc}; {hp.range_text()}")
    lines.append("Driver options:")
    for name, (default, doc) in DRIVER_OPTIONS.items():
        lines.append(f"    {name} = {default!r}: {doc}")
    return "\n".join(lines) + "\n"


def show_options(method=None, disp=True):
    """Show the options of one method, or of all methods, as scipy.optimize.show_options does.

    Parameters
    ----------
    method : str, optional
        A method name; None shows every method.
    disp : bool, default True
        Print the text (and return None); False returns it instead.
    """
    if method is None:
        text = "\n".join(_options_text(rule) for rule in rules.RULES.values())
    else:
        text = _options_text(rules.get_rule(method))
    if disp:
        print(text)
        return None
    return text


#: The method callables, adamnb.adam etc., each a scipy custom method.
METHOD_CALLABLES = {name: _method_callable(rule) for name, rule in rules.RULES.items()}
