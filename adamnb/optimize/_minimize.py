"""``minimize``: the update rules behind scipy.optimize.minimize's contract.

The dispatcher follows scipy's shape: one registry of method names (:data:`METHODS`, from the rule
registry), inputs normalised once, and each method a callable ``method(fun, x0, args, jac, ...,
callback, **options)`` (``adamnb.adam`` ...) that scipy's own ``minimize`` accepts as a custom
method. Each method callable picks the driver: the device driver for CUDA arrays
(:mod:`._device`), the compiled loop for numba-jitted objectives (:mod:`._compiled`), the host
loop otherwise (:mod:`._host`); all run the one iteration of :mod:`._common` and build their
result there.
"""

import textwrap

import numpy as np

from adamnb.backends import cpu
from adamnb.backends import cuda as cuda_backend
from adamnb.optim import rules
from adamnb.optimize._common import (DRIVER_OPTIONS, as_bounds, as_options, as_x0, build_result,
                                     iterate, prepare, reevaluator, warn_unused, wrap_callback)
from adamnb.optimize._compiled import compiled_route, iterate_compiled
from adamnb.optimize._device import minimize_on_device
from adamnb.optimize._host import HostSteps, Objective

__all__ = ["minimize", "show_options", "METHODS", "METHOD_CALLABLES"]

#: The method names minimize accepts (case-insensitive), one per update rule.
METHODS = tuple(rules.RULES)


def minimize_with_rule(rule, fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
                       constraints=(), callback=None, **options):
    """Run ``rule`` on ``fun`` from ``x0``: the body of every method callable (see
    :func:`minimize` for the arguments)."""
    if cuda_backend.is_device_array(x0):  # x stays on the GPU
        return minimize_on_device(rule, fun, x0, args=args, jac=jac, hess=hess, hessp=hessp,
                                  bounds=bounds, constraints=constraints, callback=callback,
                                  **options)
    warn_unused(rule, hess, hessp, constraints)
    run = prepare(rule, args, options)
    x = as_x0(x0)
    layout = run.bind(x.size)
    bound_arrays = as_bounds(bounds, x.size, x.dtype)
    lower, upper = bound_arrays if bound_arrays is not None else (x[:0], x[:0])
    if bound_arrays is not None:
        cpu.project_vector(x, lower, upper)
    objective = Objective(fun, jac, x, bound_arrays, run.finite_diff_rel_step)
    notify = wrap_callback(callback)
    states = layout.new_states(x.dtype)
    steps = HostSteps(layout, objective, x, lower, upper, run.parallel)
    g, spare = np.empty_like(x), np.empty_like(x)
    f, norm = steps.evaluate(x, run.next_args(), g)
    allvecs, fun_history = ([x.copy()], [f]) if run.record else (None, None)
    if not (np.isfinite(f) and np.isfinite(norm)):
        status, nit = 3, 0
    elif (loop := compiled_route(run, fun, jac, notify, objective, x, f, g, norm, *states[0],
                                 lower, upper)) is not None:
        counts = np.array([0, objective.nfev, objective.njev], dtype=np.int64)
        status, nit, f, g = iterate_compiled(run, loop, x, f, g, spare, norm, *states[0], lower,
                                             upper, counts, allvecs, fun_history)
        objective.nfev, objective.njev = int(counts[1]), int(counts[2])
    else:
        status, nit, f, g = iterate(run, steps, x, f, g, spare, norm, states, notify, allvecs,
                                    fun_history)
    return build_result(run, x, f, g, nit, objective.nfev, objective.njev, status, allvecs,
                        fun_history, state=states,
                        reevaluate=reevaluator(run, steps.evaluate, objective, np.empty_like))


def _method_callable(rule):
    def method(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None, constraints=(),
               callback=None, **options):
        return minimize_with_rule(rule, fun, x0, args=args, jac=jac, hess=hess, hessp=hessp,
                                  bounds=bounds, constraints=constraints, callback=callback,
                                  **options)

    method.__name__ = method.__qualname__ = rule.name
    method.__module__ = "adamnb"
    method.__doc__ = (f"Minimize a scalar function with {rule.summary}.\n\n"
                      f"Usable as ``adamnb.minimize(fun, x0, method='{rule.name}', ...)`` and as a "
                      f"custom method of scipy:\n``scipy.optimize.minimize(fun, x0, "
                      f"method=adamnb.{rule.name}, jac=..., options={{...}})``.\n\n"
                      + _METHOD_SECTIONS + _options_block(rule))
    return method


def _options_block(rule):
    # show_options' text without its underlined title, which numpydoc would read as a section
    # of the docstring even inside a literal block
    return textwrap.indent("\n".join(_options_text(rule).splitlines()[2:]), "    ") + "\n"


#: The numpydoc sections of every method callable (``adamnb.adam`` ...): scipy calls a custom
#: method with minimize's arguments and its options as keywords.
_METHOD_SECTIONS = """\
Parameters
----------
fun, x0, args, jac, hess, hessp, bounds, constraints, callback
    As in :func:`adamnb.minimize` (``hess``, ``hessp`` and ``constraints`` are not used: a
    RuntimeWarning says so, as in scipy).
**options
    The options listed below, as keywords (scipy passes its ``options`` dict this way).

Returns
-------
scipy.optimize.OptimizeResult
    As :func:`adamnb.minimize` returns.

Raises
------
ValueError
    A bad ``x0``, ``bounds``, option value or ``jac``; an objective returning a non-scalar or a
    gradient of the wrong shape.
TypeError
    ``fun`` or ``callback`` is not callable.

Notes
-----
The method's options, as :func:`adamnb.show_options` prints them::

"""


def minimize(fun, x0, args=(), method="adam", jac=None, hess=None, hessp=None, bounds=None,
             constraints=(), tol=None, callback=None, options=None):
    """Minimize a scalar function of one or more variables with a first-order update rule.

    The signature, arguments and result are those of ``scipy.optimize.minimize``.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float`` (or any size-1 array), with ``x`` a 1-D array of x0's dtype
        (float32 stays float32; anything else becomes float64). Every call gets the point as an
        array of its own, as in scipy: keeping or changing it does not change the run.
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
        One of :data:`METHODS` (case-insensitive; ``adamnb methods`` lists them with their
        sources); or a callable, called as scipy calls custom methods (with ``tol`` as an
        option).
    jac : callable, True, False, None, '2-point' or '3-point', optional
        The gradient: ``jac(x, *args)`` returning shape (n,); True if ``fun`` returns
        ``(f, g)``; otherwise (None, False, '2-point', '3-point') finite differences as
        ``scipy.optimize.approx_derivative`` takes them: forward ('2-point', the default) or
        central ('3-point') with the relative step ``finite_diff_rel_step``, one-sided next to a
        bound, shrunk to fit a narrow box, and never evaluated outside the bounds (a variable
        fixed by its bounds gets derivative 0). Each estimate counts as one ``njev`` and its
        points as ``nfev``.
    hess, hessp : optional
        Not used by these methods (a RuntimeWarning says so, as in scipy).
    bounds : scipy.optimize.Bounds or sequence of (min, max), optional
        Box constraints (None for unbounded), enforced by projection after every step; x0 is
        projected first.
    constraints : optional
        Not supported (a RuntimeWarning says so).
    tol : float, optional
        Sets ``gtol`` (for a callable ``method``, passed to it as the option ``tol``, as scipy
        does).
    callback : callable, optional
        ``callback(intermediate_result)`` (an OptimizeResult with ``x`` and ``fun``) if its only
        parameter has that name, else ``callback(xk)`` with a copy of the iterate; called after
        every step. Raising ``StopIteration`` ends the run with status 99.
    options : dict, optional
        The method's hyperparameters (:func:`show_options`; torch's names, e.g. ``lr``,
        ``beta1``, ``eps``) and the driver options: ``maxiter`` (number of update steps, default
        1000; any whole number, 1e4 included), ``gtol`` (default 1e-5; with bounds it applies
        to the projected gradient, as L-BFGS-B's ``pgtol``), ``disp``, ``return_all``,
        ``parallel``, ``finite_diff_rel_step``, ``compiled`` and ``fast`` (see the Notes). No
        hyperparameter shares a name with a driver option. Unknown options warn with
        ``scipy.optimize.OptimizeWarning``.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x``, ``fun`` and ``jac`` at the final iterate, ``nit`` (update steps), ``nfev``,
        ``njev``, ``status``, ``success`` and ``message``. Status 0: converged (gtol); 1: maxiter
        reached (``success`` is False, as in scipy); 3: NaN or inf met in f or anywhere in its
        gradient (the last finite iterate is returned, with its f and gradient, and ``nit``
        counts the steps that made it: the rejected step counts in ``nfev`` only; the
        optimizer state, and the outputs computed from it such as ``res.ax`` and ``res.z``,
        keep the rejected step's update, and schedule-free AdamW's ``res.x`` is then its last
        finite iterate ``y``); 99: the
        callback raised StopIteration. ``jac`` is an array of the result's own, never one the
        user's ``jac`` returned. A rule whose result is another point than its iterate
        (schedule-free AdamW's evaluation point) reports ``fun`` and ``jac`` at ``res.x``,
        evaluated once more after the run (counted in ``nfev`` and ``njev``). With
        ``return_all``, also ``allvecs`` and ``fun_history`` (x0 and every accepted iterate).

    Raises
    ------
    ValueError
        A bad ``x0``, ``bounds``, option value, ``jac`` or method name; an objective returning
        a non-scalar or a gradient of the wrong shape.
    TypeError
        ``method`` is neither a string nor callable; ``fun`` or ``callback`` is not callable.

    Notes
    -----
    When ``fun`` and the gradient are numba-jitted functions (``@numba.njit``: ``fun`` with
    ``jac=True``, or ``fun`` and ``jac``), with no callback, a fixed ``args`` tuple and no finite
    differences, and a learning rate that is a number or a built-in schedule, the whole loop can
    run compiled, with the same results, to the bit, as the loop in Python. A callable ``lr`` is
    called once per step, at that step (after the previous step's callback). Such a gradient
    function may carry an attribute ``into``: a jitted ``into(x, g_out, *args)`` that writes the
    same gradient into the array ``g_out`` (and returns the value of ``fun``), which the compiled
    loop then calls instead, allocating nothing per step. The functions of
    :mod:`adamnb.problems.functions` carry one::

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

    What compiling costs, and when it happens (``options["compiled"]``): a compiled loop is
    built for each method, objective, bounds or not and dtype, in one to two seconds (measured
    on a 2-core machine; the first compile of a process takes several seconds more, as it also
    starts numba's compiler: ``docs/benchmarks.md``), after which a step costs some 30-90 ns
    instead of the host loop's 2.5 us with an ``into`` (Adam on 2-D Rosenbrock: 50 ns on a
    2-core Intel Xeon, 48 ns on an AMD EPYC), and more with a gradient returned as a new array,
    allocated and freed at every step (51 to 62 ns on that AMD EPYC). The loops around the
    functions of :mod:`adamnb.problems.functions` are cached on disk: a second process loads them
    in milliseconds. A loop around your own jitted function is compiled at most once per process
    (numba cannot cache it across processes). With ``compiled=None`` (the default) ``minimize``
    compiles only when that pays off: it takes a loop that is ready (compiled in this process, or
    on disk), and otherwise the host loop, until the host steps taken with that objective in this
    process, the current run's included, would cost more than a compile; then it compiles. So a
    short run never waits for a compile that costs more than the run, and many short runs pay at
    most about twice what the better choice would have cost. ``compiled=True`` compiles at once
    (a ValueError says why a run cannot be compiled), ``compiled=False`` never does.

    An allocation-free ``into`` is compiled into the loop itself (no call per step) where that
    cannot change a result: a function compiled without ``fastmath``, ``parallel`` or
    ``boundscheck`` options, with no division or remainder in its own code (the loop's error
    model would turn a ``ZeroDivisionError`` into inf), and reading no global variable that holds
    data (numba freezes such a value when it compiles your function; a copy compiled later would
    read the value bound then); otherwise it is called. An objective that
    allocates is called through a small compiled adapter that copies its gradient and frees the
    array, so that the loop itself touches no reference count.

    ``options={"fast": True}`` compiles the loop (and an objective compiled into it) with
    fused multiply-adds and reciprocals: a shorter chain of operations per step, and results
    that are no longer the host loop's bits: one step is within 4 units in the last place of x
    of the exact step (plus 1e-14 of the step's length); on a convex problem 2000 steps stay
    within 1e-12 of ``|x0|``; on a non-convex one the two paths may drift apart while reaching
    the same minimum. It exists in compiled loops and :func:`adamnb.minimize_batch` only: a run
    with ``fast=True`` takes the compiled loop at once whatever the expected cost (so that
    the same call always gives the same result), and one that cannot take it, or that asks
    for ``compiled=False`` too, raises a ValueError.

    Examples
    --------
    >>> import numpy as np, adamnb
    >>> from scipy.optimize import rosen, rosen_der
    >>> res = adamnb.minimize(rosen, [-1.2, 1.0], method="adam", jac=rosen_der,
    ...                       options={"lr": 0.02, "maxiter": 5000})
    >>> bool(np.allclose(res.x, [1, 1], atol=1e-3))
    True
    """
    options = as_options(options)
    if callable(method):
        # As scipy does for a custom method: an array x0 (integers as floats), a tuple of args,
        # and tol handed over as the option `tol`.
        if not cuda_backend.is_device_array(x0):
            x0 = np.atleast_1d(np.asarray(x0))
            if x0.ndim != 1:
                raise ValueError(f"'x0' must only have one dimension, got shape {x0.shape}")
            if x0.dtype.kind in "biu":
                x0 = x0.astype(float)
        if not isinstance(args, tuple):
            args = (args,)
        if tol is not None:
            options.setdefault("tol", tol)
        return method(fun, x0, args=args, jac=jac, hess=hess, hessp=hessp, bounds=bounds,
                      constraints=constraints, callback=callback, **options)
    if not isinstance(method, str):
        raise TypeError(f"method must be a string or a callable, got {method!r}")
    if tol is not None:
        options.setdefault("gtol", tol)
    return minimize_with_rule(rules.get_rule(method), fun, x0, args=args, jac=jac, hess=hess,
                              hessp=hessp, bounds=bounds, constraints=constraints,
                              callback=callback, **options)


def _options_text(rule):
    title = f"Options for method {rule.name!r}"
    lines = [title, "-" * len(title), f"{rule.summary[0].upper()}{rule.summary[1:]}.",
             f"Source: {rule.source}.", "",
             f"Hyperparameters (the names and defaults of {rule.library}):"]
    for hp in rule.hyperparameters:
        default = rule.fixed.get(hp.name, hp.default)
        pinned = " (fixed by this method)" if hp.name in rule.fixed else ""
        lines.append(f"    {hp.name} = {default!r}{pinned}: {hp.doc}; {hp.range_text()}")
    lines.append("Driver options:")
    for name, (default, doc) in DRIVER_OPTIONS.items():
        lines.append(f"    {name} = {default!r}: {doc}")
    return "\n".join(lines) + "\n"


def show_options(solver=None, method=None, disp=True):
    """Show the options of one method, or of all methods, as ``scipy.optimize.show_options``.

    Parameters
    ----------
    solver : str, optional
        ``"minimize"`` (the only solver adamnb has) or None. A method name here is taken as
        ``method``, so ``show_options("adam")`` works too.
    method : str, optional
        A method name; None shows every method.
    disp : bool, default True
        Print the text (and return None); False returns it instead.

    Raises
    ------
    ValueError
        An unknown solver or method (the message lists the valid ones).
    """
    if isinstance(solver, str) and solver.lower() in rules.RULES and method is None:
        solver, method = "minimize", solver
    if solver is not None and (not isinstance(solver, str) or solver.lower() != "minimize"):
        raise ValueError(f"Unknown solver {solver!r}: adamnb's methods are for 'minimize'; "
                         f"valid methods are: {', '.join(rules.RULES)}")
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
