"""What every driver shares: the options, the checks of the inputs, the iteration, the result.

The drivers (:mod:`._host` for NumPy arrays with Python callables, :mod:`._compiled` for
numba-jitted objectives, :mod:`._batch` for many starts, :mod:`._device` for CUDA arrays) differ
only in where the arrays live and how a step is computed. Everything a user can observe is decided
here, once:

* the driver options (:data:`DRIVER_OPTIONS`) and their checks, the split of ``options`` into
  driver options and the rule's hyperparameters (:func:`prepare`), with scipy's
  ``OptimizeWarning`` for unknown names;
* ``x0`` and ``bounds`` (:func:`as_x0`, :func:`as_bounds`);
* **the iteration** (:func:`iterate`), which the host and device drivers run and the compiled loop
  reproduces in compiled code step for step (``tests/test_contract.py`` holds them to the same
  bits)::

      f, g = fun(x0)                                # status 3 at once if not finite
      loop:
          converged (gtol > 0 and ||g||_stat <= gtol)   -> status 0
          nit == maxiter                                -> status 1
          x_prev = x; x = P(update(x, g))               # the rule's element, projected
          f, g = fun(copy of x); nit += 1
          f or any g_i not finite -> x = x_prev, f and g the last finite ones, nit -= 1
              (nit counts the accepted steps), status 3; the optimizer state keeps the
              rejected step's update (rolling it back would copy the state every step)
          record x and f (return_all); feed f to a schedule that follows the objective
          (ReduceLROnPlateau); callback (StopIteration -> status 99)

  where ``||g||_stat`` is the infinity-norm of ``g``, or with bounds that of the projected
  gradient ``P(x - g) - x`` (L-BFGS-B's ``pgtol`` measure), and NaN when any ``g_i`` is not
  finite (:mod:`adamnb.backends.elements`);
* the result (:func:`build_result`) and its status messages (:data:`STATUS_MESSAGES`), with the
  rule's extra outputs (ASGD's ``ax``; schedule-free AdamW's evaluation point as ``x``).
"""

import collections.abc
import inspect
import math
import sys
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning

from adamnb.optim._rule import RESERVED_OPTION_NAMES
from adamnb.optim.groups import Layout, check_specs, parse_groups
from adamnb.optim.schedules import as_schedule, fresh_copy

__all__ = ["DRIVER_OPTIONS", "STATUS_MESSAGES", "Run", "prepare", "as_x0", "as_bounds",
           "as_options", "iterate", "objective_feed", "rule_outputs", "build_result", "reevaluator",
           "wrap_callback", "caller_stacklevel", "warn_unused"]

#: Driver options every method accepts beside its rule's hyperparameters: (default, meaning).
DRIVER_OPTIONS = {
    "maxiter": (1000, "number of update steps"),
    "gtol": (1e-5, "stop, successfully, once the gradient's infinity-norm (with bounds: the "
                   "projected gradient's) is at most gtol; 0 disables (the default when args is "
                   "a minibatch iterator)"),
    "disp": (False, "print a convergence message"),
    "return_all": (False, "also return allvecs, the iterate after every step, and the per-step "
                          "objective values in fun_history"),
    "parallel": (None, "use the multi-threaded kernels (True/False; None decides by size)"),
    "finite_diff_rel_step": (None, "relative step of jac '2-point'/'3-point' (scipy's option): "
                                   "h = rel_step * sign(x) * |x|, by default sqrt (2-point) or "
                                   "cbrt (3-point) of x's machine epsilon times max(1, |x|)"),
    "groups": (None, "parameter groups over x, as torch's param groups: a list of dicts "
                     "{'params': views of x, option: value, ...}, each group's options these "
                     "options updated with its own (adamnb.optim.groups); run in the host loop"),
    "compiled": (None, "run the whole loop compiled, for numba-jitted fun and jac (True: "
                       "required, an error if the run cannot; False: the host loop; None: "
                       "decided by expected cost, compiling only when it pays off)"),
    "fast": (False, "compile the loop with fast arithmetic (fused multiply-adds, reciprocals): "
                    "faster, no longer bit-identical to the host loop (within the tolerance "
                    "stated in the documentation); compiled loops and minimize_batch only: "
                    "the run takes the compiled loop, or raises ValueError if it cannot"),
}
assert set(DRIVER_OPTIONS) <= RESERVED_OPTION_NAMES  # no rule may take a driver's option name

STATUS_MESSAGES = {
    0: "Optimization terminated successfully: the gradient's infinity-norm is at most gtol.",
    1: "Maximum number of iterations has been exceeded.",
    3: "NaN or inf met in the objective or its gradient; the last finite iterate is returned.",
    99: "`callback` raised `StopIteration`.",
}

#: Steps per block of per-step scalars on the Python-level drivers.
BLOCK = 512


# --- options ------------------------------------------------------------------------------------

@dataclass
class Run:
    """One run's settings, checked: the rule, its validated options and the driver options."""

    rule: object
    options: dict
    schedule: object
    maxiter: int
    gtol: float
    disp: bool
    record: bool
    parallel: object
    finite_diff_rel_step: object
    args: object
    stochastic: bool
    compiled: object = None
    fast: bool = False
    groups: object = None
    layout: object = None
    #: The extra arguments of the last evaluation (the fixed tuple, or the last element drawn
    #: from the args iterator): the result's objective at an output ``x`` is taken with them.
    last_args: object = None

    def bind(self, n):
        """Resolve the groups for a vector of ``n`` elements: the run's
        :class:`adamnb.optim.groups.Layout` (one group and one piece without groups).

        Raises
        ------
        ValueError
            The groups do not fit the vector (see :class:`adamnb.optim.groups.Layout`).
        """
        self.layout = Layout(self.rule, self.options, self.groups, n, self.schedule,
                             copy_schedules=True)
        return self.layout

    def stream(self, dtype, fed=False):
        """The per-step scalars of every group (:meth:`adamnb.optim.groups.Layout.stream`), in
        ``dtype``; call :meth:`bind` first.

        ``fed`` says the caller gives the objective to a schedule that follows it
        (:func:`iterate` does, through :func:`objective_feed`).

        Raises
        ------
        ValueError
            A schedule follows the objective (ReduceLROnPlateau) and ``fed`` is False: a
            driver with many objectives (``minimize_batch``) has no single one to give it.
        """
        for schedule in self.layout.schedules():
            if getattr(schedule, "needs_objective", False) and not fed:
                raise ValueError(f"{type(schedule).__name__} follows the objective of one run; "
                                 "this driver runs many at once and cannot feed it (use "
                                 "minimize)")
        return self.layout.stream(dtype, maxiter=self.maxiter)

    def next_args(self):
        """The extra arguments of the next evaluation: the fixed tuple, or the next element of
        the args iterator."""
        if not self.stochastic:
            self.last_args = self.args
            return self.args
        try:
            item = next(self.args)
        except StopIteration:
            raise ValueError("the args iterator was exhausted before maxiter steps; use an "
                             "endless iterator such as adamnb.minibatches(...)") from None
        # A bare array or number would be split, or fail, deep in the call: name the problem.
        if not isinstance(item, (tuple, list)):
            raise TypeError(f"each element of the args iterator must be a tuple of the extra "
                            f"arguments of fun and jac, got {type(item).__name__}; yield (item,) "
                            f"for a single argument")
        self.last_args = tuple(item)
        return self.last_args


def prepare(rule, args, options):
    """Check ``args`` and ``options`` for ``rule``: a :class:`Run`.

    ``options`` holds driver options (:data:`DRIVER_OPTIONS`), the rule's hyperparameters, and
    possibly ``tol`` (scipy hands custom methods ``tol``; it sets ``gtol`` unless ``gtol`` is
    given). Unknown names warn with ``scipy.optimize.OptimizeWarning`` and are ignored, as scipy's
    methods do. An iterator as ``args`` makes the run stochastic (``gtol`` then defaults to 0);
    scipy's ``minimize`` wraps a non-tuple ``args`` in a tuple, so a tuple holding one iterator is
    that iterator.

    Raises
    ------
    ValueError
        A driver option or hyperparameter out of its range (the message names it).
    """
    if isinstance(args, tuple) and len(args) == 1 and _is_stream(args[0]):
        args = args[0]
    stochastic = _is_stream(args)
    if not stochastic and not isinstance(args, tuple):
        args = (args,)
    hyperparameter_names = {hp.name for hp in rule.hyperparameters} | set(rule.fixed)
    driver = {name: default for name, (default, _) in DRIVER_OPTIONS.items()}
    hyperparameters = {}
    for name, value in options.items():
        if name in DRIVER_OPTIONS:
            driver[name] = value
        elif name in hyperparameter_names:
            hyperparameters[name] = value
        elif name != "tol":
            warnings.warn(f"Unknown solver option: {name} (method {rule.name!r} accepts "
                          f"{', '.join(sorted(hyperparameter_names | set(DRIVER_OPTIONS)))})",
                          OptimizeWarning, stacklevel=caller_stacklevel())
    if "gtol" not in options:
        if options.get("tol") is not None:
            driver["gtol"] = options["tol"]
        elif stochastic:
            driver["gtol"] = 0.0
    validated = rule.validate(hyperparameters)
    groups = None if driver["groups"] is None else parse_groups(driver["groups"])
    check_specs(rule, validated, groups)
    # A stateful schedule runs on a copy: the same call gives the same run twice.
    return Run(rule=rule, options=validated, schedule=fresh_copy(as_schedule(validated["lr"])),
               maxiter=_check_maxiter(driver["maxiter"]),
               gtol=_check_real("gtol", driver["gtol"]),
               disp=_check_bool("disp", driver["disp"]),
               record=_check_bool("return_all", driver["return_all"]),
               parallel=_check_parallel(driver["parallel"]),
               finite_diff_rel_step=_check_rel_step(driver["finite_diff_rel_step"]),
               args=args, stochastic=stochastic,
               compiled=_check_tristate("compiled", driver["compiled"]),
               fast=_check_bool("fast", driver["fast"]), groups=groups)


def as_options(options):
    """A new dict of the ``options`` mapping (None: empty).

    Raises
    ------
    TypeError
        ``options`` is not a mapping (a list of pairs, say).
    """
    if options is None:
        return {}
    if not isinstance(options, collections.abc.Mapping):
        raise TypeError(f"options must be a dict of option names and values, got "
                        f"{type(options).__name__}: {options!r}")
    return dict(options)


def _is_stream(value):
    return isinstance(value, collections.abc.Iterator) and not isinstance(value, (str, bytes))


def _check_maxiter(value):
    # scipy's methods take any real count (maxiter=1e4 is common); a fraction is a mistake.
    if not isinstance(value, (bool, np.bool_)) and hasattr(value, "__float__") and np.ndim(value) == 0:
        number = float(value)
        if math.isfinite(number) and number >= 0 and number == int(number):
            return int(number)
    raise ValueError(f"Invalid maxiter: {value!r}; expected a whole number >= 0")


def _check_real(name, value):
    if not isinstance(value, (bool, np.bool_)) and hasattr(value, "__float__") and np.ndim(value) == 0:
        number = float(value)
        if number >= 0:
            return number
    raise ValueError(f"Invalid {name}: {value!r}; expected a number >= 0")


def _check_parallel(value):
    return _check_tristate("parallel", value)


def _check_tristate(name, value):
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    raise ValueError(f"Invalid {name}: {value!r}; expected True, False or None")


def _check_bool(name, value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"Invalid {name}: {value!r}; expected True or False")


def _check_rel_step(value):
    if value is None:
        return None
    step = np.asarray(value, dtype=float) if not isinstance(value, (bool, np.bool_)) else None
    if step is None or step.ndim > 1 or not (np.isfinite(step).all() and (step >= 0).all()):
        raise ValueError(f"Invalid finite_diff_rel_step: {value!r}; expected None, a number >= 0 "
                         "or one per element of x")
    return step


# --- inputs -------------------------------------------------------------------------------------

def as_x0(x0):
    """A validated float copy of ``x0`` (never the caller's array): float32 kept, other real
    dtypes (integers, bools) become float64.

    Raises
    ------
    ValueError
        ``x0`` is not 1-D (or a scalar), is empty, is not real, or holds NaN or inf.
    """
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


def as_bounds(bounds, n, dtype):
    """``(lower, upper)`` arrays of length ``n`` in ``dtype`` from a ``scipy.optimize.Bounds`` or
    ``(min, max)`` pairs (None for unbounded), or None when nothing is bounded.

    Raises
    ------
    ValueError
        Wrong length or shape, NaN, or a lower bound above its upper bound.
    """
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
            if any(len(p) != 2 for p in pairs):
                raise TypeError
            lower = np.array([-np.inf if p[0] is None else p[0] for p in pairs], dtype=float)
            upper = np.array([np.inf if p[1] is None else p[1] for p in pairs], dtype=float)
        except (TypeError, IndexError, ValueError):
            raise ValueError("bounds must be (min, max) pairs of numbers, with None for "
                             "unbounded") from None
    if np.isnan(lower).any() or np.isnan(upper).any():
        raise ValueError("bounds must not contain NaN (use None or +-inf for unbounded)")
    bad = np.flatnonzero(lower > upper)
    if bad.size:
        i = bad[0]
        raise ValueError(f"bounds are inconsistent: lower bound {lower[i]} > upper bound "
                         f"{upper[i]} at index {i}")
    if (lower == -np.inf).all() and (upper == np.inf).all():
        return None
    return lower.astype(dtype), upper.astype(dtype)


def warn_unused(rule, hess, hessp, constraints):
    """RuntimeWarnings, as scipy's first-order methods give, for arguments these methods ignore."""
    for name, given in (("hess", hess), ("hessp", hessp)):
        if given is not None:
            warnings.warn(f"Method {rule.name} does not use Hessian information ({name}).",
                          RuntimeWarning, stacklevel=caller_stacklevel())
    if constraints is not None and np.any(constraints):
        warnings.warn(f"Method {rule.name} cannot handle constraints.", RuntimeWarning,
                      stacklevel=caller_stacklevel())


def wrap_callback(callback, copy=np.copy):
    """scipy's two callback styles: ``callback(intermediate_result)`` by that name, else
    ``callback(xk)``; either way the callback gets ``copy(x)``, never the driver's iterate.

    Raises
    ------
    TypeError
        ``callback`` is not callable.
    """
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    try:
        parameters = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        parameters = set()
    if parameters == {"intermediate_result"}:
        return lambda x, f: callback(intermediate_result=OptimizeResult(x=copy(x), fun=f))
    return lambda x, f: callback(copy(x))


def caller_stacklevel():
    """The ``stacklevel`` that points a warning at the first frame outside adamnb.

    Call it in the function that warns: the drivers reach it at different depths.
    """
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("adamnb"):
        level += 1
        frame = frame.f_back
    return level


# --- the iteration ------------------------------------------------------------------------------

def iterate(run, ops, x, f, g, spare, norm, state, notify, allvecs, fun_history):
    """Run the iteration of the module notes from ``(x, f, g)`` with ``norm`` its convergence
    measure; ``x`` is updated in place.

    ``ops`` is a driver's step machinery: ``update(x, g, state, table, column)`` (the fused step
    of column ``column`` of the scalars), ``evaluate(x, args, out) -> (f, norm)`` (the objective
    at a copy of ``x``, its gradient written into ``out``, the convergence measure),
    ``restore(x)`` (back to the iterate before the last update) and ``snapshot(x)`` (a host copy
    for ``allvecs``). ``g`` and ``spare`` are the driver's own gradient buffers.

    Returns ``(status, nit, f, g)``: ``g`` is whichever buffer holds the gradient at ``x``.
    """
    stream = run.stream(x.dtype, fed=True)
    feed = objective_feed(run, f)
    table, column, width, nit = None, 0, 0, 0
    # Looked up once: this loop's own overhead is part of every step of the host driver.
    gtol, maxiter, update, evaluate, isfinite = run.gtol, run.maxiter, ops.update, ops.evaluate, \
        math.isfinite
    args, next_args = (None, run.next_args) if run.stochastic else (run.args, None)
    while True:
        if gtol > 0 and norm <= gtol:
            return 0, nit, f, g
        if nit == maxiter:
            return 1, nit, f, g
        if column == width:
            table, column = stream.columns(nit + 1, BLOCK), 0
            width = table.shape[1]
        update(x, g, state, table, column)
        column += 1
        nit += 1
        f_new, norm_new = evaluate(x, args if next_args is None else next_args(), spare)
        if not (isfinite(f_new) and isfinite(norm_new)):
            ops.restore(x)  # the step is rejected: x is the iterate after nit - 1 steps
            return 3, nit - 1, f, g
        f, norm = f_new, norm_new
        g, spare = spare, g
        if allvecs is not None:
            allvecs.append(ops.snapshot(x))
            fun_history.append(f)
        if feed is not None:
            feed(f)
        if notify is not None:
            try:
                notify(x, f)
            except StopIteration:
                return 99, nit, f, g


def objective_feed(run, f0):
    """What gives the run's objective values to a schedule that follows them
    (:class:`adamnb.optim.schedules.ReduceLROnPlateau`), or None for any other schedule.

    The returned ``feed(f)`` is called with ``f`` after every step. It passes it on at once,
    unless ``args`` is a stream with epochs (:func:`adamnb.minibatches`: it has
    ``batches_per_epoch`` and ``epoch``); then it collects the minibatch values of each epoch,
    from ``f0`` on, and passes their mean once the epoch's last minibatch has been drawn, as a
    training loop calls torch's ``scheduler.step(loss)`` once per epoch.
    """
    followers = [schedule for schedule in run.layout.schedules()
                 if getattr(schedule, "needs_objective", False)]
    if not followers:
        return None

    def step(f):
        for schedule in followers:
            schedule.step(f)

    stream = run.args
    if not (run.stochastic and hasattr(stream, "batches_per_epoch") and hasattr(stream, "epoch")):
        return step
    values, seen = [f0], [stream.epoch]

    def feed(f):
        values.append(f)
        if stream.epoch != seen[0]:
            step(math.fsum(values) / len(values))
            values.clear()
            seen[0] = stream.epoch

    return feed


def rule_outputs(run, x, states):
    """The rules' extra results from the final ``x`` and ``states`` (each piece's ``(state,
    carry)``, host or device arrays; see :attr:`adamnb.optim.UpdateRule.outputs` and
    :meth:`adamnb.optim.groups.Layout.outputs`), as arrays of the same kind: ``{}`` for most
    rules.
    """
    if states is None or all(group.rule.outputs is None for group in run.layout.groups):
        return {}
    if isinstance(x, np.ndarray):
        return run.layout.outputs(x, states)
    from adamnb.backends import cuda as cuda_backend  # only device runs get here

    host = [(tuple(a.copy_to_host() for a in state) if isinstance(state, tuple)
             else state.copy_to_host(), carry.copy_to_host()) for state, carry in states]
    outputs = run.layout.outputs(x.copy_to_host(), host)
    return {name: cuda_backend.to_device(np.ascontiguousarray(value))
            for name, value in outputs.items()}


def reevaluator(run, evaluate, objective, empty_like):
    """``reevaluate(x) -> (f, g, nfev, njev)`` for :func:`build_result`: the objective and
    gradient at ``x`` through a driver's ``evaluate(x, args, out)`` (its step machinery's), with
    the run's last extra arguments, and ``objective``'s counts after that evaluation."""

    def reevaluate(point):
        out = empty_like(point)
        f, _ = evaluate(point, run.last_args, out)
        return f, out, objective.nfev, objective.njev

    return reevaluate


def build_result(run, x, f, g, nit, nfev, njev, status, allvecs=None, fun_history=None,
                 state=None, reevaluate=None):
    """The ``scipy.optimize.OptimizeResult`` of a run, and scipy's summary when ``disp``.

    For a batch of starts, ``status`` and the counts are arrays over the starts; ``success`` is
    then an array and ``message`` a list. With ``state`` (each piece's ``(state, carry)``), the
    rule's extra outputs (:func:`rule_outputs`) join the result. An output named ``x``
    (schedule-free AdamW's evaluation point) replaces the iterate, and then, as scipy's contract
    has ``fun`` and ``jac`` at ``x``, ``reevaluate(x) -> (f, g, nfev, njev)`` (the objective and
    gradient at that point, and the counts with that evaluation included) gives them; the
    status stays that of the iteration, whose tests run at the iterate the gradients are taken
    at (kept as the output ``y``). On status 3 the output ``x`` is not used: the state holds the
    rejected step while the iterate was rolled back, so the two do not make one point; ``x``
    is the last finite iterate, as the status says.
    """
    if np.ndim(status) == 0:
        success, message = status == 0, STATUS_MESSAGES[int(status)]
    else:
        success, message = status == 0, [STATUS_MESSAGES[int(s)] for s in status]
    outputs = rule_outputs(run, x, state)
    if "x" in outputs and reevaluate is not None:
        if np.ndim(status) == 0:
            if status == 3:
                del outputs["x"]
            else:
                f, g, nfev, njev = reevaluate(outputs["x"])
        else:
            failed = status == 3
            outputs["x"][failed] = x[failed]
            f_x, g_x, nfev_x, njev_x = reevaluate(outputs["x"])
            f, g = np.where(failed, f, f_x), np.where(failed[:, None], g, g_x)
            nfev, njev = np.where(failed, nfev, nfev_x), np.where(failed, njev, njev_x)
    result = OptimizeResult(x=x, fun=f, jac=g, nit=nit, nfev=nfev, njev=njev, status=status,
                            success=success, message=message)
    result.update(outputs)
    if run.record:
        result.allvecs = allvecs
        result.fun_history = np.array(fun_history)
    if run.disp and np.ndim(status) == 0:
        head = "Optimization terminated successfully." if status == 0 else "Warning: " + message
        print(f"{head}\n"
              f"         Current function value: {f:.6g}\n"
              f"         Iterations: {nit}\n"
              f"         Function evaluations: {nfev}\n"
              f"         Gradient evaluations: {njev}")
    elif run.disp:
        codes, counts = np.unique(status, return_counts=True)
        print("\n".join(f"{count} start(s): {STATUS_MESSAGES[int(code)]}"
                        for code, count in zip(codes, counts)))
    return result
